# Copyright (c) mmc2f contributors. All rights reserved.
from . import registry  # noqa: F401  registers the modules
from .mmengine_patch import patch_mmengine
from .models import (Conv2Former, Conv2FormerIsotropic, Conv2FormerNeck,
                     LayerNorm2d)
from .version import __version__

patch_mmengine()

__all__ = ['Conv2Former', 'Conv2FormerIsotropic', 'Conv2FormerNeck',
           'LayerNorm2d', '__version__']
