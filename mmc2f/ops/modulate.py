# Copyright (c) mmc2f contributors. All rights reserved.
"""``dwconv_modulate``: the convolutional modulation's depthwise conv and
Hadamard product, ``(DWConv_kxk(x) + b) * V``, as one differentiable op.

Run as PyTorch ops, the step is a cuDNN depthwise conv writing A, a product
reading A and V, and an autograd graph that keeps x, A and V (A and V in
float32 under float16 autocast) for the backward. The Triton backend
(:mod:`.triton_kernels`) computes the forward in one pass that never writes
A, keeps x and V only, and recomputes A in the backward:

======================  =======================  ==================
kept for the backward   PyTorch ops              this op
======================  =======================  ==================
float16 autocast        x (2) + A, V fp32 (8)    x, V (4)
bfloat16 autocast       x, A, V (6)              x, V (4)
float32                 x, A, V (12)             x, V (8)
======================  =======================  ==================

bytes per element of the block's (N, C, H, W) activation: 6, 2 and 4
bytes saved (autocast also keeps a float16 copy of the weights). For
Conv2Former-T at 224 x 224 under float16 autocast that is 10.2 MiB per image
over its 21 blocks (``docs/benchmarks.md``).

The product's dtype is x's and V's (promoted), except float16, whose range
A * V exceeds once both reach a few hundred: float32 then, as the model's
reference path computes it. The gradients have their inputs' dtypes.
"""
import contextlib
from typing import ContextManager, Optional, Tuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import dispatch

try:
    import triton

    from . import triton_kernels
except ImportError:  # CPU-only installs: the reference ops alone
    triton = None

DTYPES = (torch.float16, torch.bfloat16, torch.float32)
KERNEL_SIZES = range(3, 22, 2)


def out_dtype_of(x: torch.Tensor, v: torch.Tensor) -> torch.dtype:
    """The product's dtype (see the module docstring)."""
    dtype = torch.promote_types(x.dtype, v.dtype)
    return torch.float32 if dtype == torch.float16 else dtype


def reference(x: torch.Tensor, weight: torch.Tensor,
              bias: Optional[torch.Tensor], v: torch.Tensor) -> torch.Tensor:
    """The op as PyTorch ops (cuDNN, oneDNN or the native kernels), with
    the model's reference arithmetic: the conv in x's dtype (autocast's
    rule), the product in :func:`out_dtype_of`."""
    k = weight.shape[-1]
    if not torch.is_autocast_enabled(x.device.type):
        weight = weight.to(x.dtype)
        bias = None if bias is None else bias.to(x.dtype)
    a = F.conv2d(x, weight, bias, padding=k // 2, groups=x.shape[1])
    dtype = out_dtype_of(a, v)
    with torch.autocast(x.device.type, enabled=False):
        return a.to(dtype) * v.to(dtype)


def check_inputs(x: torch.Tensor, weight: torch.Tensor,
                 bias: Optional[torch.Tensor], v: torch.Tensor) -> None:
    """ValueError naming the argument that does not fit the op."""
    if x.dim() != 4:
        raise ValueError(f'x must be (N, C, H, W), got shape '
                         f'{tuple(x.shape)}')
    c = x.shape[1]
    if (weight.dim() != 4 or weight.shape[:2] != (c, 1)
            or weight.shape[2] != weight.shape[3]
            or weight.shape[2] not in KERNEL_SIZES):
        raise ValueError(
            f'weight must be (C, 1, k, k) with C = {c} (a depthwise conv) '
            f'and k odd from 3 to 21, got shape {tuple(weight.shape)}')
    if bias is not None and bias.shape != (c, ):
        raise ValueError(f'bias must be ({c},), got shape '
                         f'{tuple(bias.shape)}')
    if v.shape != x.shape:
        raise ValueError(f'v must have the shape of x, {tuple(x.shape)}, '
                         f'got {tuple(v.shape)}')
    named = [('x', x), ('v', v), ('weight', weight)]
    named += [] if bias is None else [('bias', bias)]
    for name, t in named:
        if t.dtype not in DTYPES:
            raise ValueError(f'{name} must be float16, bfloat16 or float32, '
                             f'got {t.dtype}')
    devices = {t.device for _, t in named}
    if len(devices) > 1:
        raise ValueError(f'all tensors must be on one device, got '
                         f'{sorted(map(str, devices))}')


def _layout(x: torch.Tensor) -> torch.memory_format:
    """The memory format the kernels run in: x's (channels last or NCHW)."""
    if x.is_contiguous(memory_format=torch.channels_last) and \
            not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _taps(weight: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """(k * k, C) float32 weights, tap-major: a tap's weights over the
    channels are one coalesced load. Rotated by 180 degrees for the data
    gradient."""
    weight = weight.detach()
    if flip:
        weight = weight.flip(-1, -2)
    return weight.reshape(weight.shape[0], -1).t().float().contiguous()


def _conv(x: torch.Tensor, taps: torch.Tensor, bias: Optional[torch.Tensor],
          pre: Optional[torch.Tensor], post: Optional[torch.Tensor],
          dtype: torch.dtype) -> torch.Tensor:
    """``(conv(x [* pre]) + bias) [* post]`` by ``_dwconv_kernel``; every
    tensor in x's layout."""
    n, c, h, w = x.shape
    out = torch.empty_like(x, dtype=dtype, memory_format=_layout(x))
    if out.numel() == 0:
        return out
    k = int(round(taps.shape[0]**.5))
    config = dispatch.conv_config(c, k, h, w)

    meta = config.kwargs
    grid = (n * triton.cdiv(h, meta['ROWS']),
            triton.cdiv(w, meta['BLOCK_W'] * meta['GROUP_W']),
            triton.cdiv(c, meta['BLOCK_C']))
    triton_kernels._dwconv_kernel[grid](
        x, x if pre is None else pre, taps,
        taps if bias is None else bias.detach().contiguous(),
        x if post is None else post,
        out, c, h, w, *x.stride(), K=k, PRE=pre is not None,
        HAS_BIAS=bias is not None, POST=post is not None,
        num_warps=config.num_warps, **config.kwargs)
    return out


def _wgrad(grad: torch.Tensor, v: torch.Tensor, x: torch.Tensor, k: int,
           has_bias: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """The weight gradient (C, 1, k, k) and the bias gradient (C,),
    float32, summed over the programs' partials in a fixed order."""
    n, c, h, w = x.shape
    config = dispatch.wgrad_config(c, k, w)
    meta = config.kwargs
    num_c = triton.cdiv(c, meta['BLOCK_C'])
    num_w = triton.cdiv(w, meta['BLOCK_W'] * meta['GROUP_W'])
    rows = dispatch.wgrad_rows_per_program(n, h, num_w * num_c, x.device)
    strips = n * triton.cdiv(h, rows) * num_w
    parts = torch.empty(strips, k * k + 1, c, device=x.device,
                        dtype=torch.float32)
    triton_kernels._dwconv_wgrad_kernel[(
        strips, triton.cdiv(k, meta['TAP_ROWS']), num_c)](
            grad, v, x, parts, c, h, w, *x.stride(), rows, K=k,
            HAS_BIAS=has_bias, num_warps=config.num_warps, **meta)
    summed = parts.sum(0)
    return summed[:k * k].t().reshape(c, 1, k, k), summed[k * k]


def _device_of(x: torch.Tensor) -> ContextManager:
    """Triton launches on the current CUDA device: make it x's."""
    return torch.cuda.device(x.device) if x.is_cuda else \
        contextlib.nullcontext()


class _DWConvModulate(torch.autograd.Function):
    """The Triton backend's autograd: x, the weights and V are kept, A is
    recomputed in the backward (which is not itself differentiable)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor,
                bias: Optional[torch.Tensor],
                v: torch.Tensor) -> torch.Tensor:
        # One set of strides addresses every tensor the kernels touch.
        layout = _layout(x)
        x, v = (t.contiguous(memory_format=layout) for t in (x, v))
        ctx.save_for_backward(x, weight, bias, v)
        with _device_of(x):
            return _conv(x, _taps(weight), bias, None, v,
                         out_dtype_of(x, v))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple:
        with _device_of(grad):
            return _DWConvModulate._backward(ctx, grad)

    @staticmethod
    def _backward(ctx, grad: torch.Tensor) -> tuple:
        x, weight, bias, v = ctx.saved_tensors
        grad = grad.contiguous(memory_format=_layout(x))
        dx = dw = db = dv = None
        if ctx.needs_input_grad[3]:  # dV = A * dZ
            dv = _conv(x, _taps(weight), bias, None, grad, v.dtype)
        if ctx.needs_input_grad[0]:  # dx = conv(dZ * V, rot180(w))
            dx = _conv(grad, _taps(weight, flip=True), None, v, None,
                       x.dtype)
        if ctx.needs_input_grad[1] or (bias is not None
                                       and ctx.needs_input_grad[2]):
            dw, db = _wgrad(grad, v, x, weight.shape[-1], bias is not None)
            dw = dw.to(weight.dtype)
            db = db.to(bias.dtype) if bias is not None else None
        return dx, dw, db, dv


def dwconv_modulate(x: torch.Tensor,
                    weight: torch.Tensor,
                    bias: Optional[torch.Tensor],
                    v: torch.Tensor,
                    backend: str = 'auto') -> torch.Tensor:
    """``(F.conv2d(x, weight, bias, padding=k // 2, groups=C)) * v``,
    differentiable in all four inputs.

    Args:
        x: The conv's input, (N, C, H, W), channels last or NCHW.
        weight: The depthwise kernel, (C, 1, k, k), k odd from 3 to 21.
        bias: The conv's bias, (C,), or None.
        v: V, the shape of ``x``.
        backend: ``'triton'`` (the fused kernels; CUDA tensors, or CPU
            tensors under ``TRITON_INTERPRET=1``), ``'reference'`` (PyTorch
            ops) or ``'auto'`` (:func:`mmc2f.ops.dispatch.op_backend`).

    Returns:
        ``(N, C, H, W)`` in x's memory format and :func:`out_dtype_of`.
        Tensors may be float16, bfloat16 or float32, in any mix.

    Example:
        >>> import torch
        >>> from mmc2f.ops import dwconv_modulate
        >>> x, v = torch.randn(2, 1, 72, 14, 14).unbind(0)
        >>> w, b = torch.randn(72, 1, 11, 11), torch.randn(72)
        >>> dwconv_modulate(x, w, b, v, backend='reference').shape
        torch.Size([1, 72, 14, 14])
    """
    check_inputs(x, weight, bias, v)
    backend = dispatch.op_backend(backend, x, weight, v, bias)
    if backend == 'reference':
        return reference(x, weight, bias, v)
    return _DWConvModulate.apply(x, weight, bias, v)
