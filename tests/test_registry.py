"""mmc2f's modules are reachable from the configs of all three libraries,
scoped (type='mmc2f.Conv2Former') and plain (type='Conv2Former')."""
import importlib

import pytest
import torch

import mmc2f  # noqa: F401
from mmc2f.models import Conv2Former, Conv2FormerNeck


@pytest.mark.parametrize('library', ['mmdet', 'mmseg', 'mmpretrain'])
@pytest.mark.parametrize('name', ['mmc2f.Conv2Former', 'Conv2Former'])
def test_backbone_builds_from_each_library(library, name):
    registry = importlib.import_module(f'{library}.registry').MODELS
    importlib.import_module(f'{library}.utils').register_all_modules(
        init_default_scope=True)
    backbone = registry.build(dict(type=name, arch='nano', out_indices=(3, )))
    assert isinstance(backbone, Conv2Former)
    assert backbone(torch.rand(1, 3, 64, 64))[0].shape == (1, 512, 2, 2)


@pytest.mark.parametrize('name', ['mmc2f.Conv2FormerNeck', 'Conv2FormerNeck'])
def test_neck_builds_in_mmpretrain(name):
    from mmpretrain.registry import MODELS
    assert isinstance(MODELS.build(dict(type=name, in_channels=8)),
                      Conv2FormerNeck)


def test_optim_constructor_and_hook_are_registered():
    from mmengine.registry import HOOKS, OPTIM_WRAPPER_CONSTRUCTORS
    assert OPTIM_WRAPPER_CONSTRUCTORS.get(
        'mmc2f.LayerDecayOptimWrapperConstructor') is not None
    assert HOOKS.get('mmc2f.RNGStateHook') is not None
