from .checkpoint import (CheckpointLoadError, atomic_open, load_pretrained,
                         register_atomic_local_backend,
                         register_safe_local_loader, safe_torch_load)

__all__ = [
    'CheckpointLoadError', 'atomic_open', 'load_pretrained',
    'register_atomic_local_backend', 'register_safe_local_loader',
    'safe_torch_load'
]
