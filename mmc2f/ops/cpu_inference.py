# Copyright (c) mmc2f contributors. All rights reserved.
"""Fused CPU inference for the Conv2Former modules.

The model file (:mod:`mmc2f.models.backbones.conv2former`) defines the
network as the paper does; this module makes its float32 CPU inference fast
without changing what it computes, working on the reference modules' own
parameters. When it runs is :func:`mmc2f.ops.dispatch.cpu_engine_runs`'s
decision (float32 CPU inference in eval mode, outside autocast, not traced:
export and ``torch.compile`` see the plain ops and fuse them themselves).
The rest lives here:

- the kernels: oneDNN convolutions with a fused epilogue (GELU, or an
  elementwise product or sum with a second tensor, scaled), the kernel
  TorchInductor emits on the CPU, and its in-place variant;
- the tile budget of the MLP (:data:`MLP_TILE_BYTES`);
- folding the stem's second BatchNorm into the conv after it.

Deleting this module leaves a slower model that computes the same function.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.utils import digit_version

# Private oneDNN ops, so they are looked up, not assumed; used from torch
# 2.4, which has the autocast and compile queries of the dispatch.
_AVAILABLE = (torch.backends.mkldnn.is_available() and
              digit_version(torch.__version__) >= digit_version('2.4.0'))
# ``epilogue(conv(x))`` or ``binary(conv(x), other)``, one new tensor.
CONV_WITH_EPILOGUE = (getattr(torch.ops.mkldnn, '_convolution_pointwise',
                              None) if _AVAILABLE else None)
# ``other += conv(x)`` in place.
CONV_ADD_INPLACE = (getattr(torch.ops.mkldnn, '_convolution_pointwise_',
                            None) if _AVAILABLE else None)
AVAILABLE = CONV_WITH_EPILOGUE is not None and CONV_ADD_INPLACE is not None

# Bytes of the MLP's 4C-channel activations per tile: a tile stays in the
# last-level cache between the convolutions that write and read it, and the
# big tensors of the first stage are never allocated whole (fresh
# multi-MiB allocations cost page faults). 8 MiB measured best of 3/5/8/16
# on a 32 MiB-L3 EPYC (docs/benchmarks.md).
MLP_TILE_BYTES = 8 * 2**20


def _conv_args(conv: nn.Conv2d, scale: Optional[torch.Tensor]) -> tuple:
    """The weight, bias and geometry arguments of the oneDNN ops, with a
    per-output-channel ``scale`` (layer scale) folded into the weights:
    ``s * (W x + b) = (s W) x + s b``."""
    weight, bias = conv.weight, conv.bias
    if scale is not None:
        weight, bias = weight * scale.view(-1, 1, 1, 1), bias * scale
    return (weight, bias, list(conv.padding), list(conv.stride),
            list(conv.dilation), conv.groups)


def conv_gelu(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``GELU(conv(x))`` (exact, erf-based: ``nn.GELU()``) in one pass."""
    return CONV_WITH_EPILOGUE(x, *_conv_args(conv, None), 'gelu', [], 'none')


def conv_binary(conv: nn.Conv2d, x: torch.Tensor, other: torch.Tensor,
                op: str, scale: Optional[torch.Tensor] = None
                ) -> torch.Tensor:
    """``op(scale * conv(x), other)``, ``op`` ``'add'`` or ``'mul'``, in one
    pass."""
    return CONV_WITH_EPILOGUE.binary(x, other, *_conv_args(conv, scale), op,
                                     None, None, [], None)


def conv_add_inplace(conv: nn.Conv2d, x: torch.Tensor, out: torch.Tensor,
                     scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``out += scale * conv(x)`` in place, in one pass."""
    return CONV_ADD_INPLACE.binary(out, x, *_conv_args(conv, scale), 'add',
                                   None, None, [], None)


def batch_tiles(num_images: int, height: int, row_bytes: int,
                budget: int) -> List[Tuple[slice, int, int]]:
    """Splits a batch of ``num_images`` images of ``height`` rows into tiles
    of at most about ``budget`` bytes: several whole images per tile when an
    image fits, else bands of rows of one image (each tile then one
    contiguous block of a channels-last tensor). Returns
    ``(images, first_row, end_row)`` per tile."""
    image_bytes = height * row_bytes
    if num_images * image_bytes <= budget:
        return [(slice(0, num_images), 0, height)]
    if image_bytes <= budget:
        per_tile = budget // image_bytes
        return [(slice(i, min(i + per_tile, num_images)), 0, height)
                for i in range(0, num_images, per_tile)]
    # Two rows of each band are context for the 3x3 conv (see
    # add_mlp_residual_inplace).
    rows = max(budget // row_bytes - 2, 8)
    return [(slice(i, i + 1), r, min(r + rows, height))
            for i in range(num_images) for r in range(0, height, rows)]


def modulation_residual(attn: nn.Module, x: torch.Tensor,
                        gamma: Optional[torch.Tensor]) -> torch.Tensor:
    """``x + gamma * attn(x)`` for a ``ConvMod``: GELU in the first conv's
    epilogue, the Hadamard product in V's, scale and residual in the
    projection's."""
    y = attn.norm(x)
    w1, _, dwconv = attn.att
    a = dwconv(conv_gelu(w1, y))
    if attn.modulation == 'hadamard':
        z = conv_binary(attn.v, y, a, 'mul')
    else:
        z = attn.modulate(a, attn.v(y))
    return conv_binary(attn.proj, z, x, 'add', gamma)


def add_mlp_residual_inplace(mlp: nn.Module, x: torch.Tensor,
                             gamma: Optional[torch.Tensor]) -> torch.Tensor:
    """Adds ``gamma * mlp(x)`` for a ``ConvMLP`` to ``x`` in place, tile by
    tile (:data:`MLP_TILE_BYTES`) when ``x`` is channels last."""
    num_images, _, height, width = x.shape
    y = mlp.norm(x)
    tiles = [(slice(0, num_images), 0, height)]
    if x.is_contiguous(memory_format=torch.channels_last):
        row_bytes = width * mlp.fc1.out_channels * x.element_size()
        tiles = batch_tiles(num_images, height, row_bytes, MLP_TILE_BYTES)
    for images, first, end in tiles:
        # A band's rows need one row above and below as the 3x3 conv's
        # context; where a band ends at the image's border, the conv's zero
        # padding is the right context. The context rows' own outputs are
        # wrong and are dropped.
        top, bottom = max(first - 1, 0), min(end + 1, height)
        hidden = conv_gelu(mlp.fc1, y[images, :, top:bottom])
        hidden.add_(conv_gelu(mlp.pos, hidden))
        conv_add_inplace(mlp.fc2, hidden[:, :, first - top:end - top],
                         x[images, :, first:end], gamma)
    return x


def block_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A ``Conv2FormerBlock`` in eval mode: both residual branches fused."""
    # The MLP may add in place: its input is the modulation's fresh output.
    x = modulation_residual(block.attn, x, block.layer_scale_1)
    return add_mlp_residual_inplace(block.mlp, x, block.layer_scale_2)


def fold_batch_norm(bn: nn.BatchNorm2d, conv: nn.Conv2d
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The weight and bias of ``conv(bn(z))`` as one conv, for a ``conv``
    without padding. In eval mode the BatchNorm is an affine map
    ``z * s + t``, so ``W (z * s + t) + b = (W s) z + (sum(W t) + b)``;
    with zero padding after the BatchNorm that would not hold at the
    borders."""
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    t = bn.bias - bn.running_mean * s
    bias = conv.weight.sum((2, 3)) @ t
    if conv.bias is not None:
        bias = bias + conv.bias
    return conv.weight * s.view(1, -1, 1, 1), bias


def stem_forward(stem: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """A ``Stem`` (conv, GELU, BN, conv, GELU, BN, conv) in eval mode: GELU
    in the 3x3 convs' epilogues, the second BatchNorm folded into the last
    conv (no padding). The first is not folded: the conv after it pads."""
    conv1, _, bn1, conv2, _, bn2, patch = stem
    x = conv_gelu(conv2, bn1(conv_gelu(conv1, x)))
    weight, bias = fold_batch_norm(bn2, patch)
    return F.conv2d(x, weight, bias, patch.stride)
