from .backbones import (Conv2Former, Conv2FormerBlock, Conv2FormerIsotropic,
                        LayerNorm2d)
from .necks import Conv2FormerNeck

__all__ = ['Conv2Former', 'Conv2FormerBlock', 'Conv2FormerIsotropic',
           'Conv2FormerNeck', 'LayerNorm2d']
