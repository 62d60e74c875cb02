"""The config mistakes a user makes: each is a clear error before any work
starts (tools/train.py run as a user runs it, on a data root that does not
exist: an error about the data would mean the check came too late), or
works and is shown to work."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.registry import init_default_scope

import mmc2f  # noqa: F401
from mmc2f.models import Conv2Former
from mmc2f.toolkit.checks import check_feature_channels
from tests.test_e2e.helpers import REPO, load

MASK_RCNN = 'configs/mask_rcnn/mask-rcnn_conv2former-t_fpn_amp-ms-crop-3x_coco.py'  # noqa: E501
UPERNET = 'configs/upernet/upernet_conv2former-t_8xb2-amp-160k_ade20k-512x512.py'  # noqa: E501
IMAGENET = 'configs/imagenet/conv2former-t_8xb128_in1k.py'


def train_fails(tmp_path, shapes: str, config: str, *options: str) -> str:
    """tools/train.py with the options on the shapes set, without
    validation: it must fail; the last line of its output, the error it
    ends with."""
    result = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/train.py'), config,
         '--work-dir', str(tmp_path), '--cfg-options',
         f'train_dataloader.dataset.data_root={shapes}',
         'train_dataloader.dataset.ann_file=annotations/instances_train.json',
         'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None',
         'model.backbone.init_cfg=None', *options],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), capture_output=True,
        text=True, timeout=600)
    assert result.returncode != 0
    return result.stderr.strip().splitlines()[-1]


def test_misspelt_backbone_key(tmp_path, coco_shapes):
    """mmengine's builder already names the key and the class (no change)."""
    output = train_fails(tmp_path, coco_shapes, MASK_RCNN,
                         'model.backbone.out_indice=[0,1,2,3]')
    assert output == ("TypeError: Conv2Former.__init__() got an unexpected "
                      "keyword argument 'out_indice'")


def test_neck_channels_not_matching_the_backbone(tmp_path, coco_shapes):
    output = train_fails(tmp_path, coco_shapes, MASK_RCNN,
                         'model.neck.in_channels=[96,192,384,768]')
    assert output.startswith(
        'error: model.neck.in_channels=[96, 192, 384, 768] does not '
        'match the backbone: Conv2Former gives 4 feature maps of [72, 144, '
        '288, 576] channels. Set model.neck.in_channels=[72, 144, 288, 576]'
    ), output


def build(config: str, **changes):
    cfg = load(config)
    cfg.merge_from_dict(dict({'model.backbone.init_cfg': None}, **changes))
    init_default_scope(cfg.default_scope)
    from mmengine.registry import MODELS
    return cfg.model, MODELS.build(cfg.model)


@pytest.mark.parametrize('config,changes,message', [
    (UPERNET, {'model.decode_head.in_channels': [64, 128, 256, 512]},
     r'model.decode_head.in_channels=\[64, 128, 256, 512\] does not match '
     r'.* Set model.decode_head.in_channels=\[72, 144, 288, 576\]'),
    # The auxiliary head takes stage 2 (in_index=2) only.
    (UPERNET, {'model.auxiliary_head.in_channels': 576},
     r'model.auxiliary_head.in_channels=576 .* Set '
     r'model.auxiliary_head.in_channels=288,'),
    (UPERNET, {'model.auxiliary_head.in_index': 4},
     r'model.auxiliary_head.in_index=4 selects feature maps that the '
     r'backbone Conv2Former does not give: it gives 4 maps'),
    (IMAGENET, {'model.backbone.arch': 'base'},
     r'model.neck.in_channels=576 .* Set model.neck.in_channels=768,'),
])
def test_heads_and_classifier_neck_channels(config, changes, message):
    model_cfg, model = build(config)
    check_feature_channels(model_cfg, model)  # as shipped: fine
    model_cfg, model = build(config, **changes)
    with pytest.raises(ValueError, match=message):
        check_feature_channels(model_cfg, model)


def test_channel_check_leaves_the_model_as_it_was():
    """The probe runs in eval mode without gradients: train/eval modes,
    BatchNorm statistics and the random generators are untouched."""
    model_cfg, model = build(UPERNET)
    model.train()
    model.backbone.stages[0].eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {name: m.training for name, m in model.named_modules()}
    rng = torch.get_rng_state()
    check_feature_channels(model_cfg, model)
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)


SMALL = dict(channels=[16, 32, 48, 64], depths=[1, 1, 2, 1], kernel_size=5)


def test_frozen_stages_with_checkpointing(monkeypatch):
    """``frozen_stages`` with ``with_cp`` works (no error needed): the frozen
    stages get no gradient and stay in eval mode, the others are
    checkpointed block by block and get the gradients they get without
    checkpointing, stochastic depth included."""
    import torch.utils.checkpoint as checkpoint
    calls = []
    original = checkpoint.checkpoint

    def counted(*args, **kwargs):
        calls.append(kwargs.get('use_reentrant'))
        return original(*args, **kwargs)

    monkeypatch.setattr(checkpoint, 'checkpoint', counted)
    kwargs = dict(arch=SMALL, frozen_stages=2, drop_path_rate=0.2,
                  out_indices=(0, 1, 2, 3), out_norm=True)
    plain, checkpointed = Conv2Former(**kwargs), Conv2Former(
        **kwargs, with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 64, 64)
    for model in (plain, checkpointed):
        model.train()
        torch.manual_seed(0)  # the same drop-path masks
        sum(out.square().mean() for out in model(x)).backward()
    # One checkpointed call per block of the trainable stages 2 and 3.
    assert calls == [False] * (SMALL['depths'][2] + SMALL['depths'][3])
    frozen = ('downsample_layers.0.', 'downsample_layers.1.', 'stages.0.',
              'stages.1.', 'norm0.', 'norm1.')
    grads = dict(plain.named_parameters())
    for name, param in checkpointed.named_parameters():
        if name.startswith(frozen):
            assert not param.requires_grad and param.grad is None, name
        else:
            assert param.grad is not None, name
            torch.testing.assert_close(param.grad, grads[name].grad,
                                       msg=name)
    assert not checkpointed.stages[1].training
    assert checkpointed.stages[2].training
