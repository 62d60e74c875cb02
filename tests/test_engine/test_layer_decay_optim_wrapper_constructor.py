"""LayerDecayOptimWrapperConstructor: every parameter's learning rate and
weight decay against the layer-wise decay rule, recomputed here from the
parameter names rather than from the backbone's get_layer_depth."""
import importlib
import os.path as osp
import re

import pytest
import torch.nn as nn
from mmengine.config import Config
from mmengine.optim import AmpOptimWrapper, OptimWrapper, build_optim_wrapper

import mmc2f  # noqa: F401  registers the constructor
from mmc2f.models import Conv2Former

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BASE_LR, BASE_WD, DECAY = 1e-3, 0.05, 0.9
DEPTHS = [1, 1, 7, 1]


class Detector(nn.Module):
    """A backbone plus parts outside it, as a detector has."""

    def __init__(self, **backbone_kwargs):
        super().__init__()
        self.backbone = Conv2Former(
            dict(channels=[16, 32, 48, 64], depths=DEPTHS, kernel_size=3),
            out_norm=True, out_indices=(0, 1, 2, 3), **backbone_kwargs)
        self.neck = nn.Sequential(nn.Conv2d(64, 16, 1), nn.GroupNorm(4, 16))
        self.head = nn.Linear(16, 4)


def build(model, type=None, **paramwise_cfg):
    cfg = dict(
        constructor='mmc2f.LayerDecayOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=BASE_LR, weight_decay=BASE_WD),
        paramwise_cfg=dict(decay_rate=DECAY, **paramwise_cfg))
    if type is not None:
        cfg['type'] = type
    return build_optim_wrapper(model, cfg)


def expected_layer(name):
    """The documented rule for depths [1, 1, 7, 1]: stem 0, stage 0 1,
    downsample 1 + stage 1 2, downsample 2 and stage 2 in groups of 3 blocks
    3..5, downsample 3 + stage 3 6, output norms and neck/head 7."""
    num_groups = -(-DEPTHS[2] // 3)  # 3
    last = 3 + num_groups  # 6
    final = last + 1  # 7
    m = re.match(r'backbone\.downsample_layers\.(\d)\.', name)
    if m:
        return {0: 0, 1: 2, 2: 3, 3: last}[int(m.group(1))], final + 1
    m = re.match(r'backbone\.stages\.(\d)\.(\d+)\.', name)
    if m:
        stage, block = int(m.group(1)), int(m.group(2))
        return {0: 1, 1: 2, 2: 3 + block // 3, 3: last}[stage], final + 1
    assert re.match(r'backbone\.norm\d\.|neck\.|head\.', name), name
    return final, final + 1


def expected_no_decay(name, param):
    leaf = name.rsplit('.', 1)[-1]
    is_norm = bool(re.search(r'(^|\.)norm\d?\.|downsample_layers\.0\.[25]\.|'
                             r'downsample_layers\.[123]\.0\.|neck\.1\.',
                             name))
    no_decay = is_norm or leaf == 'bias' or leaf.startswith('layer_scale_')
    # The constructor's own criterion is ndim == 1; the two must agree.
    assert no_decay == (param.ndim == 1), name
    return no_decay


def group_of(optim_wrapper):
    """Parameter id -> the one param group holding it."""
    found = {}
    for group in optim_wrapper.optimizer.param_groups:
        for p in group['params']:
            assert id(p) not in found, 'a parameter is in two groups'
            found[id(p)] = group
    return found


def test_every_parameter_lr_and_weight_decay():
    model = Detector()
    optim_wrapper = build(model)
    assert type(optim_wrapper) is OptimWrapper
    groups = group_of(optim_wrapper)
    params = dict(model.named_parameters())
    assert len(groups) == len(params)  # each trainable param exactly once

    seen_layers, seen_kinds = set(), set()
    for name, param in params.items():
        group = groups[id(param)]
        layer, num_layers = expected_layer(name)
        assert num_layers == 8
        scale = DECAY**(num_layers - 1 - layer)
        assert group['lr'] == pytest.approx(BASE_LR * scale), name
        no_decay = expected_no_decay(name, param)
        assert group['weight_decay'] == (0. if no_decay else BASE_WD), name
        if 'param_names' in group:
            assert name in group['param_names']
        seen_layers.add(layer)
        leaf = name.rsplit('.', 1)[-1]
        seen_kinds.add('layer_scale' if 'layer_scale' in leaf else leaf)
    assert seen_layers == set(range(8))
    assert seen_kinds == {'weight', 'bias', 'layer_scale'}

    # Spot checks of the rule's corners, by name.
    def lr(name):
        return groups[id(params[name])]['lr']

    def wd(name):
        return groups[id(params[name])]['weight_decay']

    assert lr('backbone.downsample_layers.0.0.weight') == pytest.approx(
        BASE_LR * DECAY**7)
    assert lr('backbone.stages.2.6.attn.v.weight') == pytest.approx(
        BASE_LR * DECAY**2)
    assert lr('backbone.stages.3.0.mlp.fc1.weight') == pytest.approx(
        BASE_LR * DECAY)
    assert lr('backbone.norm3.weight') == BASE_LR
    assert lr('head.weight') == BASE_LR
    assert wd('backbone.stages.0.0.layer_scale_1') == 0.
    assert wd('backbone.stages.0.0.layer_scale_2') == 0.
    assert wd('backbone.stages.1.0.attn.norm.weight') == 0.
    assert wd('backbone.downsample_layers.0.2.weight') == 0.  # BatchNorm
    assert wd('backbone.stages.1.0.attn.att.2.bias') == 0.
    assert wd('backbone.stages.1.0.attn.att.2.weight') == BASE_WD
    assert wd('backbone.downsample_layers.0.6.weight') == BASE_WD
    assert wd('neck.0.weight') == BASE_WD and wd('neck.1.weight') == 0.
    assert wd('head.weight') == BASE_WD and wd('head.bias') == 0.


def test_frozen_parameters_are_left_out():
    model = Detector(frozen_stages=1)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(
        n.startswith(('backbone.downsample_layers.0.', 'backbone.stages.0.',
                      'backbone.norm0.')) for n in frozen)
    groups = group_of(build(model))
    params = dict(model.named_parameters())
    assert len(groups) == len(params) - len(frozen)
    for name, param in params.items():
        assert (id(param) in groups) == (name not in frozen), name
        if name not in frozen:
            layer, num_layers = expected_layer(name)
            assert groups[id(param)]['lr'] == pytest.approx(
                BASE_LR * DECAY**(num_layers - 1 - layer))


def test_unknown_paramwise_key_is_named():
    with pytest.raises(ValueError, match='norm_decay_mult'):
        build(Detector(), norm_decay_mult=0.)


def test_backbone_without_get_layer_depth():
    model = nn.Module()
    model.backbone = nn.Conv2d(3, 8, 3)
    model.head = nn.Linear(8, 2)
    with pytest.raises(TypeError, match='get_layer_depth'):
        build(model)
    # The backbone as one id needs no depth method.
    groups = group_of(build(model, decay_type='backbone_wise'))
    assert groups[id(model.backbone.weight)]['lr'] == pytest.approx(
        BASE_LR * DECAY)
    assert groups[id(model.head.weight)]['lr'] == BASE_LR


@pytest.fixture
def no_accelerator(monkeypatch):
    """The fallback depends on mmengine's device: pretend to be a CPU-only
    machine, also where a GPU is present."""
    monkeypatch.setattr(
        'mmc2f.engine.optimizers.layer_decay_optim_wrapper_constructor.'
        'get_device', lambda: 'cpu')


def test_amp_falls_back_to_fp32_on_cpu(no_accelerator):
    optim_wrapper = build(Detector(), type='AmpOptimWrapper')
    assert type(optim_wrapper) is OptimWrapper
    assert not isinstance(optim_wrapper, AmpOptimWrapper)
    assert len(optim_wrapper.optimizer.param_groups) == 16  # 8 layers x 2


def test_real_mask_rcnn_config(no_accelerator):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(osp.join(
        REPO, 'configs/mask_rcnn/'
        'mask-rcnn_conv2former-t_fpn_amp-ms-crop-3x_coco.py'))
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert type(optim_wrapper) is OptimWrapper  # AMP config, CPU here
    groups = group_of(optim_wrapper)
    params = dict(model.named_parameters())
    assert len(groups) == len(params)
    base_lr = cfg.optim_wrapper.optimizer.lr

    def scale(name):
        return groups[id(params[name])]['lr'] / base_lr

    # Conv2Former-T: stage 2 has 12 blocks, 4 groups: 9 layer ids.
    assert scale('backbone.downsample_layers.0.0.weight') == pytest.approx(
        0.95**8)
    assert scale('backbone.stages.2.11.mlp.fc2.weight') == pytest.approx(
        0.95**2)
    assert scale('rpn_head.rpn_conv.weight') == pytest.approx(1.)
    assert scale('roi_head.bbox_head.fc_cls.weight') == pytest.approx(1.)
    assert groups[id(params['rpn_head.rpn_conv.bias'])]['weight_decay'] == 0.


def test_stage_wise_rule_by_name():
    """The stage-wise rule recomputed from the names, on the small model."""
    model = Detector()
    groups = group_of(build(model, decay_type='stage_wise', num_layers=6))
    for name, param in model.named_parameters():
        m = re.match(r'backbone\.(downsample_layers|stages)\.(\d)\.', name)
        if m is None:  # output norms, neck, head
            scale = 1.
        elif m.group(1) == 'downsample_layers':
            scale = DECAY**7
        else:
            scale = DECAY**(6 - int(m.group(2)))
        assert groups[id(param)]['lr'] == pytest.approx(BASE_LR * scale), name
        no_decay = expected_no_decay(name, param)
        assert groups[id(param)]['weight_decay'] == (
            0. if no_decay else BASE_WD), name


@pytest.mark.parametrize('paramwise_cfg, error, match', [
    (dict(decay_type='block_wise'), ValueError, 'block_wise'),
    (dict(num_layers=6), ValueError, 'num_layers is for'),
    (dict(decay_type='backbone_wise', num_layers=6), ValueError,
     'num_layers is for'),
    (dict(no_decay='norm'), ValueError, 'no_decay must be a list'),
    (dict(decay_type='stage_wise', num_layers=3), ValueError, '>= the'),
])
def test_bad_decay_settings_are_named(paramwise_cfg, error, match):
    with pytest.raises(error, match=match):
        build(Detector(), **paramwise_cfg)


def test_stage_wise_needs_get_stage_depth():
    from mmc2f.models import Conv2FormerIsotropic
    model = nn.Module()
    model.backbone = Conv2FormerIsotropic(arch='small')
    with pytest.raises(TypeError, match='get_stage_depth'):
        build(model, decay_type='stage_wise')


def named_as_convnext(model: nn.Module) -> nn.Module:
    """The libraries' ConvNeXt constructors pick their rule by the backbone's
    class name: the same backbone under a name containing 'ConvNeXt'."""
    backbone = model.backbone
    backbone.__class__ = type('ConvNeXtNamed' + type(backbone).__name__,
                              (type(backbone), ), {})
    return model


def assert_same_groups(model, ours, theirs):
    ours, theirs = group_of(ours), group_of(theirs)
    params = dict(model.named_parameters())
    assert len(ours) == len(theirs) == len(params)
    for name, param in params.items():
        a, b = ours[id(param)], theirs[id(param)]
        assert a['lr'] == pytest.approx(b['lr'], rel=1e-12), name
        assert a['weight_decay'] == b['weight_decay'], name


def fp32(optim_wrapper_cfg, **changes):
    """The config's optimiser wrapper without AMP, which the libraries'
    constructors (unlike ours) do not drop on a CPU."""
    cfg = dict(optim_wrapper_cfg, type='OptimWrapper', **changes)
    cfg.pop('loss_scale', None)
    return cfg


def build_from_config(path, scope):
    registry = importlib.import_module(f'{scope}.registry')
    importlib.import_module(f'{scope}.utils').register_all_modules()
    cfg = Config.fromfile(osp.join(REPO, path))
    cfg.model.backbone.init_cfg = None
    cfg.model.pop('data_preprocessor', None)
    if scope == 'mmseg':  # SyncBN needs a process group
        cfg.model.decode_head.norm_cfg = dict(type='BN', requires_grad=True)
        cfg.model.auxiliary_head.norm_cfg = dict(type='BN', requires_grad=True)
    return cfg, registry.MODELS.build(cfg.model)


UPERNET = ['upernet_conv2former-t_8xb2-amp-160k_ade20k-512x512.py',
           'upernet_conv2former-s_8xb2-amp-160k_ade20k-512x512.py',
           'upernet_conv2former-b_8xb2-amp-160k_ade20k-512x512.py',
           'upernet_conv2former-l_in21k-pre_8xb2-amp-160k_ade20k-640x640.py']


@pytest.mark.parametrize('config', UPERNET)
def test_upernet_groups_equal_mmsegmentation_stage_wise(config,
                                                        no_accelerator):
    """Every parameter's lr and weight decay equal what MMSegmentation's own
    LearningRateDecayOptimizerConstructor gives a ConvNeXt with these
    parameter names and ConvNeXt's settings (0.9, num_layers 6 for T and 12
    for S/B/L)."""
    cfg, model = build_from_config(f'configs/upernet/{config}', 'mmseg')
    paramwise = cfg.optim_wrapper.paramwise_cfg
    assert (paramwise.decay_rate, paramwise.decay_type) == (0.9, 'stage_wise')
    assert paramwise.num_layers == (6 if '-t_' in config else 12)
    ours = build_optim_wrapper(model, cfg.optim_wrapper)
    theirs = build_optim_wrapper(
        named_as_convnext(model),
        fp32(cfg.optim_wrapper,
             constructor='mmseg.LearningRateDecayOptimizerConstructor'))
    assert_same_groups(model, ours, theirs)


DETECTION = [
    'mask_rcnn/mask-rcnn_conv2former-t_fpn_amp-ms-crop-3x_coco.py',
    'cascade_mask_rcnn/'
    'cascade-mask-rcnn_conv2former-t_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py',
    'cascade_mask_rcnn/'
    'cascade-mask-rcnn_conv2former-s_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py',
    'cascade_mask_rcnn/'
    'cascade-mask-rcnn_conv2former-b_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py',
]


@pytest.mark.parametrize('config', DETECTION)
def test_detection_groups_equal_mmdetection_layer_wise(config,
                                                       no_accelerator):
    """The detection configs' groups equal those of MMDetection's own ConvNeXt
    constructor with num_layers = 3 + ceil(stage-2 blocks / 3), the formula
    that gives ConvNeXt's own 6 (9 blocks) and 12 (27 blocks); the configs'
    comments state this choice."""
    cfg, model = build_from_config(f'configs/{config}', 'mmdet')
    paramwise = cfg.optim_wrapper.paramwise_cfg
    assert 'num_layers' not in paramwise and 'decay_type' not in paramwise
    num_layers = 3 + -(-model.backbone.depths[2] // 3)
    ours = build_optim_wrapper(model, cfg.optim_wrapper)
    theirs = build_optim_wrapper(
        named_as_convnext(model),
        fp32(cfg.optim_wrapper,
             constructor='mmdet.LearningRateDecayOptimizerConstructor',
             paramwise_cfg=dict(paramwise, decay_type='layer_wise',
                                num_layers=num_layers)))
    assert_same_groups(model, ours, theirs)


class DetrLike(Detector):
    """The small detector plus what DINO's and Mask2Former's heads add:
    query and level embeddings (two-dimensional) and a transformer layer
    with its LayerNorm."""

    def __init__(self):
        super().__init__()
        self.decode_head = nn.ModuleDict(dict(
            query_embed=nn.Embedding(4, 16), query_feat=nn.Embedding(4, 16),
            level_embed=nn.Embedding(3, 16),
            layer=nn.Sequential(nn.Linear(16, 16), nn.LayerNorm(16))))


def ours_and_the_librarys(config, paramwise_cfg):
    """Our config's optimiser wrapper, and mmengine's default constructor
    (the one the libraries' DINO and Mask2Former recipes use) with the same
    optimiser and the library recipe's ``paramwise_cfg``, on DetrLike."""
    ours = Config.fromfile(osp.join(REPO, 'configs', config)).optim_wrapper
    ours = fp32(ours)
    model = DetrLike()
    theirs = dict(type='OptimWrapper', optimizer=ours['optimizer'],
                  paramwise_cfg=paramwise_cfg)
    return model, build_optim_wrapper(model, ours), build_optim_wrapper(
        model, theirs)


@pytest.mark.parametrize('arch', ['t', 'b'])
def test_dino_groups_equal_mmdetections_recipe(arch):
    """MMDetection's DINO recipe (for every backbone, ResNet-50's and
    Swin-L's): the backbone at lr x0.1 and every parameter decaying."""
    from mmengine.hub import get_config
    theirs = get_config('mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py')
    model, ours, theirs = ours_and_the_librarys(
        f'dino/dino-4scale_conv2former-{arch}_8xb2-12e_coco.py',
        theirs.optim_wrapper.paramwise_cfg)
    assert_same_groups(model, ours, theirs)
    lrs = sorted({group['lr'] for group in ours.optimizer.param_groups})
    assert lrs == pytest.approx([1e-5, 1e-4])


def test_mask2former_groups_equal_mmsegmentations_swin_t_recipe():
    """MMSegmentation's Swin-T Mask2Former groups, Swin's keys for its
    backbone norms and position embeddings (lr x0.1, no decay) replaced by
    keys naming each norm of Conv2Former and its layer scales."""
    from mmengine.hub import get_config
    from torch.nn.modules.batchnorm import _BatchNorm
    swin = get_config('mmseg::mask2former/'
                      'mask2former_swin-t_8xb2-160k_ade20k-512x512.py')
    keys = dict(swin.optim_wrapper.paramwise_cfg.custom_keys)
    norm_multi = keys['backbone.norm']
    swin_keys = [
        k for k in keys if k.startswith('backbone.')
        or k in ('absolute_pos_embed', 'relative_position_bias_table')]
    assert all(keys.pop(k) == norm_multi for k in swin_keys)
    backbone = DetrLike().backbone
    keys.update({f'backbone.{name}.': norm_multi
                 for name, module in backbone.named_modules()
                 if isinstance(module, (_BatchNorm, nn.LayerNorm))})
    keys['layer_scale'] = norm_multi
    model, ours, theirs = ours_and_the_librarys(
        'mask2former/mask2former_conv2former-t_8xb2-160k_ade20k-512x512.py',
        dict(swin.optim_wrapper.paramwise_cfg, custom_keys=keys))
    assert_same_groups(model, ours, theirs)
