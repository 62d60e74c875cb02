# Copyright (c) mmc2f contributors. All rights reserved.
"""A fused GPU kernel for the hot step of the convolutional modulation.

:class:`~.conv2former.ConvMod` computes ``A = DWConv_kxk(...)`` and then
``A * V`` (in float32 under float16 autocast). Run as PyTorch ops that is a
cuDNN conv writing A, then casts and a product reading A and V back: A makes
a round trip through memory for a step that is bound by memory traffic.
:func:`dwconv_modulate` does it in one Triton kernel that reads the conv's
input and V once and writes A * V once, the least traffic the step can have
(the bandwidth floor of :mod:`mmc2f.analysis.benchmark.floor`).

The kernel takes channels-last tensors, as the model has them on the GPU:
channels are contiguous, so a tile's loads along them coalesce. Each program
computes two output rows of ``BLOCK_W`` pixels x ``BLOCK_C`` channels; a
load of an input row serves both (with two rows of taps), and so does a load
of a tap's weights, which nearly halves the loads per multiply-add. Sums and
the product are float32 whatever the dtypes.

:class:`~.conv2former.ConvMod` hands its inference to
:func:`convmod_forward` where :func:`fuses` says so: CUDA, no autograd, the
Hadamard modulation, the block's own stride-1 zero-padded depthwise conv, no
hooks on the calls it replaces, not traced or compiled (``torch.compile``
fuses the plain ops itself). ``MMC2F_FUSED_CUDA=0`` in the environment, or the
:func:`disabled` context, keeps the reference path, e.g. to time both.

Triton is optional: without it this module imports and :data:`AVAILABLE` is
False. Under ``TRITON_INTERPRET=1`` (set before this module is imported,
when Triton builds the kernel) the kernel runs on CPU tensors, for tests.
"""
import contextlib
import os
from typing import Iterator, Optional, Tuple

import torch
import torch.nn as nn

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs
    triton = None
AVAILABLE = triton is not None
# Triton decides at decoration time whether a kernel is interpreted.
INTERPRETED = AVAILABLE and os.environ.get('TRITON_INTERPRET') == '1'

DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_enabled = os.environ.get('MMC2F_FUSED_CUDA', '1') != '0'

if AVAILABLE:
    # (BLOCK_W, BLOCK_C, num_warps): 16 or 32 pixel-channels per thread
    # and row (about 100 or 180 registers); 8 columns fit the 56- and 7-wide
    # stages, 32 channels waste less of C = 72 than 64.
    _CONFIGS = [(8, 64, 1), (16, 32, 1), (16, 64, 2), (16, 64, 1), (32, 32, 2)]

    @triton.jit
    def _modulate_store(a, v_ptr, out_ptr, offsets, mask):
        """out = A * V, the product in float32."""
        v = tl.load(v_ptr + offsets, mask=mask, other=0.).to(tl.float32)
        tl.store(out_ptr + offsets, (a * v).to(out_ptr.dtype.element_ty),
                 mask=mask)

    @triton.autotune(
        # The interpreter has nothing to tune: one config.
        configs=[
            triton.Config(dict(BLOCK_W=bw, BLOCK_C=bc), num_warps=warps)
            for bw, bc, warps in _CONFIGS[:1 if INTERPRETED else None]
        ],
        key=['W', 'C', 'K'])
    @triton.jit
    def _dwconv_modulate_kernel(x_ptr, w_ptr, b_ptr, v_ptr, out_ptr, H, W,
                                C: tl.constexpr, K: tl.constexpr,
                                HAS_BIAS: tl.constexpr,
                                BLOCK_W: tl.constexpr,
                                BLOCK_C: tl.constexpr):
        # Channel tiles vary fastest, then pixel tiles, then row pairs: the
        # programs running together share their inputs' halos in L2.
        # C is a constexpr so that the compiler knows each pixel's
        # alignment (72 float16 channels: 144 bytes, a multiple of 16) and
        # vectorises the loads.
        num_c = tl.cdiv(C, BLOCK_C)
        num_w = tl.cdiv(W, BLOCK_W)
        num_h = tl.cdiv(H, 2)
        pid = tl.program_id(0)
        c = (pid % num_c) * BLOCK_C + tl.arange(0, BLOCK_C)
        w = (pid // num_c % num_w) * BLOCK_W + tl.arange(0, BLOCK_W)
        h = pid // (num_c * num_w) % num_h * 2
        n = pid // (num_c * num_w * num_h)
        image = n.to(tl.int64) * H * W * C  # offsets within it are int32
        x_ptr += image
        v_ptr += image
        out_ptr += image

        c_ok = c < C
        pixel = w[:, None] * C + c[None, :]
        # The weights are loaded in the tile's shape, the layout of the
        # input's loads: a load of shape (BLOCK_C,) would take a layout change
        # (through shared memory) for every tap.
        c_tile = tl.broadcast_to(c[None, :], (BLOCK_W, BLOCK_C))
        c_tile_ok = tl.broadcast_to(c_ok[None, :], (BLOCK_W, BLOCK_C))
        if HAS_BIAS:
            bias = tl.load(b_ptr + c, mask=c_ok, other=0.).to(tl.float32)
        else:
            bias = tl.zeros([BLOCK_C], dtype=tl.float32)
        top = tl.zeros([BLOCK_W, BLOCK_C], dtype=tl.float32) + bias[None, :]
        bottom = top
        P = K // 2
        # Input row h - P + r meets row r of the taps for output row h and
        # row r - 1 for output row h + 1: one load serves both, and the
        # bottom row's weights are the top row's of the step before.
        # Out-of-range pixels load zeros (the conv's zero padding).
        for j in tl.static_range(K):
            w_in = w + (j - P)
            col_ok = (w_in >= 0) & (w_in < W)
            xs_ptr = x_ptr + (h - P) * W * C + (j - P) * C + pixel
            w_above = tl.zeros([BLOCK_W, BLOCK_C], dtype=tl.float32)  # r - 1
            for r in range(K + 1):
                h_in = h - P + r
                ok = col_ok & (h_in >= 0) & (h_in < H)
                xs = tl.load(xs_ptr + r * W * C,
                             mask=ok[:, None] & c_ok[None, :],
                             other=0.).to(tl.float32)
                # Weights are (K * K, C), contiguous along the channels.
                w_r = tl.load(w_ptr + (r * K + j) * C + c_tile,
                              mask=c_tile_ok & (r < K),
                              other=0.).to(tl.float32)
                top += xs * w_r
                bottom += xs * w_above
                w_above = w_r

        ok = (w < W)[:, None] & c_ok[None, :]
        offsets = h * W * C + pixel
        _modulate_store(top, v_ptr, out_ptr, offsets, ok)
        _modulate_store(bottom, v_ptr, out_ptr, offsets + W * C,
                        ok & (h + 1 < H))


def _is_channels_last(t: torch.Tensor) -> bool:
    return t.permute(0, 2, 3, 1).is_contiguous()


def _check_inputs(x: torch.Tensor, weight: torch.Tensor,
                  bias: Optional[torch.Tensor], v: torch.Tensor,
                  out_dtype: torch.dtype) -> None:
    """ValueError naming what does not fit the kernel."""
    if x.dim() != 4:
        raise ValueError(f'x must be (N, C, H, W), got shape '
                         f'{tuple(x.shape)}')
    c = x.shape[1]
    if (weight.dim() != 4 or weight.shape[:2] != (c, 1)
            or weight.shape[2] != weight.shape[3] or weight.shape[2] % 2 == 0):
        raise ValueError(
            f'weight must be (C, 1, k, k) with C = {c} (a depthwise conv) '
            f'and k odd, got shape {tuple(weight.shape)}')
    if bias is not None and bias.shape != (c, ):
        raise ValueError(f'bias must be ({c},), got shape '
                         f'{tuple(bias.shape)}')
    if v.shape != x.shape:
        raise ValueError(f'v must have the shape of x, {tuple(x.shape)}, '
                         f'got {tuple(v.shape)}')
    dtypes = [('x', x.dtype), ('v', v.dtype), ('weight', weight.dtype),
              ('out_dtype', out_dtype)]
    if bias is not None:
        dtypes.append(('bias', bias.dtype))
    for name, dtype in dtypes:
        if dtype not in DTYPES:
            raise ValueError(f'{name} must be float16, bfloat16 or float32, '
                             f'got {dtype}')
    for name, t in (('x', x), ('v', v)):
        if not _is_channels_last(t):
            raise ValueError(
                f'{name} must be channels last in memory, e.g. '
                f'{name}.contiguous(memory_format=torch.channels_last)')
    if x.shape[2] * x.shape[3] * c >= 2**31:
        raise ValueError('one image of x must have fewer than 2**31 '
                         f'elements, got {tuple(x.shape[1:])}')
    tensors = [x, weight, v] + ([] if bias is None else [bias])
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise ValueError(f'all tensors must be on one device, got '
                         f'{sorted(map(str, devices))}')
    device = x.device.type
    if device != 'cuda' and not (INTERPRETED and device == 'cpu'):
        raise ValueError(f'dwconv_modulate runs on CUDA tensors (CPU '
                         f'tensors under TRITON_INTERPRET=1), got {device}')


def dwconv_modulate(x: torch.Tensor, weight: torch.Tensor,
                    bias: Optional[torch.Tensor], v: torch.Tensor,
                    out_dtype: torch.dtype) -> torch.Tensor:
    """``(F.conv2d(x, weight, bias, padding=k // 2, groups=C) * v)`` in
    ``out_dtype``, in one kernel with float32 sums and product.

    Args:
        x: The conv's input, (N, C, H, W), channels last in memory.
        weight: The depthwise kernel, (C, 1, k, k), k odd.
        bias: The conv's bias, (C,), or None.
        v: V, the shape and memory format of ``x``.
        out_dtype: The product's dtype.

    ``x``, ``v`` and ``out_dtype`` are float16, bfloat16 or float32, in any
    mix; the weights and bias keep their own dtype (autocast would round
    them to x's). Returns a channels-last (N, C, H, W) tensor, without
    autograd (inference only).
    """
    if not AVAILABLE:
        raise RuntimeError('dwconv_modulate needs triton, which is not '
                           'installed')
    _check_inputs(x, weight, bias, v, out_dtype)
    n, c, h, w = x.shape
    k = weight.shape[-1]
    out = torch.empty_like(x, dtype=out_dtype,
                           memory_format=torch.channels_last)
    if out.numel() == 0:  # nothing to launch
        return out
    # A copy of the C * k * k weights, tap-major so that a tap's weights
    # over the channels are one coalesced load.
    by_tap = weight.detach().reshape(c, k * k).t().contiguous()

    def grid(meta: dict) -> Tuple[int]:
        """One program per row pair x pixel tile x channel tile."""
        return (n * triton.cdiv(h, 2) * triton.cdiv(w, meta['BLOCK_W']) *
                triton.cdiv(c, meta['BLOCK_C']), )

    has_bias = bias is not None
    # The kernel reads the bias at stride 1 (without one, any pointer).
    bias = bias.detach().contiguous() if has_bias else by_tap
    _dwconv_modulate_kernel[grid](x, by_tap, bias, v, out, h, w, c, k,
                                  has_bias)
    return out


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Within it, :func:`fuses` is False: the model's reference ops run
    (process-wide, in every thread)."""
    global _enabled
    before, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = before


def _is_same_padded_depthwise(conv: nn.Module) -> bool:
    """Whether ``conv`` is the plain conv the kernel computes: depthwise,
    stride 1, zero padding k // 2."""
    if type(conv) is not nn.Conv2d:  # a subclass may compute otherwise
        return False
    k = conv.kernel_size[0]
    return (k % 2 == 1 and conv.kernel_size == (k, k)
            and conv.groups == conv.in_channels == conv.out_channels
            and conv.stride == (1, 1) and conv.dilation == (1, 1)
            and conv.padding == (k // 2, k // 2)
            and conv.padding_mode == 'zeros')


def _has_hooks(module: nn.Module) -> bool:
    """Forward hooks on the modules whose calls the kernel replaces (``att``
    and its conv; the others are still called), or global ones."""
    return bool(nn.modules.module._global_forward_hooks
                or nn.modules.module._global_forward_pre_hooks) or any(
                    m._forward_hooks or m._forward_pre_hooks
                    for m in (module.att, module.att[2]))


def fuses(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether the ``ConvMod`` ``module`` runs ``x`` through
    :func:`convmod_forward` (elsewhere, e.g. in float64, the reference ops
    run)."""
    return (_enabled and AVAILABLE and x.device.type == 'cuda'
            and x.dtype in DTYPES and x.shape[1:].numel() < 2**31
            and module.modulation == 'hadamard'
            and not torch.is_grad_enabled()
            and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing() and not torch.jit.is_scripting()
            and _is_same_padded_depthwise(module.att[2])
            and not _has_hooks(module))


def convmod_forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``ConvMod.forward``, its depthwise conv and A * V in one kernel.

    As the reference, A * V and the projection after it are float32 under
    float16 autocast (``float32_under_float16``).
    """
    x = module.norm(x)  # channels last in memory, whatever x's layout
    pre_conv, gelu, conv = module.att
    # The 1x1 convs keep that layout; the calls are no-ops then.
    a_in = gelu(pre_conv(x)).contiguous(memory_format=torch.channels_last)
    v = module.v(x).contiguous(memory_format=torch.channels_last)
    if a_in.dtype != torch.float16:
        return module.proj(
            dwconv_modulate(a_in, conv.weight, conv.bias, v, a_in.dtype))
    av = dwconv_modulate(a_in, conv.weight, conv.bias, v, torch.float32)
    with torch.autocast(x.device.type, enabled=False):
        return module.proj(av)
