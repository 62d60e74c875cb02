# Copyright (c) mmc2f contributors. All rights reserved.
"""The one place where mmc2f registers its modules.

Each module goes into the ``mmc2f`` scope (children of mmengine's root
registries), so configs of any OpenMMLab library can name it
``type='mmc2f.Conv2Former'`` after ``custom_imports=dict(imports=['mmc2f'])``,
the way mmdet configs name ``mmpretrain.ConvNeXt``. It is also registered in
mmengine's root registries, which mmdet, mmseg and mmpretrain search after
their own, so the plain ``type='Conv2Former'`` works too.
"""
from mmengine.fileio import register_backend
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import Registry

from .checkpoint import ATOMIC_BACKEND, AtomicLocalBackend
from .engine import (LayerDecayOptimWrapperConstructor, RNGStateHook,
                     SafeCheckpointHook)
from .models import Conv2Former, Conv2FormerIsotropic, Conv2FormerNeck

# locations: where mmengine finds the modules of the 'mmc2f' scope (without
# them it would look for an mmc2f.utils.register_all_modules).
MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmc2f',
                  locations=['mmc2f.models'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmc2f',
                 locations=['mmc2f.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    scope='mmc2f',
    locations=['mmc2f.engine'])

for registry, root, modules in (
    (MODELS, MMENGINE_MODELS,
     (Conv2Former, Conv2FormerIsotropic, Conv2FormerNeck)),
    (OPTIM_WRAPPER_CONSTRUCTORS, MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
     (LayerDecayOptimWrapperConstructor, )),
    (HOOKS, MMENGINE_HOOKS, (RNGStateHook, SafeCheckpointHook)),
):
    for module in modules:
        registry.register_module(module=module)
        # force: re-importing mmc2f (e.g. importlib.reload) is not an error.
        root.register_module(module=module, force=True)

# The file backend SafeCheckpointHook writes local checkpoints through (a
# name of mmc2f's own: mmengine's 'local' backend is unchanged).
register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)
