"""``dwconv_modulate``, the fused Triton kernel, against PyTorch, and
``ConvMod``'s inference through it.

Without a GPU the kernel runs in Triton's interpreter, on CPU tensors.
Triton decides whether to interpret a kernel when the kernel is defined, on
the module's import, which has happened in this process (this file imports
it, for the CUDA and error tests): the cases run in a fresh process with
``TRITON_INTERPRET=1``, all in one, and each test checks one case's result.
"""
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Dict

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

pytest.importorskip('triton', reason='the fused kernel is written in triton')

from mmc2f.models.backbones import fused_cuda_inference as fused  # noqa: E402
from mmc2f.models.backbones.conv2former import ConvMod  # noqa: E402
from mmc2f.testing.released_reference import max_rel_error  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

# name: (N, C, H, W, k, dtype of x and v, out dtype, bias: 'none', 'dense'
# or 'strided'). Most sizes are not multiples of a tile (2 rows x 8 to 32
# pixels x 32 or 64 channels).
CASES = {
    'k11-fp32': (1, 40, 13, 19, 11, 'float32', 'float32', 'dense'),
    'k7-batch3-no-bias': (3, 5, 5, 7, 7, 'float32', 'float32', 'none'),
    'k11-fp16-to-fp32': (2, 72, 6, 9, 11, 'float16', 'float32', 'dense'),
    'k7-bf16': (1, 36, 8, 5, 7, 'bfloat16', 'bfloat16', 'dense'),
    'k11-larger-than-image-fp16': (1, 16, 3, 4, 11, 'float16', 'float16',
                                   'dense'),
    'k1': (1, 8, 2, 3, 1, 'float32', 'float32', 'dense'),
    'k3-strided-bias': (1, 6, 5, 5, 3, 'float32', 'float32', 'strided'),
}
# Every tile config of the autotuner (the interpreter's default is the first).
CONFIG_CASE = 'k11-fp16-to-fp32'
# By out dtype: one rounding of the output (the interpreter truncates to
# bfloat16, a GPU rounds to nearest).
TOL = {'float32': 1e-5, 'float16': 1e-3, 'bfloat16': 1e-2}


def channels_last(*shape: int, dtype: torch.dtype = torch.float32,
                  device: str = 'cpu') -> torch.Tensor:
    return torch.randn(shape, device=device).to(dtype).contiguous(
        memory_format=torch.channels_last)


def run_case(n: int, c: int, h: int, w: int, k: int, dtype: str,
             out_dtype: str, bias: str, device: str) -> dict:
    """The kernel's output dtype, layout and max relative error against the
    float64 conv + product of the same inputs."""
    torch.manual_seed(0)
    x, v = (channels_last(n, c, h, w, dtype=getattr(torch, dtype),
                          device=device) for _ in range(2))
    weight = torch.randn(c, 1, k, k, device=device)
    b = {'none': None, 'dense': torch.randn(c, device=device),
         'strided': torch.randn(2 * c, device=device)[::2]}[bias]
    out = fused.dwconv_modulate(x, weight, b, v, getattr(torch, out_dtype))
    ref = F.conv2d(x.double(), weight.double(),
                   None if b is None else b.double(), padding=k // 2,
                   groups=c) * v.double()
    return dict(dtype=str(out.dtype).replace('torch.', ''),
                shape=list(out.shape),
                channels_last=out.is_contiguous(
                    memory_format=torch.channels_last),
                err=max_rel_error(out.double(), ref))


# name: (dim, kernel, channels-last input). The block's norm makes its
# input channels last either way.
CONVMOD_CASES = {
    'convmod-k11-channels-last': (24, 11, True),
    'convmod-k7-nchw': (10, 7, False),
}


def run_convmod_case(dim: int, k: int, channels_last_input: bool,
                     device: str, amp: bool = False) -> dict:
    """``convmod_forward`` against ``ConvMod``'s reference ops (float16
    autocast with ``amp``); on CUDA, whether the module dispatches to it."""
    torch.manual_seed(0)
    module = ConvMod(dim, k).to(device).eval()
    x = torch.randn(2, dim, 9, 12, device=device)
    if channels_last_input:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast(device, torch.float16,
                                         enabled=amp):
        with fused.disabled():
            ref = module(x)
        out = fused.convmod_forward(module, x)
        dispatched = fused.fuses(module, x)
    return dict(dtype=str(out.dtype).replace('torch.', ''),
                shape=list(out.shape), fuses=dispatched,
                err=max_rel_error(out.double(), ref.double()))


def run_cases() -> Dict[str, dict]:
    """Every case on the CPU, in a process that interprets the kernel."""
    assert fused.INTERPRETED, 'run with TRITON_INTERPRET=1'
    results = {name: run_case(*case, device='cpu')
               for name, case in CASES.items()}
    results.update((name, run_convmod_case(*case, device='cpu'))
                   for name, case in CONVMOD_CASES.items())
    kernel = fused._dwconv_modulate_kernel
    for bw, bc, warps in fused._CONFIGS:
        # With one config the autotuner runs it.
        kernel.configs = [fused.triton.Config(dict(BLOCK_W=bw, BLOCK_C=bc),
                                              num_warps=warps)]
        results[f'config-{bw}-{bc}-{warps}'] = run_case(*CASES[CONFIG_CASE],
                                                        device='cpu')
    return results


def check(name: str, result: dict) -> None:
    n, c, h, w, k, _, out_dtype, _ = CASES[name]
    assert result['dtype'] == out_dtype
    assert result['shape'] == [n, c, h, w] and result['channels_last']
    assert result['err'] < TOL[out_dtype]


@pytest.fixture(scope='module')
def interpreted() -> Dict[str, dict]:
    code = ('import json, tests.test_models.test_fused_cuda_inference as t; '
            'print(json.dumps(t.run_cases()))')
    proc = subprocess.run(
        [sys.executable, '-c', code], cwd=ROOT, capture_output=True,
        text=True, env=dict(os.environ, TRITON_INTERPRET='1'), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize('name', CASES)
def test_interpreted_matches_pytorch(interpreted, name):
    check(name, interpreted[name])


@pytest.mark.parametrize('config', [f'config-{bw}-{bc}-{warps}'
                                    for bw, bc, warps in fused._CONFIGS])
def test_interpreted_every_tile_config(interpreted, config):
    check(CONFIG_CASE, interpreted[config])


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('name', CASES)
def test_cuda_matches_pytorch(name):
    if fused.INTERPRETED:
        pytest.skip('this process interprets the kernel')
    check(name, run_case(*CASES[name], device='cuda'))


@pytest.mark.parametrize('name', CONVMOD_CASES)
def test_interpreted_convmod_matches_reference(interpreted, name):
    result = interpreted[name]
    assert result['shape'] == [2, CONVMOD_CASES[name][0], 9, 12]
    assert result['err'] < 1e-5
    assert not result['fuses']  # CPU tensors: the reference path


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('amp', [False, True])
@pytest.mark.parametrize('name', CONVMOD_CASES)
def test_cuda_convmod_dispatches(name, amp):
    """On CUDA the module's inference is the kernel's; under float16
    autocast A * V and the projection stay float32, as the reference."""
    if fused.INTERPRETED:
        pytest.skip('this process interprets the kernel')
    result = run_convmod_case(*CONVMOD_CASES[name], device='cuda', amp=amp)
    assert result['fuses'] and result['dtype'] == 'float32'
    assert result['err'] < (1e-2 if amp else 1e-5)


def test_convmod_hands_inference_to_the_kernel(monkeypatch):
    """One dispatch point: ConvMod.forward returns convmod_forward's result
    where fuses says so, and the kernel is off within disabled()."""
    module, x = ConvMod(8, 3).eval(), torch.randn(1, 8, 4, 4)
    monkeypatch.setattr(fused, 'fuses', lambda m, t: m is module and t is x)
    monkeypatch.setattr(fused, 'convmod_forward', lambda m, t: 'fused')
    assert module(x) == 'fused'
    monkeypatch.undo()
    assert not fused.fuses(module, x)  # a CPU tensor
    with fused.disabled():
        assert not fused._enabled
    assert fused._enabled == (os.environ.get('MMC2F_FUSED_CUDA') != '0')


def cuda_like(dtype: torch.dtype = torch.float16) -> SimpleNamespace:
    """What ``fuses`` reads of an input, as of a CUDA tensor."""
    return SimpleNamespace(device=torch.device('cuda'), dtype=dtype,
                           shape=torch.Size([2, 8, 5, 5]))


class ShiftedConv(nn.Conv2d):
    """A conv subclass that computes something else."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + 1


def set_attr(path: str, value: object):
    def change(module: ConvMod) -> None:
        *parents, name = path.split('.')
        target = module
        for parent in parents:
            target = getattr(target, parent)
        setattr(target, name, value)
    return change


@pytest.mark.skipif(os.environ.get('MMC2F_FUSED_CUDA') == '0',
                    reason='the kernel is turned off')
@pytest.mark.parametrize('change', [
    set_attr('modulation', 'sum'),
    set_attr('att.2.stride', (2, 2)),
    set_attr('att.2.dilation', (2, 2)),
    set_attr('att.2.padding', (0, 0)),
    set_attr('att.2.padding_mode', 'reflect'),
    set_attr('att.2', ShiftedConv(8, 8, 3, padding=1, groups=8)),
    lambda m: m.att[2].register_forward_hook(lambda *args: None),
    lambda m: m.att.register_forward_pre_hook(lambda *args: None),
], ids=['modulation', 'stride', 'dilation', 'padding', 'padding_mode',
        'conv-subclass', 'hook', 'pre-hook'])
def test_fuses_only_what_the_kernel_computes(change):
    """The kernel replaces exactly a stride-1, zero-padded depthwise conv
    and A * V, with nothing watching the modules it skips."""
    module = ConvMod(8, 3).eval()
    with torch.no_grad():
        assert fused.fuses(module, cuda_like())
        change(module)
        assert not fused.fuses(module, cuda_like())


@pytest.mark.skipif(os.environ.get('MMC2F_FUSED_CUDA') == '0',
                    reason='the kernel is turned off')
def test_fuses_only_inference_in_its_dtypes():
    module = ConvMod(8, 3).eval()
    with torch.no_grad():
        assert fused.fuses(module, cuda_like(torch.bfloat16))
        assert not fused.fuses(module, cuda_like(torch.float64))
        with fused.disabled():
            assert not fused.fuses(module, cuda_like())
        handle = nn.modules.module.register_module_forward_hook(
            lambda *args: None)
        try:
            assert not fused.fuses(module, cuda_like())
        finally:
            handle.remove()
        # Modules the kernel's path still calls keep their hooks.
        module.v.register_forward_hook(lambda *args: None)
        module.att[0].register_forward_hook(lambda *args: None)
        assert fused.fuses(module, cuda_like())
    assert not fused.fuses(module, cuda_like())  # autograd on


def bad(name: str, value: object) -> dict:
    """Valid arguments of a 1x4x5x6 input, with ``name`` replaced."""
    args = dict(x=channels_last(1, 4, 5, 6), weight=torch.randn(4, 1, 3, 3),
                bias=torch.randn(4), v=channels_last(1, 4, 5, 6),
                out_dtype=torch.float32)
    args[name] = value
    return args


@pytest.mark.parametrize('name,value,match', [
    ('x', torch.randn(4, 5, 6), r'x must be \(N, C, H, W\)'),
    ('weight', torch.randn(4, 2, 3, 3), r'weight must be \(C, 1, k, k\)'),
    ('weight', torch.randn(3, 1, 3, 3), 'with C = 4'),
    ('weight', torch.randn(4, 1, 4, 4), 'k odd'),
    ('weight', torch.randn(4, 1, 3, 5), r'got shape \(4, 1, 3, 5\)'),
    ('bias', torch.randn(5), r'bias must be \(4,\)'),
    ('v', channels_last(1, 4, 5, 7), 'v must have the shape of x'),
    ('x', channels_last(1, 4, 5, 6, dtype=torch.float64),
     'x must be float16, bfloat16 or float32'),
    ('weight', torch.randn(4, 1, 3, 3, dtype=torch.float64),
     'weight must be float16, bfloat16 or float32'),
    ('bias', torch.zeros(4, dtype=torch.int64), 'bias must be float16'),
    ('out_dtype', torch.int32, 'out_dtype must be float16'),
    ('x', torch.randn(1, 4, 5, 6), 'x must be channels last'),
    ('v', torch.randn(1, 4, 5, 6), 'v must be channels last'),
    ('bias', torch.randn(4, device='meta'), 'all tensors must be on one'),
])
def test_rejects_bad_inputs(name, value, match):
    with pytest.raises(ValueError, match=match):
        fused.dwconv_modulate(**bad(name, value))


def test_needs_cuda_unless_interpreted():
    if fused.INTERPRETED:
        pytest.skip('this process interprets the kernel')
    with pytest.raises(ValueError, match='runs on CUDA tensors'):
        fused.dwconv_modulate(**bad('out_dtype', torch.float32))
