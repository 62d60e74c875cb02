from .conv2former_neck import Conv2FormerNeck

__all__ = ['Conv2FormerNeck']
