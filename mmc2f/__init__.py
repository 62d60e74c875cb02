# Copyright (c) mmc2f contributors. All rights reserved.
from . import registry  # noqa: F401  registers the modules
from .models import (Conv2Former, Conv2FormerIsotropic, Conv2FormerNeck,
                     LayerNorm2d)
from .utils import register_atomic_local_backend, register_safe_loaders
from .version import __version__

# mmengine 0.10.7 cannot read its own checkpoints under torch >= 2.6 (it
# calls torch.load without weights_only), and unpickles downloads with
# weights_only=False: serve every checkpoint scheme safely instead. Write
# local files atomically, so that an interrupted save is never resumed from
# (registry.py makes the CheckpointHook remove outdated checkpoints only
# after a successful save).
register_safe_loaders()
register_atomic_local_backend()

__all__ = ['Conv2Former', 'Conv2FormerIsotropic', 'Conv2FormerNeck',
           'LayerNorm2d', '__version__']
