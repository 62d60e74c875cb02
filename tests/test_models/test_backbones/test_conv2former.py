import math

import pytest
import torch
import torch.nn as nn

from mmc2f.models import Conv2Former, Conv2FormerIsotropic, Conv2FormerNeck
from mmc2f.models.backbones import conv2former
from mmc2f.models.backbones.conv2former import ARCH_SETTINGS, MODULATIONS
from mmc2f.ops import cpu_inference as fused_cpu_inference
from mmc2f.ops import forced
from mmc2f.paper import ISOTROPIC, find_imagenet
from mmc2f.toolkit.released_reference import (make_released_state_dict,
                                              max_rel_error, released_forward)

# Backbone alone (no 1280 head, no classifier), counted on the authors'
# published model, in millions; with the head the counts are the paper's.
BACKBONE_PARAMS = {'nano': 13.05, 'tiny': 24.68, 'small': 48.01,
                   'base': 87.76, 'large': 196.30}
SMALL_ARCH = dict(channels=[16, 32, 48, 64], depths=[1, 2, 3, 1],
                  kernel_size=5)


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def stage_size(size: int, stage: int) -> int:
    size = math.ceil(size / 2) // 2
    for _ in range(stage):
        size //= 2
    return size


@pytest.mark.parametrize('arch', list(BACKBONE_PARAMS))
def test_param_counts_match_paper(arch):
    with torch.device('meta'):
        backbone = Conv2Former(arch)
        neck = Conv2FormerNeck(backbone.channels[-1])
        classifier = nn.Linear(1280, 1000)
    full = find_imagenet(arch, 'in21k' if arch == 'large' else 'in1k',
                         224).params
    assert round(num_params(backbone) / 1e6, 2) == BACKBONE_PARAMS[arch]
    total = num_params(backbone) + num_params(neck) + num_params(classifier)
    assert round(total / 1e6, 1) == full


@pytest.mark.parametrize('arch', list(ARCH_SETTINGS))
def test_presets_shapes(arch):
    model = Conv2Former(arch, out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    channels = ARCH_SETTINGS[arch]['channels']
    assert [tuple(o.shape) for o in outs] == [
        (1, c, 64 // 2**(i + 2), 64 // 2**(i + 2))
        for i, c in enumerate(channels)
    ]
    assert model.kernel_size == (7 if arch == 'nano' else 11)


def test_arch_aliases_and_dict():
    assert Conv2Former('T').channels == ARCH_SETTINGS['tiny']['channels']
    model = Conv2Former(SMALL_ARCH)
    assert model.depths == [1, 2, 3, 1] and model.kernel_size == 5
    assert Conv2Former(SMALL_ARCH, kernel_size=21).kernel_size == 21


@pytest.mark.parametrize('hw', [(32, 32), (33, 47), (65, 100), (224, 160)])
def test_odd_input_sizes(hw):
    model = Conv2Former(SMALL_ARCH, out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        outs = model(torch.rand(2, 3, *hw))
    for i, out in enumerate(outs):
        assert out.shape == (2, SMALL_ARCH['channels'][i],
                             stage_size(hw[0], i), stage_size(hw[1], i))


def test_out_indices_negative_and_out_norm():
    model = Conv2Former(SMALL_ARCH, out_indices=(-1, 1), out_norm=True)
    assert model.out_indices == (1, 3)
    assert hasattr(model, 'norm1') and hasattr(model, 'norm3')
    assert not hasattr(model, 'norm0')
    outs = model(torch.rand(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [32, 64]
    # The out norm normalises each position over channels.
    mean = outs[1].mean(dim=1)
    assert mean.abs().max() < 1e-4


@pytest.mark.parametrize('arch,depths', [(SMALL_ARCH, SMALL_ARCH['depths']),
                                         ('tiny', [3, 3, 12, 3])])
def test_equivalence_with_released_forward(arch, depths):
    cfg = ARCH_SETTINGS[arch] if isinstance(arch, str) else arch
    sd = make_released_state_dict(cfg['channels'], depths,
                                  cfg['kernel_size'], seed=1)
    model = Conv2Former(arch, out_indices=(0, 1, 2, 3)).eval()
    backbone_sd = {
        k: v
        for k, v in sd.items() if k.startswith(('downsample_', 'stages'))
    }
    missing, unexpected = model.load_state_dict(backbone_sd, strict=True)
    assert not missing and not unexpected
    x = torch.randn(2, 3, 96, 80)
    with torch.no_grad():
        outs = model(x)
        ref_stages, _ = released_forward(sd, x, depths)
    for out, ref in zip(outs, ref_stages):
        assert max_rel_error(out, ref) < 1e-5
    # The fast paths (channels_last input, grad mode) compute the same.
    with torch.no_grad():
        outs_cl = model(x.contiguous(memory_format=torch.channels_last))
    outs_grad = model(x)
    for out, cl, gr, ref in zip(outs, outs_cl, outs_grad, ref_stages):
        assert max_rel_error(cl, ref) < 1e-5
        assert max_rel_error(gr.detach(), ref) < 1e-5


@pytest.mark.parametrize('model', [
    lambda: Conv2Former(SMALL_ARCH, out_indices=(0, 1, 2, 3), out_norm=True),
    lambda: Conv2FormerIsotropic('IS', out_indices=(5, 11))
])
@pytest.mark.parametrize('grad', [False, True])
def test_outputs_keep_the_input_layout(model, grad):
    """Channels last inside, but NCHW in, contiguous NCHW out: mmcv's
    compiled RoIAlign reads raw NCHW memory, and on a channels-last map it
    silently pooled the wrong values (a Mask R-CNN that could not learn)."""
    from mmcv.ops import roi_align
    from torchvision.ops import roi_align as reference_roi_align
    model = model().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.set_grad_enabled(grad):
        outs = model(x)
        outs_cl = model(x.contiguous(memory_format=torch.channels_last))
    rois = torch.tensor([[0., 1., 2., 40., 30.], [1., 8., 4., 60., 63.]])
    for out, out_cl in zip(outs, outs_cl):
        assert out.is_contiguous()
        assert out_cl.is_contiguous(memory_format=torch.channels_last)
        scale = out.shape[-1] / 64
        pooled = roi_align(out, rois, (7, 7), scale, 2, 'avg', True)
        expected = reference_roi_align(out.detach(), rois, (7, 7), scale, 2,
                                       aligned=True)
        assert torch.allclose(pooled, expected, atol=1e-5)


def test_frozen_stages():
    model = Conv2Former(SMALL_ARCH, frozen_stages=2, out_norm=True,
                        out_indices=(0, 1, 2, 3))
    model.init_weights()
    model.train()
    for i in range(2):
        for module in (model.downsample_layers[i], model.stages[i],
                       getattr(model, f'norm{i}')):
            assert not module.training
            assert all(not p.requires_grad for p in module.parameters())
    for i in range(2, 4):
        assert model.stages[i].training
        assert all(p.requires_grad for p in model.stages[i].parameters())
    # Frozen stem BatchNorm keeps its running stats through training steps.
    bn = model.downsample_layers[0][2]
    before = bn.running_mean.clone()
    model(torch.rand(2, 3, 64, 64))
    assert torch.equal(before, bn.running_mean)


def test_norm_eval():
    model = Conv2Former(SMALL_ARCH, norm_eval=True)
    assert model.train() is model
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 2 and all(not m.training for m in bns)
    assert model.stages[0].training
    model = Conv2Former(SMALL_ARCH, norm_eval=False).train()
    assert all(m.training for m in model.modules()
               if isinstance(m, nn.BatchNorm2d))


def test_with_cp_same_output_and_grads():
    torch.manual_seed(0)
    plain = Conv2Former(SMALL_ARCH, out_indices=(0, 1, 2, 3),
                        layer_scale_init_value=0.5)
    plain.init_weights()
    ckpt = Conv2Former(SMALL_ARCH, out_indices=(0, 1, 2, 3),
                       layer_scale_init_value=0.5, with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for model in (plain, ckpt):
        model.eval()  # BatchNorm in eval so both see identical statistics
        outs = model(x)
        sum(o.square().sum() for o in outs).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(plain(x), ckpt(x)):
        assert torch.allclose(a, b, atol=1e-6)
    for ga, gb in zip(*grads):
        assert torch.allclose(ga, gb, rtol=1e-4, atol=1e-6)


def test_drop_path_only_in_training():
    model = Conv2Former(SMALL_ARCH, drop_path_rate=0.5,
                        layer_scale_init_value=1.0)
    model.init_weights()
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x)[0], model(x)[0])
    model.train()
    with torch.no_grad():
        a, b = model(x)[0], model(x)[0]
    assert not torch.equal(a, b)
    # The last block gets the full rate, the first none.
    rates = [
        getattr(blk.drop_path, 'drop_prob', 0.) for s in model.stages
        for blk in s
    ]
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.5)


@pytest.mark.parametrize('modulation', list(MODULATIONS))
def test_modulations(modulation):
    torch.manual_seed(0)
    model = Conv2Former(SMALL_ARCH, modulation=modulation,
                        layer_scale_init_value=1.)
    model.init_weights()
    ref = Conv2Former(SMALL_ARCH, layer_scale_init_value=1.)
    ref.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 64, 64)
    out = model(x)[0]
    assert torch.isfinite(out).all()
    if modulation != 'hadamard':
        assert not torch.allclose(out, ref(x)[0])
    # The modulation itself, checked on one block.
    a = torch.randn(2, 4, 5, 5)
    v = torch.randn(2, 4, 5, 5)
    modulated = MODULATIONS[modulation](a, v)
    expected = {
        'hadamard': a * v,
        'sum': a + v,
        'sigmoid': torch.sigmoid(a) * v,
        'l1': a / a.abs().sum(1, keepdim=True) * v,
    }.get(modulation)
    if expected is not None:
        assert torch.allclose(modulated, expected, atol=1e-6)
    else:  # linear: A scaled into (0, 1]
        scaled = modulated / v
        assert scaled.min() > 0 and scaled.max() <= 1 + 1e-6


def randomise_batch_norms(model: nn.Module) -> None:
    """Running statistics and affine parameters far from the identity, so
    that a wrong BatchNorm fold shows."""
    for bn in model.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            nn.init.uniform_(bn.weight, 0.5, 2)
            nn.init.uniform_(bn.bias, -1, 1)


@pytest.mark.skipif(not fused_cpu_inference.AVAILABLE,
                    reason='no oneDNN fused convolution in this torch build')
@pytest.mark.parametrize('modulation', list(MODULATIONS))
@pytest.mark.parametrize('layer_scale', [0.5, 0.])
def test_fused_cpu_inference_path(monkeypatch, modulation, layer_scale):
    """CPU inference takes oneDNN's fused kernels and computes what the
    unfused path (taken with autograd on) computes."""
    torch.manual_seed(0)
    model = Conv2Former(SMALL_ARCH, modulation=modulation,
                        out_indices=(0, 1, 2, 3),
                        layer_scale_init_value=layer_scale).eval()
    model.init_weights()
    randomise_batch_norms(model)
    x = torch.randn(2, 3, 64, 48)
    unfused = [o.detach() for o in model(x)]
    calls = []
    fused_op, inplace_op = (fused_cpu_inference.CONV_WITH_EPILOGUE,
                            fused_cpu_inference.CONV_ADD_INPLACE)

    class Counting:
        def __init__(self, op, suffix=''):
            self.op, self.suffix = op, suffix

        def __call__(self, *args):
            calls.append('unary')
            return self.op(*args)

        def binary(self, *args):
            calls.append(args[8] + self.suffix)
            return self.op.binary(*args)

    monkeypatch.setattr(fused_cpu_inference, 'CONV_WITH_EPILOGUE',
                        Counting(fused_op))
    monkeypatch.setattr(fused_cpu_inference, 'CONV_ADD_INPLACE',
                        Counting(inplace_op, '_'))
    with torch.inference_mode():
        fused = model(x)
    blocks = sum(SMALL_ARCH['depths'])
    # Per block: GELU into att[0] and fc1 and pos, the residual into proj
    # and (in place) fc2, and (Hadamard only) the product into V; GELU into
    # the stem's two 3x3 convs.
    assert calls.count('unary') == 3 * blocks + 2
    assert calls.count('add') == blocks
    assert calls.count('add_') == blocks
    assert calls.count('mul') == (blocks if modulation == 'hadamard' else 0)
    for a, b in zip(fused, unfused):
        assert max_rel_error(a, b) < 1e-5
    # Where it does not apply: autocast, and training mode.
    calls.clear()
    train_model = Conv2Former(SMALL_ARCH, drop_path_rate=0.5).train()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        model(x)
    with torch.no_grad():
        train_model(x)
    assert calls == []


@pytest.mark.skipif(not fused_cpu_inference.AVAILABLE,
                    reason='no oneDNN fused convolution in this torch build')
@pytest.mark.parametrize('channels_last', [True, False])
@pytest.mark.parametrize(
    'budget, shape, num_tiles',
    [
        (2**30, (5, 16, 21, 13), 1),  # all at once
        (2 * 21 * 13 * 64 * 4, (5, 16, 21, 13), 3),  # 2 + 2 + 1 images
        (12 * 13 * 64 * 4, (2, 16, 21, 13), 6),  # bands of 10 + 10 + 1 rows
        (1, (1, 16, 7, 13), 1),  # a band of at least 8 rows
    ])
def test_mlp_tiles_compute_the_same(monkeypatch, channels_last, budget,
                                    shape, num_tiles):
    """The fused MLP, tile by tile (whole images or bands of rows with one
    row of context), equals the unfused block; the block's input is left
    as it was though the MLP adds in place."""
    assert len(fused_cpu_inference.batch_tiles(
        shape[0], shape[2], 13 * 64 * 4, budget)) == num_tiles
    monkeypatch.setattr(fused_cpu_inference, 'MLP_TILE_BYTES', budget)
    torch.manual_seed(0)
    block = conv2former.Conv2FormerBlock(16, 5,
                                         layer_scale_init_value=0.5).eval()
    x = torch.randn(shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    expected = block(x.clone().requires_grad_()).detach()
    before = x.clone()
    with torch.no_grad():
        out = block(x)
    assert max_rel_error(out, expected) < 1e-5
    assert torch.equal(x, before)


def test_init_weights_released_scheme():
    model = Conv2Former(SMALL_ARCH)
    model.init_weights()
    conv = model.stages[0][0].attn.v
    assert conv.bias.abs().max() == 0
    assert conv.weight.std().item() == pytest.approx(0.02, rel=0.3)
    assert model.stages[0][0].layer_scale_1.max().item() == pytest.approx(
        1e-6)


def test_get_layer_depth():
    model = Conv2Former('tiny')  # stage 2: 12 blocks -> 4 groups
    depth = model.get_layer_depth
    assert depth('backbone.downsample_layers.0.0.weight', 'backbone.') == (0,
                                                                          9)
    assert depth('backbone.stages.0.2.attn.v.weight', 'backbone.')[0] == 1
    assert depth('backbone.downsample_layers.1.1.weight', 'backbone.')[0] == 2
    assert depth('backbone.stages.2.0.mlp.fc1.weight', 'backbone.')[0] == 3
    assert depth('backbone.stages.2.11.mlp.fc1.weight', 'backbone.')[0] == 6
    assert depth('backbone.stages.3.0.layer_scale_1', 'backbone.')[0] == 7
    assert depth('backbone.norm3.weight', 'backbone.')[0] == 8
    assert depth('neck.lateral_convs.0.conv.weight', 'backbone.')[0] == 8


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='huge'), "Unknown arch 'huge'"),
    (dict(arch=dict(channels=[8, 16, 32, 64])), 'missing'),
    (dict(arch=dict(channels=[8, 16, 32], depths=[1, 1, 1, 1])), '4 entries'),
    (dict(kernel_size=6), 'positive odd'),
    (dict(kernel_size=0), 'positive odd'),
    (dict(out_indices=(4, )), 'out of range'),
    (dict(out_indices=(1, -3)), 'twice'),
    (dict(frozen_stages=5), 'frozen_stages'),
    (dict(modulation='product'), "Unknown modulation 'product'"),
    (dict(drop_path_rate=1.0), 'drop_path_rate'),
    (dict(drop_path_rate=-0.1), 'drop_path_rate'),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Conv2Former(**kwargs)


@pytest.mark.parametrize('x,match', [
    (torch.rand(3, 64, 64), '4D input'),
    (torch.rand(1, 1, 64, 64), '3 input channels'),
    (torch.rand(1, 3, 16, 64), '>= 32'),
])
def test_invalid_inputs(x, match):
    with pytest.raises(ValueError, match=match):
        Conv2Former(SMALL_ARCH)(x)


def test_nan_input_is_not_hidden():
    model = Conv2Former(SMALL_ARCH).eval()
    x = torch.rand(1, 3, 64, 64)
    x[0, 0, 10, 10] = float('nan')
    with torch.no_grad():
        assert torch.isnan(model(x)[0]).any()


@pytest.mark.parametrize('arch,channels', [('IS', 328), ('IB', 640)])
@pytest.mark.parametrize('embed', ['conv', 'conv3'])
def test_isotropic_shapes(arch, channels, embed):
    model = Conv2FormerIsotropic(arch, patch_embed_type=embed,
                                 out_indices=(5, -1)).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 48))
    assert [tuple(o.shape) for o in outs] == [(1, channels, 4, 3)] * 2
    assert len(model.blocks) == 18


@pytest.mark.skipif(not fused_cpu_inference.AVAILABLE,
                    reason='no oneDNN fused convolution in this torch build')
def test_isotropic_fused_cpu_inference_path():
    """The three-conv patch embedding is a Stem with a biased last conv:
    its fused path (BatchNorm folded into that conv) and the blocks' equal
    the unfused ones."""
    torch.manual_seed(0)
    model = Conv2FormerIsotropic(
        dict(channels=64, depth=3), patch_embed_type='conv3',
        out_indices=(0, 2), layer_scale_init_value=0.5).eval()
    model.init_weights()
    randomise_batch_norms(model)
    nn.init.uniform_(model.patch_embed[6].bias, -1, 1)
    x = torch.randn(2, 3, 96, 64)
    unfused = [o.detach() for o in model(x)]
    with torch.inference_mode():
        fused = model(x)
    for a, b in zip(fused, unfused):
        assert max_rel_error(a, b) < 1e-5


@pytest.mark.parametrize('paper', ISOTROPIC,
                         ids=lambda r: f'{r.name}-{r.patch_embed}')
def test_isotropic_params_near_paper(paper):
    with torch.device('meta'):
        model = Conv2FormerIsotropic(paper.arch,
                                     patch_embed_type=paper.patch_embed)
        classifier = nn.Linear(model.channels, 1000)
    total = num_params(model) + num_params(classifier)
    assert abs(total - paper.params * 1e6) / (paper.params * 1e6) < 0.03


def test_isotropic_invalid():
    with pytest.raises(ValueError, match="Unknown patch_embed 'conv5'"):
        Conv2FormerIsotropic('IS', patch_embed_type='conv5')
    with pytest.raises(ValueError, match='Unknown arch'):
        Conv2FormerIsotropic('IL')


def test_float16_autocast_modulation_does_not_overflow():
    """A and V in the hundreds: their product exceeds float16's 65504."""
    from mmc2f.models.backbones.conv2former import ConvMod
    torch.manual_seed(0)
    dim = ARCH_SETTINGS['large']['channels'][-1]
    mod = ConvMod(dim, kernel_size=11).eval()
    with torch.no_grad():
        mod.att[0].weight.normal_(0, 4.0)
        mod.att[2].weight.normal_(0, 4.0)
        mod.v.weight.normal_(0, 4.0)
        mod.proj.weight.normal_(0, dim**-0.5)
    x = torch.randn(1, dim, 12, 12)
    with torch.no_grad():
        a, v = mod.att(mod.norm(x)), mod.v(mod.norm(x))
        assert (a.half() * v.half()).isinf().any()  # the hazard is real
        ref = mod(x)
        with torch.autocast('cpu', dtype=torch.float16):
            out = mod(x)
    assert torch.isfinite(out).all()
    assert max_rel_error(out.float(), ref) < 1e-2


def test_float16_autocast_largest_preset():
    """Smoke test: the largest preset runs under float16 autocast. Its
    initial A * V stays far below float16's limit; the overflow guard itself
    is shown by ``test_float16_autocast_modulation_does_not_overflow``."""
    model = Conv2Former('large', out_indices=(0, 1, 2, 3)).eval()
    model.init_weights()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.float16):
        outs = model(x)
    assert all(torch.isfinite(o).all() for o in outs)


def reference_path(model, x):
    """The model's outputs with the reference ops only (the fused CPU
    engine's layout kept), in inference mode."""
    with forced('reference'), torch.no_grad():
        return model(x)


@pytest.mark.skipif(not fused_cpu_inference.AVAILABLE,
                    reason='no oneDNN fused convolution in this torch build')
@pytest.mark.parametrize('model', [
    *[dict(type=Conv2Former, arch=a) for a in ARCH_SETTINGS],
    dict(type=Conv2Former, arch='base', kernel_size=7),
    *[dict(type=Conv2FormerIsotropic, arch=a, patch_embed_type=e)
      for a in ('IS', 'IB') for e in ('conv', 'conv3')],
], ids=lambda m: f'{m["type"].__name__}-{m["arch"]}-'
   f'{m.get("kernel_size", m.get("patch_embed_type", ""))}')
def test_fused_and_reference_paths_agree_on_every_preset(model):
    torch.manual_seed(0)
    kwargs = dict(model)
    model = kwargs.pop('type')(out_indices=-1, layer_scale_init_value=0.3,
                               **kwargs).eval()
    randomise_batch_norms(model)
    x = torch.randn(1, 3, 64, 96)
    from unittest import mock
    blocks = [m for m in model.modules()
              if isinstance(m, conv2former.Conv2FormerBlock)]
    with torch.inference_mode(), mock.patch.object(
            fused_cpu_inference, 'block_forward',
            wraps=fused_cpu_inference.block_forward) as block_forward:
        fused = model(x)
    # The fused path did run, in every block.
    assert block_forward.call_count == len(blocks)
    for a, b in zip(fused, reference_path(model, x)):
        assert max_rel_error(a, b) < 1e-5


def test_model_runs_without_the_fused_module(tmp_path):
    """Deleting ops/cpu_inference.py leaves a model that computes the same
    function: imported with that module blocked, the backbone still equals
    the released forward."""
    script = tmp_path / 'no_fused.py'
    script.write_text('''
import sys
import torch
sys.modules['mmc2f.ops.cpu_inference'] = None
from mmc2f.ops import dispatch
from mmc2f.models import Conv2Former
from mmc2f.toolkit.released_reference import (make_released_state_dict,
                                              max_rel_error, released_forward)
assert dispatch.cpu_inference is None
arch = dict(channels=[16, 32, 48, 64], depths=[1, 2, 3, 1], kernel_size=5)
sd = make_released_state_dict(arch['channels'], arch['depths'], 5)
model = Conv2Former(arch, out_indices=(0, 1, 2, 3)).eval()
model.load_state_dict({k: v for k, v in sd.items()
                       if k.startswith(('downsample', 'stages'))})
x = torch.randn(2, 3, 64, 64)
with torch.inference_mode():
    outs = model(x)
stages, _ = released_forward(sd, x, arch['depths'])
assert max(max_rel_error(a, b) for a, b in zip(outs, stages)) < 1e-5
print('ok')
''')
    import subprocess
    import sys
    result = subprocess.run([sys.executable, str(script)],
                            capture_output=True, text=True)
    assert result.returncode == 0 and 'ok' in result.stdout, result.stderr


def test_isotropic_frozen_stages_and_norm_eval():
    """mmpretrain's ViT contract: the patch embedding and the first blocks
    frozen, the final norm too when every block is; BatchNorm of the
    three-conv embedding kept in eval mode with norm_eval."""
    model = Conv2FormerIsotropic(dict(channels=32, depth=3),
                                 patch_embed_type='conv3', frozen_stages=2,
                                 norm_eval=True).train()
    frozen = {n.split('.')[0] + ('.' + n.split('.')[1]
                                 if n.startswith('blocks') else '')
              for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {'patch_embed', 'blocks.0', 'blocks.1'}
    assert not model.patch_embed.training and not model.blocks[1].training
    assert model.blocks[2].training and model.norm.training
    all_frozen = Conv2FormerIsotropic(dict(channels=32, depth=3),
                                      frozen_stages=3).train()
    assert not any(p.requires_grad for p in all_frozen.parameters())
    bn_model = Conv2FormerIsotropic(dict(channels=32, depth=3),
                                    patch_embed_type='conv3',
                                    norm_eval=True).train()
    assert not bn_model.patch_embed[2].training
    assert bn_model.patch_embed[0].weight.requires_grad
    with pytest.raises(ValueError, match='frozen_stages'):
        Conv2FormerIsotropic(dict(channels=32, depth=3), frozen_stages=4)


@pytest.mark.parametrize('backbone', [
    lambda: Conv2Former(SMALL_ARCH),
    lambda: Conv2FormerIsotropic(dict(channels=32, depth=2)),
])
def test_second_init_weights_changes_nothing(backbone):
    model = backbone()
    model.init_weights()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.init_weights()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
