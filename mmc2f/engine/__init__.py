from .hooks import RNGStateHook
from .optimizers import LayerDecayOptimWrapperConstructor

__all__ = ['LayerDecayOptimWrapperConstructor', 'RNGStateHook']
