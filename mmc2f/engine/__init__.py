from .hooks import RNGStateHook, SafeCheckpointHook
from .optimizers import LayerDecayOptimWrapperConstructor

__all__ = [
    'LayerDecayOptimWrapperConstructor', 'RNGStateHook', 'SafeCheckpointHook'
]
