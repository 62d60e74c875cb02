# Copyright (c) mmc2f contributors. All rights reserved.
"""The Triton kernels of ``mmc2f.ops`` run in Triton's interpreter on CPU
tensors, against the autograd of PyTorch's ops in float64.

Triton decides whether a kernel is interpreted when the kernel is defined,
so this runs as its own process with ``TRITON_INTERPRET=1`` (see
``test_modulate.py``), all cases in one, and prints one JSON object:
each case's errors, and what the whole-model and memory checks found.
"""
import json
import sys
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

from mmc2f.models import Conv2Former
from mmc2f.ops import dispatch, dwconv_modulate

DTYPES = {'float32': torch.float32, 'float16': torch.float16,
          'bfloat16': torch.bfloat16}
# name: (N, C, H, W, k, dtype, layout, bias). No size is a multiple of a
# tile, in the interpreter's (2 rows x 1 column x all channels) or the
# GPU's (4 rows x 8 or 12 columns x 32 channels).
CASES = {
    f'k7-{dtype}-{layout}': (1, 40, 5, 7, 7, dtype, layout, True)
    for dtype in DTYPES for layout in ('nhwc', 'nchw')
}
CASES.update({
    'k11-float16-nhwc': (1, 40, 5, 7, 11, 'float16', 'nhwc', True),
    'k11-bfloat16-nchw': (1, 40, 5, 7, 11, 'bfloat16', 'nchw', True),
    'k11-1x72x13x17': (1, 72, 13, 17, 11, 'float32', 'nhwc', True),
    'k7-2x144x7x7-fp16-nchw': (2, 144, 7, 7, 7, 'float16', 'nchw', True),
    'k7-1x576x5x9-bf16': (1, 576, 5, 9, 7, 'bfloat16', 'nhwc', True),
    'k11-no-bias': (1, 24, 5, 6, 11, 'float32', 'nhwc', False),
    'k11-image-smaller-than-kernel': (1, 16, 3, 4, 11, 'float16', 'nhwc',
                                      True),
    'k3': (1, 8, 4, 5, 3, 'float32', 'nchw', True),
    'k21': (1, 8, 4, 13, 21, 'float32', 'nhwc', True),
})
# Tiles shaped like the GPU's (several columns and rows per tile, tiles side
# by side, channel blocks, tap-row groups with a partial last one, chunks of
# rows), small enough for the interpreter; the GPU's own tiles are compiled
# by test_kernel_report.py.
TILE_CASES = {
    'k5-tiles-fp16': (1, 24, 5, 8, 5, 'float16', 'nhwc', True),
    'k3-tiles-fp32-nchw': (2, 20, 4, 7, 3, 'float32', 'nchw', True),
}
TILES = dict(conv=dict(ROWS=2, BLOCK_W=3, GROUP_W=2, BLOCK_C=16),
             wgrad=dict(TAP_ROWS=2, BLOCK_W=3, GROUP_W=2, BLOCK_C=16),
             rows_per_program=2)


def inputs(n: int, c: int, h: int, w: int, k: int, dtype: str, layout: str,
           bias: bool) -> List[Optional[torch.Tensor]]:
    x, v = (torch.randn(n, c, h, w).to(DTYPES[dtype]) for _ in 'xv')
    if layout == 'nhwc':
        x, v = (t.contiguous(memory_format=torch.channels_last)
                for t in (x, v))
    weight = torch.randn(c, 1, k, k) / k
    return [x, weight, torch.randn(c) if bias else None, v]


def max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b).abs().max() / b.abs().max()).item()


def run_case(n: int, c: int, h: int, w: int, k: int, dtype: str, layout: str,
             bias: bool, twice: bool = False) -> Dict[str, object]:
    """Errors of the output and each gradient, the output's dtype and
    layout, and (``twice``) whether two backward passes gave bit-identical
    weight and bias gradients."""
    torch.manual_seed(k * 1000 + c)
    tensors = inputs(n, c, h, w, k, dtype, layout, bias)
    ours = [t.clone().requires_grad_() if t is not None else None
            for t in tensors]
    ref = [t.double().requires_grad_() if t is not None else None
           for t in tensors]
    out = dwconv_modulate(*ours, backend='triton')
    grad = torch.randn(out.shape, dtype=torch.float64).to(out.dtype)
    out.backward(grad)
    first = [t.grad.clone() for t in ours[1:3] if t is not None]
    if twice:
        for t in ours:
            if t is not None:
                t.grad = None
        dwconv_modulate(*ours, backend='triton').backward(grad)
    expected = F.conv2d(ref[0], ref[1], ref[2], padding=k // 2,
                        groups=c) * ref[3]
    expected.backward(grad.double())
    errors = {'out': max_rel(out, expected)}
    for name, a, b in zip(('x', 'weight', 'bias', 'v'), ours, ref):
        if a is not None:
            errors[name] = max_rel(a.grad, b.grad)
            errors[f'{name}_dtype_kept'] = a.grad.dtype == a.dtype
    return dict(
        errors=errors, out_dtype=str(out.dtype).replace('torch.', ''),
        channels_last=out.is_contiguous(memory_format=torch.channels_last),
        contiguous=out.is_contiguous(),
        deterministic=all(
            torch.equal(a, t.grad)
            for a, t in zip(first, [t for t in ours[1:3] if t is not None])))


def backbone_step(backend: str) -> Dict[str, torch.Tensor]:
    """The gradients of one training step of a small backbone (two images,
    every stage down to 1x1, kernel 7), all blocks through ``backend``."""
    torch.manual_seed(0)
    model = Conv2Former(dict(channels=[8, 16, 24, 32], depths=[1, 2, 1, 1]),
                        kernel_size=7, layer_scale_init_value=0.5,
                        out_indices=(0, 1, 2, 3), backend=backend).train()
    x = torch.randn(2, 3, 32, 40)
    outs = model(x)
    sum((o * torch.randn(o.shape)).sum() for o in outs).backward()
    return {n: p.grad for n, p in model.named_parameters()}


def convmod_under_autocast(dtype: torch.dtype) -> float:
    """The largest max relative error, Triton op against reference ops, of
    a ConvMod's output and its input's and parameters' gradients under
    ``dtype`` autocast."""
    from mmc2f.models.backbones.conv2former import ConvMod
    results = []
    for backend in ('triton', 'reference'):
        torch.manual_seed(0)
        module = ConvMod(24, 11, backend=backend)
        x = torch.randn(1, 24, 6, 7).contiguous(
            memory_format=torch.channels_last).requires_grad_()
        with torch.autocast('cpu', dtype):
            out = module(x)
        out.float().square().sum().backward()
        results.append([out, x.grad] + [p.grad for p in module.parameters()])
    return max(max_rel(a, b.double()) for a, b in zip(*results))


def saved_bytes(backend: str, dtype: torch.dtype) -> int:
    """Bytes of the tensors that one ConvMod keeps for its backward (the
    parameters left out), on a 1x72x14x14 input under ``dtype`` autocast
    (float32: none)."""
    from mmc2f.models.backbones.conv2former import ConvMod
    module = ConvMod(72, 11, backend=backend)
    params = {p.data_ptr() for p in module.parameters()}
    kept = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.data_ptr() not in params:
            kept[t.data_ptr()] = t.numel() * t.element_size()
        return t

    x = torch.randn(1, 72, 14, 14).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            torch.autocast('cpu', dtype, enabled=dtype != torch.float32):
        module(x)
    return sum(kept.values())


def main() -> None:
    assert dispatch.INTERPRETED, 'run with TRITON_INTERPRET=1'
    results = {name: run_case(*case) for name, case in CASES.items()}
    saved = (dispatch.conv_config, dispatch.wgrad_config,
             dispatch.wgrad_rows_per_program)
    dispatch.conv_config = lambda *a: dispatch.KernelConfig(
        TILES['conv'], 1)
    dispatch.wgrad_config = lambda *a: dispatch.KernelConfig(
        TILES['wgrad'], 1)
    dispatch.wgrad_rows_per_program = lambda *a: TILES['rows_per_program']
    results.update({name: run_case(*case, True)
                    for name, case in TILE_CASES.items()})
    (dispatch.conv_config, dispatch.wgrad_config,
     dispatch.wgrad_rows_per_program) = saved

    triton_grads, reference_grads = (backbone_step(b)
                                     for b in ('triton', 'reference'))
    results['backbone_step'] = dict(
        params=len(reference_grads),
        max_rel_err=max(max_rel(triton_grads[n], g.double())
                        for n, g in reference_grads.items()))
    results['convmod_autocast'] = {
        str(dtype).replace('torch.', ''): convmod_under_autocast(dtype)
        for dtype in (torch.float16, torch.bfloat16)}
    results['saved_bytes'] = {
        str(dtype).replace('torch.', ''):
        {b: saved_bytes(b, dtype) for b in ('triton', 'reference')}
        for dtype in (torch.float32, torch.float16)}
    json.dump(results, sys.stdout)


if __name__ == '__main__':
    main()
