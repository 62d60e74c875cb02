from .checkpoint_hook import SafeCheckpointHook, register_safe_checkpoint_hook
from .rng_state_hook import RNGStateHook

__all__ = [
    'RNGStateHook', 'SafeCheckpointHook', 'register_safe_checkpoint_hook'
]
