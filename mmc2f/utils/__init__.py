from .checkpoint import (CheckpointLoadError, register_safe_local_loader,
                         safe_torch_load)

__all__ = ['CheckpointLoadError', 'register_safe_local_loader',
           'safe_torch_load']
