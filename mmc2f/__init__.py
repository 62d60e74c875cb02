# Copyright (c) mmc2f contributors. All rights reserved.
from . import registry  # noqa: F401  registers the modules
from .engine.hooks import register_safe_checkpoint_hook
from .models import (Conv2Former, Conv2FormerIsotropic, Conv2FormerNeck,
                     LayerNorm2d)
from .utils import register_atomic_local_backend, register_safe_loaders
from .version import __version__

# mmengine 0.10.7 cannot read its own checkpoints under torch >= 2.6 (it
# calls torch.load without weights_only), and unpickles downloads with
# weights_only=False: serve every checkpoint scheme safely instead. Write
# local files atomically, and remove outdated checkpoints only after a
# successful save, so that a failed or interrupted save loses nothing.
register_safe_loaders()
register_atomic_local_backend()
register_safe_checkpoint_hook()

__all__ = ['Conv2Former', 'Conv2FormerIsotropic', 'Conv2FormerNeck',
           'LayerNorm2d', '__version__']
