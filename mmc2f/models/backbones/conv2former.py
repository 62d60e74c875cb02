# Copyright (c) mmc2f contributors. All rights reserved.
"""Conv2Former: A Simple Transformer-Style ConvNet for Visual Recognition.

Hou, Lu, Cheng, Feng, IEEE TPAMI 2024. This file is the reference model, in
the paper's order: the presets (Table 1), the convolutional modulation
(Eqs. 3-5, with the alternatives of Table 7), the MLP, the stem, the block
and the four-stage backbone. Where the released code departs from the
paper's text (the three-conv stem, the MLP's positional conv, GELU in the
attention branch, kernel 7 for N and the ImageNet-22k B), the released code
is followed; ``docs/released_architecture.md`` lists the differences. Module
and parameter names are the released ones, so the authors' checkpoints load
after the key renaming of ``tools/model_converters/conv2former_to_mmc2f.py``.

The fast paths live in :mod:`mmc2f.ops`: the fused CPU inference engine and
the Triton op of the modulation's conv and product, for training and
inference. Each module hands its work to them at one point, where the one
policy of :mod:`mmc2f.ops.dispatch` says so (the ``backend`` argument), and
the model computes the same function without them. Only torch, mmengine and
``mmcv.cnn`` are imported (Triton where it is installed): the backbone runs
where mmcv's compiled ops are absent (``mmcv-lite``).
"""
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks import DropPath

from ...ops import dispatch, dwconv_modulate
from .base_backbone import (BaseConv2Former, check_block_args, in_layout_of,
                            linear_drop_path_rates)

# The paper's Table 1. ``kernel_size`` is the released one: 7 for N, 11
# otherwise (the ImageNet-22k B is 'base' with ``kernel_size=7``).
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


# How A modulates V: the Hadamard product of Eq. (3), and the alternatives
# the paper compares in Table 7.
MODULATIONS: Dict[str, Callable[[torch.Tensor, torch.Tensor],
                                torch.Tensor]] = {
    'hadamard': torch.mul,
    'sum': torch.add,
    'sigmoid': _sigmoid,
    'l1': _l1_norm,
    'linear': _linear_norm,
}


def float32_under_float16(fn: Callable[[torch.Tensor, torch.Tensor],
                                       torch.Tensor],
                          a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``fn(a, v)``, computed in float32 when ``a`` is float16: under
    float16 autocast, A ⊙ V overflows float16 (max 65504) once both reach a
    few hundred. bfloat16 has float32's range and needs no guard."""
    if a.dtype != torch.float16:
        return fn(a, v)
    with torch.autocast(a.device.type, enabled=False):
        return fn(a.float(), v.float())


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
    """Convolutional modulation, the block's token mixer (Eqs. 3-5)::

        A = DWConv_kxk(GELU(W1 X))    V = W2 X    Z = A ⊙ V    out = W3 Z

    on the layer-normed input X; the linear layers are 1x1 convs and the
    GELU is the released code's. Attribute names (``att``, ``v``,
    ``proj``) are the released ones. ``backend``: see
    :mod:`mmc2f.ops.dispatch`.
    """

    def __init__(self, dim: int, kernel_size: int,
                 modulation: str = 'hadamard', backend: str = 'auto') -> None:
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
        self.modulation = modulation
        self.backend = dispatch.check_backend(backend)

    def modulate(self, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return MODULATIONS[self.modulation](a, v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        if dispatch.convmod_uses_op(self, x, self.backend):
            pre_conv, gelu, conv = self.att
            z = dwconv_modulate(gelu(pre_conv(x)), conv.weight, conv.bias,
                                self.v(x), self.backend)
            if z.dtype == torch.float32 and torch.is_autocast_enabled(
                    x.device.type):  # float16 autocast: see below
                with torch.autocast(x.device.type, enabled=False):
                    return self.proj(z)
            return self.proj(z)
        a, v = self.att(x), self.v(x)
        return float32_under_float16(
            lambda a, v: self.proj(self.modulate(a, v)), a, v)


class ConvMLP(nn.Module):
    """The block's MLP: 1x1 conv to ``ratio * C``, GELU, a residual 3x3
    depthwise conv with GELU on the expanded features (the released code's
    positional conv), 1x1 conv back to C."""

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


class Stem(nn.Sequential):
    """The released stem: two 3x3 convs, each followed by GELU and
    BatchNorm, then a ``patch x patch`` stride-``patch`` conv.

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
        backend (str): See :mod:`mmc2f.ops.dispatch`.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 widths: Optional[Tuple[int, int]] = None,
                 strides: Tuple[int, int] = (2, 1),
                 patch: int = 2,
                 bias: bool = False,
                 backend: str = 'auto') -> None:
        width1, width2 = widths or (out_channels // 2, out_channels // 2)
        super().__init__(
            nn.Conv2d(in_channels, width1, 3, strides[0], padding=1,
                      bias=False),
            nn.GELU(),
            nn.BatchNorm2d(width1),
            nn.Conv2d(width1, width2, 3, strides[1], padding=1, bias=False),
            nn.GELU(),
            nn.BatchNorm2d(width2),
            nn.Conv2d(width2, out_channels, patch, patch, bias=bias),
        )
        self.backend = dispatch.check_backend(backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if dispatch.cpu_engine_runs(self, x, self.backend):
            return dispatch.cpu_inference.stem_forward(self, x)
        return super().forward(x)


class Conv2FormerBlock(nn.Module):
    """Pre-norm residual block: the modulation, then the MLP, each with
    layer scale and stochastic depth.

    Args:
        dim (int): Channels C.
        kernel_size (int): Kernel of the modulation's depthwise conv.
        mlp_ratio (int): Hidden channels of the MLP, as a multiple of C.
        drop_path (float): Stochastic depth rate of this block.
        layer_scale_init_value (float): Initial layer scale; 0 disables it.
        modulation (str): How A modulates V, a key of :data:`MODULATIONS`.
        with_cp (bool): Recompute this block in the backward pass to save
            activation memory.
        backend (str): See :mod:`mmc2f.ops.dispatch`.
    """

    def __init__(self,
                 dim: int,
                 kernel_size: int,
                 mlp_ratio: int = 4,
                 drop_path: float = 0.,
                 layer_scale_init_value: float = 1e-6,
                 modulation: str = 'hadamard',
                 with_cp: bool = False,
                 backend: str = 'auto') -> None:
        super().__init__()
        self.attn = ConvMod(dim, kernel_size, modulation, backend)
        self.mlp = ConvMLP(dim, mlp_ratio)
        self.drop_path = DropPath(drop_path) if drop_path else nn.Identity()
        if layer_scale_init_value > 0:
            self.layer_scale_1 = nn.Parameter(
                torch.full((dim, ), layer_scale_init_value))
            self.layer_scale_2 = nn.Parameter(
                torch.full((dim, ), layer_scale_init_value))
        else:
            self.layer_scale_1 = self.layer_scale_2 = None
        self.with_cp = with_cp
        self.backend = backend

    def residual(self, x: torch.Tensor, y: torch.Tensor,
                 gamma: Optional[nn.Parameter]) -> torch.Tensor:
        """``x + drop_path(gamma * y)``."""
        if gamma is not None:
            gamma = gamma.view(1, -1, 1, 1)
            if not (self.training and isinstance(self.drop_path, DropPath)):
                return torch.addcmul(x, y, gamma)  # one pass, not two
            y = y * gamma
        return x + self.drop_path(y)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if dispatch.cpu_engine_runs(self, x, self.backend):
            return dispatch.cpu_inference.block_forward(self, x)
        x = self.residual(x, self.attn(x), self.layer_scale_1)
        return self.residual(x, self.mlp(x), self.layer_scale_2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)


class Conv2Former(BaseConv2Former):
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
        modulation (str): How A modulates V: ``'hadamard'`` (the paper's),
            ``'sum'``, ``'sigmoid'``, ``'l1'`` or ``'linear'`` (Table 7).
        out_indices (Sequence[int] | int): Stages whose outputs are returned;
            negative indices count from the end. Defaults to -1.
        out_norm (bool): Apply a layer norm to each returned map, as
            ConvNeXt's detection and segmentation backbones do. The released
            classifier has its own norm after the last stage, so the ImageNet
            configs leave it off. Defaults to False.
        frozen_stages (int): Freeze (no gradient, eval mode) the first
            ``frozen_stages`` stages with their downsampling layers (the stem
            for stage 0) and output norms; 0 or -1 freezes nothing.
            Defaults to 0.
        norm_eval (bool): Keep the stem's BatchNorm layers in eval mode
            during training. Defaults to False.
        with_cp (bool): Gradient checkpointing per block. Defaults to False.
        backend (str): How the modules compute: ``'auto'`` (the fused CPU
            engine for float32 CPU inference; on CUDA the Triton op of the
            modulation where it times faster than cuDNN), ``'triton'`` or
            ``'reference'`` (PyTorch ops only); see
            :mod:`mmc2f.ops.dispatch`. Defaults to ``'auto'``.
        init_cfg (dict | list[dict], optional): mmengine init config, e.g.
            ``dict(type='Pretrained', checkpoint=..., prefix='backbone.')``.

    Shapes:
        Input ``(N, in_channels, H, W)`` with ``H, W >= 32``. Stage ``i``
        returns ``(N, channels[i], H_i, W_i)`` where
        ``H_0 = floor(ceil(H / 2) / 2)`` and ``H_{i+1} = floor(H_i / 2)``
        (likewise W): exactly H / 4, H / 8, ... when 32 divides H. Outputs
        are contiguous NCHW for an NCHW input and channels last for a
        channels-last one, whatever layout runs inside.

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
    arch_aliases = {name[0]: name for name in ARCH_SETTINGS}
    arch_keys = ('channels', 'depths')
    min_input_size = 32
    num_stages = 4

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 kernel_size: Optional[int] = None,
                 mlp_ratio: int = 4,
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float = 1e-6,
                 modulation: str = 'hadamard',
                 out_indices: Union[int, Sequence[int]] = -1,
                 out_norm: bool = False,
                 frozen_stages: int = 0,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 backend: str = 'auto',
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg, in_channels, frozen_stages, norm_eval)
        arch = self.parse_arch(arch)
        self.channels: List[int] = list(arch['channels'])
        self.depths: List[int] = list(arch['depths'])
        if len(self.channels) != 4 or len(self.depths) != 4:
            raise ValueError(
                'arch "channels" and "depths" must both have 4 entries (one '
                f'per stage), got {len(self.channels)} channels and '
                f'{len(self.depths)} depths')
        if any(c < 2 or c % 2 for c in self.channels):
            raise ValueError('arch "channels" must be even (the stem halves '
                             f'the first), got {self.channels}')
        self.kernel_size = (arch.get('kernel_size', 11)
                            if kernel_size is None else kernel_size)
        check_block_args(self.kernel_size, modulation, drop_path_rate,
                         MODULATIONS)
        self.out_indices = self.parse_indices(out_indices, frozen_stages)

        # The stem, then a (LayerNorm, 2x2 stride-2 conv) between stages.
        self.downsample_layers = nn.ModuleList(
            [Stem(in_channels, self.channels[0], backend=backend)])
        for c_in, c_out in zip(self.channels[:-1], self.channels[1:]):
            self.downsample_layers.append(
                nn.Sequential(LayerNorm2d(c_in),
                              nn.Conv2d(c_in, c_out, 2, stride=2)))

        rates = iter(linear_drop_path_rates(drop_path_rate, sum(self.depths)))
        self.stages = nn.ModuleList(
            nn.Sequential(*[
                Conv2FormerBlock(
                    dim,
                    self.kernel_size,
                    mlp_ratio=mlp_ratio,
                    drop_path=next(rates),
                    layer_scale_init_value=layer_scale_init_value,
                    modulation=modulation,
                    with_cp=with_cp,
                    backend=backend) for _ in range(depth)
            ]) for dim, depth in zip(self.channels, self.depths))

        self.out_norm = out_norm
        if out_norm:
            for i in self.out_indices:
                self.add_module(f'norm{i}', LayerNorm2d(self.channels[i]))
        self.freeze_stages()

    def stage_modules(self, index: int) -> List[nn.Module]:
        modules = [self.downsample_layers[index], self.stages[index]]
        if self.out_norm and index in self.out_indices:
            modules.append(getattr(self, f'norm{index}'))
        return modules

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        self.check_input(x)
        inputs = x
        x = dispatch.preferred_layout(x)
        outs = []
        for i, (downsample, stage) in enumerate(
                zip(self.downsample_layers, self.stages)):
            x = stage(downsample(x))
            if i in self.out_indices:
                out = getattr(self, f'norm{i}')(x) if self.out_norm else x
                outs.append(in_layout_of(out, inputs))
        return tuple(outs)

    def get_layer_depth(self, param_name: str,
                        prefix: str = '') -> Tuple[int, int]:
        """Layer id of a parameter for layer-wise learning-rate decay.

        ConvNeXt's detection rule: the stem is layer 0, stage 0 layer 1,
        stage 1 layer 2, the deep stage 2 in groups of three blocks from
        layer 3, stage 3 the last backbone layer (each downsampling layer
        goes with the first blocks of the stage it feeds); the output norms
        and anything outside the backbone (neck, heads) come after it.

        Args:
            param_name (str): Parameter name, e.g.
                ``'backbone.stages.2.5.attn.v.weight'``.
            prefix (str): Prefix of the backbone's parameters in the model.

        Returns:
            tuple[int, int]: The layer id and the number of layer ids.
        """
        last = 3 + -(-self.depths[2] // 3)  # stage 3
        num_layers = last + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        name = param_name[len(prefix):].split('.')
        if name[0] == 'downsample_layers':
            return [0, 2, 3, last][int(name[1])], num_layers
        if name[0] == 'stages':
            stage, block = int(name[1]), int(name[2])
            return [1, 2, 3 + block // 3, last][stage], num_layers
        return num_layers - 1, num_layers

    def get_stage_depth(self, param_name: str,
                        prefix: str = '') -> Tuple[int, int]:
        """Stage id of a parameter for stage-wise learning-rate decay, and
        the number of stage ids (arguments as :meth:`get_layer_depth`).

        ConvNeXt's segmentation rule: the stem and every downsampling layer
        are id 0, stage ``i`` is id ``i + 1``; the output norms and anything
        outside the backbone (neck, heads) have the last id.
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
