import argparse
import re
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import load_checkpoint

import mmc2f  # noqa: F401
from mmc2f.models import Conv2Former
from mmc2f.models.backbones.conv2former import ARCH_SETTINGS
from mmc2f.toolkit.released_reference import (make_released_state_dict,
                                              max_rel_error, released_forward)
from mmc2f.zoo import RELEASED

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


@pytest.mark.parametrize('drop', ['stages.2.1.', 'pred.', 'layer_scale'])
def test_refuses_an_incomplete_file(tmp_path, released_tiny, drop):
    """A block, the classifier or every layer scale gone (a cut or edited
    file) would load half random: refused, nothing written."""
    src = tmp_path / 'cut.pth'
    torch.save({k: v for k, v in released_tiny.items() if drop not in k}, src)
    result = convert(src, tmp_path / 'out.pth')
    assert result.returncode == 1
    assert f'{src} is incomplete for the Conv2Former its shapes describe ' \
        '(channels [72, 144, 288, 576], depths [3, 3, 12, 3]; ' in result.stderr
    assert not (tmp_path / 'out.pth').exists()


def test_refuses_to_overwrite_its_source_or_write_a_folder(tmp_path,
                                                           released_tiny):
    src = tmp_path / 'conv2former_t.pth'
    torch.save(released_tiny, src)
    before = src.read_bytes()
    result = convert(src, tmp_path / '.' / 'conv2former_t.pth')
    assert result.returncode == 1
    assert 'would be overwritten by its own conversion' in result.stderr
    assert src.read_bytes() == before
    result = convert(src, tmp_path)
    assert result.returncode == 1
    assert f'{tmp_path} is a folder: give the converted file' in \
        result.stderr


def test_a_full_disk_is_an_error_that_says_so(tmp_path, released_tiny):
    """The file-size limit stands for a full disk: the error names it, no
    partial file is left."""
    src, dst = tmp_path / 'conv2former_t.pth', tmp_path / 'out.pth'
    torch.save(released_tiny, src)
    limited = (
        'import resource, signal, sys, runpy; '
        'signal.signal(signal.SIGXFSZ, signal.SIG_IGN); '
        'resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20)); '
        f'sys.argv = ["conv", {str(src)!r}, {str(dst)!r}]; '
        f'runpy.run_path({CONVERTER!r}, run_name="__main__")')
    result = subprocess.run([sys.executable, '-c', limited],
                            capture_output=True, text=True)
    assert result.returncode == 1, result.stderr[-2000:]
    assert f'Could not write {dst}: no space left' in result.stderr
    assert 'Free space, then run the conversion again' in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['conv2former_t.pth']


def test_missing_source(tmp_path):
    result = convert(tmp_path / 'nope.pth', tmp_path / 'out.pth')
    assert result.returncode == 1 and 'nope.pth' in result.stderr


# Each released architecture once: the six of the eight files (the S and L
# files share theirs with another file).
RELEASED_ARCHS = {(c.arch, c.kernel_size): c for c in RELEASED}


@pytest.mark.parametrize('arch, kernel_size', sorted(RELEASED_ARCHS))
def test_every_released_architecture_loads_into_the_named_configs(
        tmp_path, arch, kernel_size):
    """A released-format file of each architecture, converted, loads strictly
    into every config the converter names, and each gives the released
    model's logits at that config's resolution."""
    preset = ARCH_SETTINGS[arch]
    released = make_released_state_dict(preset['channels'], preset['depths'],
                                         kernel_size, seed=kernel_size)
    src, dst = tmp_path / 'released.pth', tmp_path / 'converted.pth'
    torch.save(dict(state_dict=released), src)
    del released
    result = convert(src, dst)
    assert result.returncode == 0, result.stderr
    named = re.findall(r'^  (configs/imagenet/\S+\.py)', result.stdout,
                       re.MULTILINE)
    expected = [c for c in RELEASED
                if (c.arch, c.kernel_size) == (arch, kernel_size)]
    assert named == [c.config for c in expected]
    assert expected[0].released_as in result.stdout

    released = torch.load(src)['state_dict']
    state_dict = torch.load(dst)['state_dict']
    for ckpt in expected:
        model = build_classifier(ckpt.config)
        model.load_state_dict(state_dict, strict=True)
        x = torch.randn(1, 3, ckpt.resolution, ckpt.resolution)
        with torch.no_grad():
            logits = model(x, mode='tensor')
            _, ref_logits = released_forward(released, x, preset['depths'])
        assert max_rel_error(logits, ref_logits) < 1e-5, ckpt.config
        del model


@pytest.mark.parametrize('ckpt', RELEASED, ids=lambda c: c.name)
def test_config_tests_at_the_released_resolution(ckpt):
    cfg = Config.fromfile(ckpt.config)
    sizes = [t.get('crop_size', t.get('scale'))
             for t in cfg.test_dataloader.dataset.pipeline
             if t['type'] in ('CenterCrop', 'Resize')]
    assert sizes[-1] == ckpt.resolution
    backbone = cfg.model.backbone
    assert backbone.arch == ckpt.arch
    assert backbone.get('kernel_size',
                        ARCH_SETTINGS[ckpt.arch]['kernel_size']) == \
        ckpt.kernel_size


def test_unreleased_architectures_say_what_they_are(tmp_path):
    # The base preset with a kernel no released file has, a 22k head.
    base = ARCH_SETTINGS['base']
    sd = make_released_state_dict(base['channels'], [1, 1, 1, 1], 9,
                                  num_classes=21841)
    src = tmp_path / 'custom.pth'
    torch.save(sd, src)
    result = convert(src, tmp_path / 'out.pth')
    assert result.returncode == 0, result.stderr
    assert 'matches no released Conv2Former' in result.stdout
    assert 'No preset has its channels and depths' in result.stdout
    assert 'depths=[1, 1, 1, 1], kernel_size=9' in result.stdout
    assert 'model.head.num_classes=21841' in result.stdout
    # A preset's channels and depths with another kernel.
    sd = make_released_state_dict(TINY['channels'], TINY['depths'], 5)
    torch.save(sd, src)
    result = convert(src, tmp_path / 'out.pth')
    assert "It is the 'tiny' preset with kernel 5" in result.stdout
    assert ('configs/imagenet/conv2former-t_8xb128_in1k.py with --cfg-options'
            ' model.backbone.kernel_size=5') in result.stdout
