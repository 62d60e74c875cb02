# Copyright (c) mmc2f contributors. All rights reserved.
"""Conv2Former: A Simple Transformer-Style ConvNet for Visual Recognition.

Hou, Lu, Cheng, Feng, IEEE TPAMI 2024. The module and parameter names follow the
authors' released ImageNet code, so their checkpoints load after the key
renaming of ``tools/model_converters/conv2former_to_mmc2f.py``.

Only torch, mmengine and ``mmcv.cnn`` are imported: the backbone runs where
mmcv's compiled ops are absent (``mmcv-lite``).
"""
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from mmengine.utils import digit_version
from torch.nn.modules.batchnorm import _BatchNorm

from ...utils.checkpoint import load_pretrained

# The paper's Table 1. ``kernel_size`` is the paper's (7 for N, 11 otherwise).
ARCH_SETTINGS: Dict[str, dict] = {
    'nano': dict(channels=[64, 128, 256, 512], depths=[2, 2, 8, 2],
                 kernel_size=7),
    'tiny': dict(channels=[72, 144, 288, 576], depths=[3, 3, 12, 3],
                 kernel_size=11),
    'small': dict(channels=[72, 144, 288, 576], depths=[4, 4, 32, 4],
                  kernel_size=11),
    'base': dict(channels=[96, 192, 384, 768], depths=[4, 4, 34, 4],
                 kernel_size=11),
    'large': dict(channels=[128, 256, 512, 1024], depths=[4, 4, 48, 4],
                  kernel_size=11),
}
ARCH_ALIASES = {name[0]: name for name in ARCH_SETTINGS}


def _hadamard(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return a * v


def _sum(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return a + v


def _sigmoid(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(a) * v


def _l1_norm(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # L1 normalisation of A over the channels of each position.
    return F.normalize(a, p=1.0, dim=1) * v


def _linear_norm(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # Min-max scaling of each map of A into (0, 1]: the minimum maps to eps,
    # not 0, so that no position is switched off entirely.
    eps = 1e-6
    a_min = a.amin(dim=(2, 3), keepdim=True)
    a_max = a.amax(dim=(2, 3), keepdim=True)
    return (a - a_min + eps) / (a_max - a_min + eps) * v


# How A (the depthwise-conv weights) modulates V: the paper's Table 7 / Fig. 5b.
FUSIONS: Dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    'hadamard': _hadamard,
    'sum': _sum,
    'sigmoid': _sigmoid,
    'l1': _l1_norm,
    'linear': _linear_norm,
}


# oneDNN's convolution with a fused epilogue (GELU, or an elementwise product
# or sum with a second tensor): the kernel TorchInductor emits on CPU. A
# private op, so it is looked up, not assumed; used from torch 2.4, which has
# the autocast and compile queries below.
_HAS_FUSED_OPS = (torch.backends.mkldnn.is_available() and
                  digit_version(torch.__version__) >= digit_version('2.4.0'))
_CONV_POINTWISE = (getattr(torch.ops.mkldnn, '_convolution_pointwise', None)
                   if _HAS_FUSED_OPS else None)
# Its in-place variant: ``other += conv(x)``, no new output tensor.
_CONV_POINTWISE_ = (getattr(torch.ops.mkldnn, '_convolution_pointwise_', None)
                    if _HAS_FUSED_OPS else None)

# Bytes of the MLP's 4C-channel activations per tile in fused CPU inference:
# a tile stays in the last-level cache between the convolutions that write
# and read it, and the big tensors of the first stage are never allocated
# whole (fresh multi-MiB allocations cost page faults). 8 MiB measured best
# of 3/5/8/16 on a 32 MiB-L3 EPYC (docs/benchmarks.md).
MLP_TILE_BYTES = 8 * 2**20


def fused_cpu_inference(x: torch.Tensor) -> bool:
    """Whether ``x`` may take the fused oneDNN path: float32 CPU inference
    outside autocast, not being traced (export and ``torch.compile`` see the
    plain ops, which they fuse themselves)."""
    if (_CONV_POINTWISE is None or _CONV_POINTWISE_ is None
            or torch.compiler.is_compiling() or torch.jit.is_tracing()
            or torch.jit.is_scripting()):
        return False
    return (x.device.type == 'cpu' and x.dtype == torch.float32
            and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled('cpu'))


def _conv_args(conv: nn.Conv2d, scale: Optional[torch.Tensor]) -> tuple:
    """The weight, bias and geometry arguments of the oneDNN ops, with the
    per-output-channel ``scale`` (layer scale) folded into the weights:
    ``s * (W x + b) = (s W) x + s b``."""
    weight, bias = conv.weight, conv.bias
    if scale is not None:
        weight, bias = weight * scale.view(-1, 1, 1, 1), bias * scale
    return (weight, bias, list(conv.padding), list(conv.stride),
            list(conv.dilation), conv.groups)


def conv_pointwise(conv: nn.Conv2d,
                   x: torch.Tensor,
                   unary: str = 'none',
                   other: Optional[torch.Tensor] = None,
                   binary: str = 'add',
                   scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``unary(conv(x))``, or ``binary(scale * conv(x), other)``, in one pass.

    Args:
        unary: ``'none'`` or ``'gelu'`` (exact, erf-based: ``nn.GELU()``).
        other: The second operand of ``binary`` (``'add'`` or ``'mul'``).
        scale: Per-output-channel factor (layer scale).
    """
    weight, bias, *args = _conv_args(conv, scale)
    if other is None:
        return _CONV_POINTWISE(x, weight, bias, *args, unary, [], 'none')
    return _CONV_POINTWISE.binary(x, other, weight, bias, *args, binary, None,
                                  None, [], None)


def conv_add_(conv: nn.Conv2d, x: torch.Tensor, out: torch.Tensor,
              scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``out += scale * conv(x)`` in place, in one pass."""
    return _CONV_POINTWISE_.binary(out, x, *_conv_args(conv, scale), 'add',
                                   None, None, [], None)


def batch_tiles(n: int, h: int, row_bytes: int,
                budget: int) -> List[Tuple[slice, int, int]]:
    """Splits a batch of ``n`` images of ``h`` rows into tiles of at most
    about ``budget`` bytes: several whole images per tile when an image
    fits, else bands of rows of one image (each tile then one contiguous
    block of a channels-last tensor). Returns ``(images, row0, row1)``."""
    image_bytes = h * row_bytes
    if n * image_bytes <= budget:
        return [(slice(0, n), 0, h)]
    if image_bytes <= budget:
        k = budget // image_bytes
        return [(slice(i, min(i + k, n)), 0, h) for i in range(0, n, k)]
    # Two rows of each band are context for the 3x3 conv (see ConvMLP).
    rows = max(budget // row_bytes - 2, 8)
    return [(slice(i, i + 1), r, min(r + rows, h)) for i in range(n)
            for r in range(0, h, rows)]


class LayerNorm2d(nn.LayerNorm):
    """Layer norm over the channels of an NCHW tensor.

    Computes what the released ``LayerNorm(data_format='channels_first')``
    computes, but as one fused ``F.layer_norm`` over an NHWC view instead of
    five tensor passes; on channels-last inputs the view is free.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__(num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias,
                         self.eps)
        return x.permute(0, 3, 1, 2)


class ConvMod(nn.Module):
    """Convolutional modulation (paper Eq. 3-4), the block's token mixer.

    ``A = DWConv_kxk(GELU(W1 X))``, ``V = W2 X``, ``Z = W3 (A * V)``.
    Attribute names (``att``, ``v``, ``proj``) are the released ones.
    """

    def __init__(self, dim: int, kernel_size: int,
                 fusion: str = 'hadamard') -> None:
        super().__init__()
        self.norm = LayerNorm2d(dim)
        self.att = nn.Sequential(
            nn.Conv2d(dim, dim, 1),
            nn.GELU(),
            nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2,
                      groups=dim),
        )
        self.v = nn.Conv2d(dim, dim, 1)
        self.proj = nn.Conv2d(dim, dim, 1)
        self.fusion = fusion
        self._fuse = FUSIONS[fusion]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        a, v = self.att(x), self.v(x)
        if a.dtype == torch.float16:
            # Under float16 autocast, A * V overflows float16 (max 65504)
            # once both reach a few hundred: modulate and project in float32.
            # bfloat16 has float32's range and needs no guard.
            with torch.autocast(a.device.type, enabled=False):
                return self.proj(self._fuse(a.float(), v.float()))
        return self.proj(self._fuse(a, v))

    def forward_residual(self, x: torch.Tensor,
                         gamma: Optional[torch.Tensor]) -> torch.Tensor:
        """``x + gamma * self(x)`` with fused kernels (see
        :func:`fused_cpu_inference`): GELU in the first conv's epilogue, the
        Hadamard product in V's, scale and residual in the projection's."""
        y = self.norm(x)
        a = self.att[2](conv_pointwise(self.att[0], y, 'gelu'))
        if self.fusion == 'hadamard':
            av = conv_pointwise(self.v, y, other=a, binary='mul')
        else:
            av = self._fuse(a, self.v(y))
        return conv_pointwise(self.proj, av, other=x, scale=gamma)


class ConvMLP(nn.Module):
    """The block's MLP: 1x1 conv to ``ratio * C``, GELU, a residual 3x3
    depthwise conv with GELU on the expanded features, 1x1 conv back to C."""

    def __init__(self, dim: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        hidden = dim * mlp_ratio
        self.norm = LayerNorm2d(dim)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.pos = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.fc1(self.norm(x)))
        pos = self.act(self.pos(x))
        # In inference nothing keeps x for a backward pass: add in place and
        # save one allocation of the largest (4C-channel) tensor.
        x = x.add_(pos) if not torch.is_grad_enabled() else x + pos
        return self.fc2(x)

    def forward_residual_(self, x: torch.Tensor,
                          gamma: Optional[torch.Tensor]) -> torch.Tensor:
        """Adds ``gamma * self(x)`` to ``x`` in place with fused kernels (see
        :func:`fused_cpu_inference`), tile by tile (:data:`MLP_TILE_BYTES`)
        when ``x`` is channels last."""
        n, _, h, w = x.shape
        y = self.norm(x)
        tiles = [(slice(0, n), 0, h)]
        if x.is_contiguous(memory_format=torch.channels_last):
            tiles = batch_tiles(n, h, w * self.fc1.out_channels *
                                x.element_size(), MLP_TILE_BYTES)
        for images, r0, r1 in tiles:
            # A band's rows need one row above and below as the 3x3 conv's
            # context; where a band ends at the image's border, the conv's
            # zero padding is the right context. The context rows' own
            # outputs are wrong and are dropped.
            c0, c1 = max(r0 - 1, 0), min(r1 + 1, h)
            t = conv_pointwise(self.fc1, y[images, :, c0:c1], 'gelu')
            t.add_(conv_pointwise(self.pos, t, 'gelu'))
            conv_add_(self.fc2, t[:, :, r0 - c0:r1 - c0],
                      x[images, :, r0:r1], gamma)
        return x


class Conv2FormerBlock(nn.Module):
    """Pre-norm residual block: ConvMod then ConvMLP, each with layer scale
    and stochastic depth.

    Args:
        dim (int): Channels C.
        kernel_size (int): Kernel of the depthwise conv in ConvMod.
        mlp_ratio (int): Hidden channels of the MLP, as a multiple of C.
        drop_path (float): Stochastic depth rate of this block.
        layer_scale_init_value (float): Initial layer scale; 0 disables it.
        fusion (str): How A modulates V, a key of :data:`FUSIONS`.
        with_cp (bool): Recompute this block in the backward pass to save
            activation memory.
    """

    def __init__(self,
                 dim: int,
                 kernel_size: int,
                 mlp_ratio: int = 4,
                 drop_path: float = 0.,
                 layer_scale_init_value: float = 1e-6,
                 fusion: str = 'hadamard',
                 with_cp: bool = False) -> None:
        super().__init__()
        self.attn = ConvMod(dim, kernel_size, fusion)
        self.mlp = ConvMLP(dim, mlp_ratio)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if layer_scale_init_value > 0:
            self.layer_scale_1 = nn.Parameter(
                torch.full((dim, ), layer_scale_init_value))
            self.layer_scale_2 = nn.Parameter(
                torch.full((dim, ), layer_scale_init_value))
        else:
            self.layer_scale_1 = self.layer_scale_2 = None
        self.with_cp = with_cp

    def _residual(self, x: torch.Tensor, y: torch.Tensor,
                  gamma: Optional[nn.Parameter]) -> torch.Tensor:
        """``x + drop_path(gamma * y)``."""
        if gamma is not None:
            gamma = gamma.view(1, -1, 1, 1)
            if not (self.training and isinstance(self.drop_path, DropPath)):
                return torch.addcmul(x, y, gamma)  # one pass, not two
            y = y * gamma
        return x + self.drop_path(y)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if fused_cpu_inference(x) and not (
                self.training and isinstance(self.drop_path, DropPath)):
            # The MLP may add in place: its input is ConvMod's fresh output.
            x = self.attn.forward_residual(x, self.layer_scale_1)
            return self.mlp.forward_residual_(x, self.layer_scale_2)
        x = self._residual(x, self.attn(x), self.layer_scale_1)
        return self._residual(x, self.mlp(x), self.layer_scale_2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)


class Stem(nn.Sequential):
    """Two 3x3 convs, each followed by GELU and BatchNorm, then a
    ``patch x patch`` stride-``patch`` conv.

    The defaults are the hierarchical model's stride-4 stem (widths C/2,
    strides 2 and 1, a 2x2 conv without bias); its indices match the
    released ``downsample_layers.0.{0..6}``.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels C.
        widths (tuple[int, int], optional): Output channels of the 3x3
            convs. Defaults to ``(C // 2, C // 2)``.
        strides (tuple[int, int]): Strides of the 3x3 convs.
        patch (int): Kernel and stride of the last conv.
        bias (bool): Whether the last conv has a bias.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 widths: Optional[Tuple[int, int]] = None,
                 strides: Tuple[int, int] = (2, 1),
                 patch: int = 2,
                 bias: bool = False) -> None:
        c1, c2 = widths or (out_channels // 2, out_channels // 2)
        super().__init__(
            nn.Conv2d(in_channels, c1, 3, strides[0], padding=1, bias=False),
            nn.GELU(),
            nn.BatchNorm2d(c1),
            nn.Conv2d(c1, c2, 3, strides[1], padding=1, bias=False),
            nn.GELU(),
            nn.BatchNorm2d(c2),
            nn.Conv2d(c2, out_channels, patch, patch, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn1, bn2, last = self[2], self[5], self[6]
        if not fused_cpu_inference(x) or bn1.training or bn2.training:
            return super().forward(x)
        # GELU in the convs' epilogues (see fused_cpu_inference). The second
        # BatchNorm, an affine map z * s + t in eval mode, folds into the
        # last conv, exactly since that conv has no padding:
        # W (z * s + t) + b = (W s) z + (sum(W t) + b). Not so the first:
        # zero padding after it is not zero padding before it.
        x = bn1(conv_pointwise(self[0], x, 'gelu'))
        x = conv_pointwise(self[3], x, 'gelu')
        s = bn2.weight / torch.sqrt(bn2.running_var + bn2.eps)
        t = bn2.bias - bn2.running_mean * s
        bias = last.weight.sum((2, 3)) @ t
        if last.bias is not None:
            bias = bias + last.bias
        return F.conv2d(x, last.weight * s.view(1, -1, 1, 1), bias,
                        last.stride)


def check_kernel_size(kernel_size: int) -> None:
    if (not isinstance(kernel_size, int) or isinstance(kernel_size, bool)
            or kernel_size < 1 or kernel_size % 2 == 0):
        raise ValueError(
            f'kernel_size must be a positive odd integer (e.g. 5, 7, 11, 21) '
            f'so that padding k//2 keeps the spatial size, got {kernel_size!r}')


def check_common_args(fusion: str, drop_path_rate: float) -> None:
    if fusion not in FUSIONS:
        raise ValueError(f'Unknown fusion {fusion!r}; valid fusions are '
                         f'{sorted(FUSIONS)}')
    if not 0 <= drop_path_rate < 1:
        raise ValueError(
            f'drop_path_rate must be in [0, 1), got {drop_path_rate!r}')


def check_input(x: torch.Tensor, in_channels: int, min_size: int) -> None:
    """Fail on inputs the network cannot mean anything for, naming the fix."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x)
        raise ValueError(f'Expected a 4D input (N, C, H, W), got {shape}; '
                         'add a batch dimension with x[None] for one image')
    if x.shape[1] != in_channels:
        raise ValueError(
            f'Expected {in_channels} input channels, got {x.shape[1]} (shape '
            f'{tuple(x.shape)}); inputs are NCHW, set in_channels to match')
    if min(x.shape[2:]) < min_size:
        raise ValueError(f'Input height and width must be >= {min_size}, got '
                         f'{tuple(x.shape[2:])}')


def in_input_layout(out: torch.Tensor,
                    channels_last_input: bool) -> torch.Tensor:
    """An output in the input's memory layout. Inside, tensors turn channels
    last (on the CPU by choice, anywhere after a layer norm's NHWC view), but
    compiled ops downstream, mmcv's RoIAlign among them, read their input as
    contiguous NCHW memory whatever its strides say."""
    return out if channels_last_input else out.contiguous()


def linear_drop_path_rates(rate: float, num_blocks: int) -> List[float]:
    """Stochastic depth rising linearly from 0 to ``rate`` over the blocks."""
    return [rate * i / max(num_blocks - 1, 1) for i in range(num_blocks)]


def init_conv2former_weights(module: nn.Module) -> None:
    """The released initialisation: truncated normal (std 0.02) conv and
    linear weights, zero biases; norms keep weight 1, bias 0."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        trunc_normal_(module.weight, std=.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def init_backbone(backbone: BaseModule) -> bool:
    """The released initialisation, then the weights of a ``Pretrained``
    ``init_cfg`` loaded strictly enough that a wrong file is an error (see
    :func:`~mmc2f.utils.checkpoint.load_pretrained`). Returns True when the
    checkpoint was loaded here, so mmengine's own init must not run."""
    cfg = backbone.init_cfg
    pretrained = isinstance(cfg, dict) and cfg.get('type') == 'Pretrained'
    if cfg is None or pretrained:
        backbone.apply(init_conv2former_weights)
    if pretrained:
        load_pretrained(backbone, cfg['checkpoint'], cfg.get('prefix'),
                        cfg.get('map_location', 'cpu'))
        backbone._is_init = True
    return pretrained


class Conv2Former(BaseModule):
    """Conv2Former backbone (hierarchical, four stages).

    A PyTorch implementation of `Conv2Former: A Simple Transformer-Style
    ConvNet for Visual Recognition <https://arxiv.org/abs/2211.11943>`_,
    numerically identical to the authors' released code.

    Args:
        arch (str | dict): A preset, one of ``'nano'``, ``'tiny'``,
            ``'small'``, ``'base'``, ``'large'`` (or its first letter), or a
            dict with keys ``channels`` and ``depths`` (four ints each) and
            optionally ``kernel_size``. Defaults to ``'tiny'``.
        in_channels (int): Input channels. Defaults to 3.
        kernel_size (int, optional): Depthwise kernel of the convolutional
            modulation, any odd size (the paper ablates 5..21). Defaults to
            the arch's (7 for nano, 11 otherwise).
        mlp_ratio (int): MLP expansion. Defaults to 4.
        drop_path_rate (float): Stochastic depth rate, increased linearly
            over the blocks from 0. Defaults to 0.
        layer_scale_init_value (float): Initial layer scale. Defaults to 1e-6.
        fusion (str): How A modulates V: ``'hadamard'`` (the paper's),
            ``'sum'``, ``'sigmoid'``, ``'l1'`` or ``'linear'`` (Table 7).
        out_indices (Sequence[int] | int): Stages whose outputs are returned;
            negative indices count from the end. Defaults to -1.
        out_norm (bool): Apply a layer norm to each returned map, as
            ConvNeXt's detection and segmentation backbones do. The released
            classifier has its own norm after the last stage, so the ImageNet
            configs leave it off. Defaults to False.
        frozen_stages (int): Freeze (no gradient, eval mode) the first
            ``frozen_stages`` stages with their downsampling layers (the stem
            for stage 0); 0 or -1 freezes nothing. Defaults to 0.
        norm_eval (bool): Keep the stem's BatchNorm layers in eval mode
            during training. Defaults to False.
        with_cp (bool): Gradient checkpointing per block. Defaults to False.
        init_cfg (dict | list[dict], optional): mmengine init config, e.g.
            ``dict(type='Pretrained', checkpoint=..., prefix='backbone.')``.

    Shapes:
        Input ``(N, in_channels, H, W)`` with ``H, W >= 32``. Stage ``i``
        returns ``(N, channels[i], H_i, W_i)`` where
        ``H_0 = floor(ceil(H / 2) / 2)`` and ``H_{i+1} = floor(H_i / 2)``
        (likewise W): exactly H / 4, H / 8, ... when 32 divides H. Outputs
        are contiguous NCHW for an NCHW input and channels last for a
        channels-last one, whatever layout runs inside (channels last on
        the CPU).

    Example:
        >>> import torch
        >>> from mmc2f.models import Conv2Former
        >>> model = Conv2Former('tiny', out_indices=(0, 1, 2, 3)).eval()
        >>> for out in model(torch.rand(1, 3, 224, 224)):
        ...     print(tuple(out.shape))
        (1, 72, 56, 56)
        (1, 144, 28, 28)
        (1, 288, 14, 14)
        (1, 576, 7, 7)
    """
    arch_settings = ARCH_SETTINGS
    # Input side below which the last stage would be empty.
    min_input_size = 32

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 kernel_size: Optional[int] = None,
                 mlp_ratio: int = 4,
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float = 1e-6,
                 fusion: str = 'hadamard',
                 out_indices: Union[int, Sequence[int]] = -1,
                 out_norm: bool = False,
                 frozen_stages: int = 0,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        arch = self._parse_arch(arch)
        self.channels: List[int] = list(arch['channels'])
        self.depths: List[int] = list(arch['depths'])
        self.num_stages = len(self.depths)
        self.kernel_size = (arch.get('kernel_size', 11)
                            if kernel_size is None else kernel_size)
        check_kernel_size(self.kernel_size)
        check_common_args(fusion, drop_path_rate)
        self.in_channels = in_channels
        self.out_indices = self._parse_out_indices(out_indices)
        if not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(
                f'frozen_stages must be in [-1, {self.num_stages}] (-1 or 0 '
                f'freezes nothing), got {frozen_stages!r}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        # Stem, then one (LayerNorm, 2x2 stride-2 conv) between stages.
        self.downsample_layers = nn.ModuleList(
            [Stem(in_channels, self.channels[0])])
        for c_in, c_out in zip(self.channels[:-1], self.channels[1:]):
            self.downsample_layers.append(
                nn.Sequential(LayerNorm2d(c_in),
                              nn.Conv2d(c_in, c_out, 2, stride=2)))

        dpr = linear_drop_path_rates(drop_path_rate, sum(self.depths))
        self.stages = nn.ModuleList()
        for i, (dim, depth) in enumerate(zip(self.channels, self.depths)):
            first = sum(self.depths[:i])
            self.stages.append(
                nn.Sequential(*[
                    Conv2FormerBlock(
                        dim,
                        self.kernel_size,
                        mlp_ratio=mlp_ratio,
                        drop_path=dpr[first + j],
                        layer_scale_init_value=layer_scale_init_value,
                        fusion=fusion,
                        with_cp=with_cp) for j in range(depth)
                ]))

        self.out_norm = out_norm
        if out_norm:
            for i in self.out_indices:
                self.add_module(f'norm{i}', LayerNorm2d(self.channels[i]))

        self._freeze_stages()

    def _parse_arch(self, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            name = ARCH_ALIASES.get(arch.lower(), arch.lower())
            if name not in self.arch_settings:
                raise ValueError(
                    f'Unknown arch {arch!r}; valid presets are '
                    f'{sorted(self.arch_settings)} (or their first letter), '
                    'or pass a dict with "channels" and "depths"')
            return self.arch_settings[name]
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or a dict, got {type(arch)}')
        missing = {'channels', 'depths'} - set(arch)
        if missing:
            raise ValueError(f'arch dict is missing {sorted(missing)}; it '
                             'needs "channels" and "depths" (four ints each)')
        if len(arch['channels']) != 4 or len(arch['depths']) != 4:
            raise ValueError(
                'arch "channels" and "depths" must both have 4 entries (one '
                f'per stage), got {len(arch["channels"])} channels and '
                f'{len(arch["depths"])} depths')
        bad = [c for c in arch['channels'] if c < 2 or c % 2]
        if bad:
            raise ValueError('arch "channels" must be even (the stem halves '
                             f'the first), got {list(arch["channels"])}')
        return arch

    def _parse_out_indices(
            self, out_indices: Union[int, Sequence[int]]) -> Tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        parsed = []
        for index in out_indices:
            if not -self.num_stages <= index < self.num_stages:
                raise ValueError(
                    f'out_indices entry {index} is out of range: valid are '
                    f'{-self.num_stages}..{self.num_stages - 1}')
            parsed.append(index % self.num_stages)
        if len(set(parsed)) != len(parsed):
            raise ValueError(
                f'out_indices {list(out_indices)} name a stage twice')
        return tuple(sorted(parsed))

    def init_weights(self) -> None:
        if not init_backbone(self):
            super().init_weights()

    def _freeze_stages(self) -> None:
        for i in range(max(self.frozen_stages, 0)):
            modules = [self.downsample_layers[i], self.stages[i]]
            if i in self.out_indices and self.out_norm:
                modules.append(getattr(self, f'norm{i}'))
            for module in modules:
                module.eval()
                for param in module.parameters():
                    param.requires_grad = False

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        check_input(x, self.in_channels, self.min_input_size)
        channels_last_input = x.is_contiguous(
            memory_format=torch.channels_last)
        # oneDNN's convolutions, the depthwise 11x11 above all, and the layer
        # norms' NHWC view are fastest on channels-last tensors.
        if x.device.type == 'cpu':
            x = x.contiguous(memory_format=torch.channels_last)
        outs = []
        for i in range(self.num_stages):
            x = self.stages[i](self.downsample_layers[i](x))
            if i in self.out_indices:
                out = getattr(self, f'norm{i}')(x) if self.out_norm else x
                outs.append(in_input_layout(out, channels_last_input))
        return tuple(outs)

    def train(self, mode: bool = True) -> 'Conv2Former':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def get_layer_depth(self, param_name: str,
                        prefix: str = '') -> Tuple[int, int]:
        """Layer id of a parameter for layer-wise learning-rate decay.

        The grouping of ConvNeXt's detection recipe: the stem is layer 0,
        stage 0 layer 1, stage 1 layer 2, the deep stage 2 in groups of three
        blocks, stage 3 the last layer (each downsampling layer goes with the
        first blocks of the stage it feeds);
        the output norms and anything outside the backbone (neck, heads)
        come after it.

        Args:
            param_name (str): Parameter name, e.g.
                ``'backbone.stages.2.5.attn.v.weight'``.
            prefix (str): Prefix of the backbone's parameters in the model.

        Returns:
            tuple[int, int]: The layer id and the number of layer ids.
        """
        num_groups = -(-self.depths[2] // 3)
        last = 3 + num_groups  # stage 3
        num_layers = last + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        name = param_name[len(prefix):].split('.')
        if name[0] == 'downsample_layers':
            # The downsampling into stage i goes with stage i's first blocks.
            return [0, 2, 3, last][int(name[1])], num_layers
        if name[0] == 'stages':
            stage, block = int(name[1]), int(name[2])
            return [1, 2, 3 + block // 3, last][stage], num_layers
        # Output norms go with the neck and heads, as in ConvNeXt's recipe.
        return num_layers - 1, num_layers

    def get_stage_depth(self, param_name: str,
                        prefix: str = '') -> Tuple[int, int]:
        """Stage id of a parameter for stage-wise learning-rate decay.

        The grouping of ConvNeXt's segmentation recipe: the stem and every
        downsampling layer are id 0, stage ``i`` is id ``i + 1``; the output
        norms and anything outside the backbone (neck, heads) have the last
        id.

        Args:
            param_name (str): Parameter name, e.g.
                ``'backbone.stages.2.5.attn.v.weight'``.
            prefix (str): Prefix of the backbone's parameters in the model.

        Returns:
            tuple[int, int]: The stage id and the number of stage ids.
        """
        num_ids = self.num_stages + 2
        if not param_name.startswith(prefix):
            return num_ids - 1, num_ids
        name = param_name[len(prefix):].split('.')
        if name[0] == 'downsample_layers':
            return 0, num_ids
        if name[0] == 'stages':
            return int(name[1]) + 1, num_ids
        return num_ids - 1, num_ids
