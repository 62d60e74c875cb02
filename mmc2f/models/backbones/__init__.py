from .conv2former import Conv2Former, Conv2FormerBlock, LayerNorm2d
from .conv2former_isotropic import Conv2FormerIsotropic

__all__ = ['Conv2Former', 'Conv2FormerBlock', 'Conv2FormerIsotropic',
           'LayerNorm2d']
