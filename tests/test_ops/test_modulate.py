"""``mmc2f.ops.dwconv_modulate``: the Triton kernels in Triton's interpreter
against PyTorch's autograd (``interpreted_cases.py``, in a process of its
own), and the op's checks and backend policy in this one."""
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmc2f.models import Conv2Former
from mmc2f.models.backbones.conv2former import ConvMod
from mmc2f.ops import dispatch, dwconv_modulate, forced

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip('triton', reason='the kernels are written in triton')
sys.path.insert(0, str(Path(__file__).parent))
from interpreted_cases import CASES, TILE_CASES  # noqa: E402

# One rounding of the output or a gradient in the tensor's dtype (the
# interpreter truncates to bfloat16, a GPU rounds to nearest); float32
# sums in the kernels either way.
TOL = {'float32': 2e-6, 'float16': 2e-3, 'bfloat16': 1.6e-2}


@pytest.fixture(scope='module')
def interpreted() -> dict:
    env = dict(os.environ, TRITON_INTERPRET='1')
    result = subprocess.run(
        [sys.executable, str(ROOT / 'tests/test_ops/interpreted_cases.py')],
        capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


@pytest.mark.parametrize('name', sorted({**CASES, **TILE_CASES}))
def test_interpreted_forward_and_gradients(interpreted, name):
    """The output and the gradients of x, weight, bias and V against
    float64 autograd, in the inputs' dtypes and x's layout; with several
    programs' partial sums, the weight and bias gradients bit-identical in
    two runs."""
    n, c, h, w, k, dtype, layout, bias = {**CASES, **TILE_CASES}[name]
    case = interpreted[name]
    # float16 is computed and kept in float32 (A * V overflows float16).
    assert case['out_dtype'] == ('float32' if dtype == 'float16' else dtype)
    assert case['channels_last' if layout == 'nhwc' else 'contiguous']
    errors = case['errors']
    assert errors['out'] < TOL['float32' if dtype == 'float16' else dtype]
    # The gradients of x and V are stored in their dtype; weight and bias
    # are float32 parameters.
    for grad in ('x', 'v'):
        assert errors[grad] < TOL[dtype], (grad, errors)
        assert errors[f'{grad}_dtype_kept']
    for grad in ('weight', 'bias') if bias else ('weight', ):
        assert errors[grad] < TOL['float32'] * 5, (grad, errors)
    assert 'bias' in errors or not bias
    if name in TILE_CASES:
        assert case['deterministic']


def test_interpreted_backbone_training_step(interpreted):
    """A small backbone's gradients (every parameter, kernel 7, four stages
    down to 2x2) through the Triton op equal those of the reference ops."""
    step = interpreted['backbone_step']
    assert step['params'] > 40
    assert step['max_rel_err'] < 1e-4


def test_interpreted_convmod_under_autocast(interpreted):
    """ConvMod through the op under float16 and bfloat16 autocast computes
    what its reference ops compute (they round A to the autocast dtype, the
    op keeps it in float32), gradients included."""
    errors = interpreted['convmod_autocast']
    assert errors['float16'] < 5e-3 and errors['bfloat16'] < 3e-2, errors


def test_interpreted_convmod_keeps_less_for_backward(interpreted):
    """A ConvMod keeps x and V for the op's backward, not A (and not the
    float32 copies of A and V under float16 autocast): 4 bytes per element
    less in float32, 6 under float16 autocast, where the reference also
    keeps autocast's float16 copy of the 11x11 weights (docs/benchmarks.md).
    """
    elements = 72 * 14 * 14
    saved = interpreted['saved_bytes']
    assert saved['float32']['reference'] - saved['float32']['triton'] == \
        4 * elements
    assert saved['float16']['reference'] - saved['float16']['triton'] == \
        6 * elements + 72 * 11 * 11 * 2


def test_reference_backend_is_pytorch_ops():
    torch.manual_seed(0)
    x, v = torch.randn(2, 2, 8, 5, 6).unbind(0)
    w, b = torch.randn(8, 1, 5, 5), torch.randn(8)
    out = dwconv_modulate(x, w, b, v, backend='reference')
    assert torch.equal(out, F.conv2d(x, w, b, padding=2, groups=8) * v)
    # 'auto' on the CPU: the reference ops.
    assert torch.equal(dwconv_modulate(x, w, b, v), out)


@pytest.mark.parametrize('args,match', [
    (dict(x=torch.zeros(8, 5, 6)), r'x must be \(N, C, H, W\)'),
    (dict(weight=torch.zeros(8, 1, 4, 4)), 'k odd from 3 to 21'),
    (dict(weight=torch.zeros(8, 1, 23, 23)), 'k odd from 3 to 21'),
    (dict(weight=torch.zeros(4, 1, 5, 5)), 'a depthwise conv'),
    (dict(bias=torch.zeros(3)), r'bias must be \(8,\)'),
    (dict(v=torch.zeros(1, 8, 5, 7)), 'v must have the shape of x'),
    (dict(v=torch.zeros(1, 8, 5, 6, dtype=torch.float64)),
     'v must be float16, bfloat16 or float32'),
    (dict(backend='cuda'), 'backend must be one of'),
])
def test_refuses_bad_inputs(args, match):
    kwargs = dict(x=torch.zeros(1, 8, 5, 6), weight=torch.zeros(8, 1, 5, 5),
                  bias=torch.zeros(8), v=torch.zeros(1, 8, 5, 6))
    kwargs.update(args)
    with pytest.raises(ValueError, match=match):
        dwconv_modulate(**kwargs)


@pytest.mark.skipif(dispatch.INTERPRETED, reason='interpreted here')
def test_triton_backend_needs_cuda():
    x = torch.zeros(1, 8, 5, 6)
    with pytest.raises(ValueError, match="needs Triton and CUDA tensors.*"
                       "use backend='auto' or 'reference'"):
        dwconv_modulate(x, torch.zeros(8, 1, 5, 5), None, x,
                        backend='triton')


def test_forced_reference_overrides_every_backend(monkeypatch):
    calls = []
    monkeypatch.setattr(dispatch, '_timed_choice',
                        lambda *a: calls.append(a) or 'triton')
    x = torch.zeros(1, 8, 5, 6)
    with forced('reference'):
        assert dispatch.op_backend('triton', x, torch.zeros(8, 1, 5, 5),
                                   x) == 'reference'
    assert dispatch._forced is None and not calls
    with pytest.raises(ValueError, match='backend must be one of'):
        with forced('fast'):
            pass


class Cuda(torch.Tensor):
    """A tensor that says it is on CUDA (the policy reads only that)."""
    device = torch.device('cuda')


def test_auto_times_once_per_key_on_cuda(monkeypatch):
    """On CUDA, 'auto' times the candidates once per key (channels, kernel,
    dtypes, layout, training, area bucket) and keeps the faster."""
    monkeypatch.setattr(dispatch, '_timed', {})
    monkeypatch.setattr(dispatch, '_triton_runs_on', lambda device: True)
    timed = []

    def choice(key, *args):
        timed.append(key)
        return 'triton' if key[1] == 8 else 'reference'

    monkeypatch.setattr(dispatch, '_timed_choice', choice)

    def tensor(c, h, w):
        return torch.zeros(1, c, h, w).as_subclass(Cuda)

    weight = torch.zeros(8, 1, 7, 7)
    # 30x40 and 32x36 share the bucket of 1024 pixels; 64x64 does not.
    for c, h, w in ((8, 30, 40), (8, 32, 36), (16, 30, 40), (8, 64, 64)):
        x = tensor(c, h, w)
        chosen = dispatch.op_backend('auto', x, weight, x)
        assert chosen == ('triton' if c == 8 else 'reference')
    assert [(k[1], k[-1]) for k in timed] == [
        (8, 1024), (16, 1024), (8, 4096)]


@pytest.fixture
def timing_on_cpu(monkeypatch):
    """``_timed_choice`` with each candidate run once and timed 1 ms (CUDA
    events need CUDA)."""
    from mmc2f.ops import modulate as op
    monkeypatch.setattr(dispatch, '_time', lambda fn: (fn(), 1.)[1])
    monkeypatch.setattr(torch.cuda, 'device',
                        lambda device: contextlib.nullcontext())
    monkeypatch.setattr(dispatch, '_timed_lines', [])
    return op


def test_auto_timing_inside_a_gradient_checkpoint(timing_on_cpu,
                                                  monkeypatch):
    """The timing's forward and backward inside a block's checkpoint (as
    with_cp=True) are not packed by the checkpoint's hooks: the
    recomputation keeps as many tensors as the forward did."""
    monkeypatch.setattr(timing_on_cpu._DWConvModulate, 'apply',
                        timing_on_cpu.reference)
    w = torch.randn(8, 1, 5, 5, requires_grad=True)
    timed = []

    def block(x: torch.Tensor) -> torch.Tensor:
        if not timed:  # the first forward times; the recomputation not
            timed.append(dispatch._timed_choice(('key', ) * 10, x, w, None,
                                                x, True))
        return (x * 2).sin() * x

    x = torch.randn(1, 8, 6, 6, requires_grad=True)
    torch.utils.checkpoint.checkpoint(block, x,
                                      use_reentrant=False).sum().backward()
    assert timed == ['reference'] and x.grad is not None


def test_auto_keeps_the_reference_where_triton_fails(timing_on_cpu,
                                                     monkeypatch):
    def broken(*args):
        raise RuntimeError('PTX too old')

    monkeypatch.setattr(timing_on_cpu._DWConvModulate, 'apply', broken)
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        assert dispatch._timed_choice(('key', ) * 10, x,
                                      torch.randn(8, 1, 5, 5), None, x,
                                      False) == 'reference'
    assert 'triton failed: RuntimeError: PTX too old' in dispatch.choices(
    )[0]


@pytest.mark.parametrize('change', ['modulation', 'stride', 'dilation',
                                    'padding_mode', 'kernel', 'hook'])
def test_convmod_hands_only_what_the_op_computes(monkeypatch, change):
    """ConvMod uses the op only for the Hadamard modulation and the plain
    depthwise conv it computes, with no hooks on the calls it replaces."""
    monkeypatch.setattr(dispatch, 'INTERPRETED', True)
    module = ConvMod(8, 5, backend='triton')
    x = torch.zeros(1, 8, 6, 6)
    assert dispatch.convmod_uses_op(module, x, 'triton')
    conv = module.att[2]
    if change == 'modulation':
        module.modulation = 'sum'
    elif change == 'stride':
        conv.stride = (2, 2)
    elif change == 'dilation':
        conv.dilation = (2, 2)
    elif change == 'padding_mode':
        conv.padding_mode = 'reflect'
    elif change == 'kernel':
        module.att[2] = nn.Conv2d(8, 8, 23, padding=11, groups=8)
    else:
        conv.register_forward_hook(lambda *a: None)
    assert not dispatch.convmod_uses_op(module, x, 'triton')


def test_backbone_backend_argument():
    for backend in ('auto', 'triton', 'reference'):
        model = Conv2Former(dict(channels=[8, 16, 24, 32],
                                 depths=[1, 1, 1, 1]), backend=backend)
        assert {m.backend for m in model.modules()
                if hasattr(m, 'backend')} == {backend}
    with pytest.raises(ValueError, match='backend must be one of'):
        Conv2Former('nano', backend='cudnn')


def test_an_image_beyond_int32_offsets_runs_the_reference_ops(monkeypatch):
    monkeypatch.setattr(dispatch, '_triton_runs_on', lambda device: True)
    monkeypatch.setattr(dispatch, '_timed_choice', lambda *a: 'triton')
    x = torch.empty(1, 2**13, 2**9, 2**9, device='meta').as_subclass(Cuda)
    weight = torch.empty(2**13, 1, 7, 7)
    with torch.no_grad():
        assert dispatch.op_backend('auto', x, weight, x) == 'reference'
    with pytest.raises(ValueError, match=r'2\*\*31 elements or more'):
        dispatch.op_backend('triton', x, weight, x)
