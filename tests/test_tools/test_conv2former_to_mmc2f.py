import argparse
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint

import mmc2f  # noqa: F401
from mmc2f.models import Conv2Former
from mmc2f.models.backbones.conv2former import ARCH_SETTINGS
from mmc2f.testing.released_reference import (make_released_state_dict,
                                              max_rel_error, released_forward)

CONVERTER = 'tools/model_converters/conv2former_to_mmc2f.py'
TINY = ARCH_SETTINGS['tiny']


def convert(*args):
    return subprocess.run([sys.executable, CONVERTER, *map(str, args)],
                          capture_output=True, text=True)


@pytest.fixture(scope='module')
def released_tiny():
    return make_released_state_dict(TINY['channels'], TINY['depths'],
                                    TINY['kernel_size'], seed=3)


def build_classifier(config: str):
    from mmpretrain.registry import MODELS
    from mmpretrain.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(config)
    return MODELS.build(cfg.model).eval()


def test_converted_checkpoint_reproduces_released_logits(
        tmp_path, released_tiny):
    src = tmp_path / 'conv2former_t.pth.tar'
    dst = tmp_path / 'converted.pth'
    # A full timm training checkpoint, EMA copy included.
    ema = {k: v + 0.01 if v.is_floating_point() else v
           for k, v in released_tiny.items()}
    torch.save(dict(epoch=299, arch='conv2former_t', state_dict=released_tiny,
                    state_dict_ema=ema, optimizer={}, version=2,
                    metric=83.2, args=argparse.Namespace(lr=1e-3)), src)
    result = convert(src, dst)
    assert result.returncode == 0, result.stderr
    assert 'depths [3, 3, 12, 3], kernel 11' in result.stdout

    model = build_classifier('configs/imagenet/conv2former-t_8xb128_in1k.py')
    state_dict = torch.load(dst)['state_dict']
    missing, unexpected = model.load_state_dict(state_dict, strict=True)
    assert not missing and not unexpected
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(x, mode='tensor')
        _, ref_logits = released_forward(released_tiny, x, TINY['depths'])
    assert logits.shape == (2, 1000)
    assert max_rel_error(logits, ref_logits) < 1e-5

    # --ema takes the EMA copy.
    assert convert(src, dst, '--ema').returncode == 0
    meta = torch.load(dst, weights_only=False)['meta']
    assert meta['ema'] and meta['arch']['channels'] == TINY['channels']
    ema_w = torch.load(dst)['state_dict']['backbone.stages.0.0.attn.v.weight']
    assert torch.equal(ema_w, ema['stages.0.0.attn.v.weight'])


@pytest.mark.parametrize('layout', ['bare', 'model', 'module_prefix'])
def test_checkpoint_layouts_load_into_detection_backbone(
        tmp_path, released_tiny, layout):
    src = tmp_path / 'released.pth'
    sd = dict(released_tiny)
    if layout == 'module_prefix':
        sd = {'module.' + k: v for k, v in sd.items()}
    torch.save(dict(model=sd) if layout == 'model' else sd, src)
    dst = tmp_path / 'converted.pth'
    assert convert(src, dst).returncode == 0
    # The way detection/segmentation configs load it.
    backbone = Conv2Former(
        'tiny', out_indices=(0, 1, 2, 3), out_norm=True,
        init_cfg=dict(type='Pretrained', checkpoint=str(dst),
                      prefix='backbone.'))
    backbone.init_weights()
    assert torch.equal(backbone.stages[2][5].attn.att[2].weight,
                       released_tiny['stages.2.5.attn.att.2.weight'])
    # And with mmengine's load_checkpoint, strictly (no key left over).
    plain = Conv2Former('tiny')
    load_checkpoint(plain, str(dst), revise_keys=[(r'^backbone\.', '')],
                    strict=False)


def test_refuses_non_conv2former(tmp_path):
    src = tmp_path / 'resnet.pth'
    torch.save({'conv1.weight': torch.zeros(64, 3, 7, 7)}, src)
    result = convert(src, tmp_path / 'out.pth')
    assert result.returncode == 1
    assert 'does not look like a Conv2Former checkpoint' in result.stderr
    assert 'downsample_layers.0.0.weight' in result.stderr
    assert not (tmp_path / 'out.pth').exists()


def test_refuses_unknown_keys_and_missing_ema(tmp_path, released_tiny):
    src = tmp_path / 'extra.pth'
    torch.save(dict(released_tiny, **{'extra.weight': torch.ones(1)}), src)
    result = convert(src, tmp_path / 'out.pth')
    assert result.returncode == 1 and "extra.weight" in result.stderr
    torch.save(dict(state_dict=released_tiny), src)
    result = convert(src, tmp_path / 'out.pth', '--ema')
    assert result.returncode == 1 and 'state_dict_ema' in result.stderr


def test_missing_source(tmp_path):
    result = convert(tmp_path / 'nope.pth', tmp_path / 'out.pth')
    assert result.returncode == 1 and 'nope.pth' in result.stderr
