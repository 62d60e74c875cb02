# Copyright (c) mmc2f contributors. All rights reserved.
"""Isotropic Conv2Former (paper section 4.5): ViT-style, one resolution.

The authors did not release this variant. The paper fixes 18 blocks and two
patch embeddings (one 16x16 stride-16 conv, or three convs) and says the
channels were chosen to match the model size of ConvNeXt's isotropic models;
the widths below are the ones that give the paper's 23M / 4.3G (IS) and
86M / 16.5G (IB) with a linear classifier (``mmc2f.paper.ISOTROPIC``, checked
by the tests).
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from ...ops import dispatch
from .base_backbone import (BaseConv2Former, check_block_args, in_layout_of,
                            linear_drop_path_rates)
from .conv2former import MODULATIONS, Conv2FormerBlock, LayerNorm2d, Stem

ISOTROPIC_ARCH_SETTINGS: Dict[str, dict] = {
    'small': dict(channels=328, depth=18),
    'base': dict(channels=640, depth=18),
}
ISOTROPIC_ALIASES = {'is': 'small', 's': 'small', 'ib': 'base', 'b': 'base'}


def patch_embed(kind: str, in_channels: int, dim: int,
                backend: str = 'auto') -> nn.Sequential:
    """Stride-16 patch embedding.

    ``'conv'``: one 16x16 stride-16 conv, as ViT. ``'conv3'``: three convs
    (3x3 s2, 3x3 s2, 4x4 s4) with GELU and BatchNorm between them, in the
    style of the hierarchical model's stem, which sees pixels at a finer
    stride before the patch projection.
    """
    if kind == 'conv':
        return nn.Sequential(nn.Conv2d(in_channels, dim, 16, stride=16))
    if kind == 'conv3':
        return Stem(in_channels, dim, widths=(dim // 8, dim // 4),
                    strides=(2, 2), patch=4, bias=True, backend=backend)
    raise ValueError(f"Unknown patch_embed {kind!r}; valid are 'conv' (one "
                     "16x16 conv) and 'conv3' (three convs)")


class Conv2FormerIsotropic(BaseConv2Former):
    """Isotropic Conv2Former: a stride-16 patch embedding followed by a
    sequence of Conv2Former blocks at a single resolution.

    Args:
        arch (str | dict): ``'small'``/``'IS'`` or ``'base'``/``'IB'``, or a
            dict with ``channels`` (int) and ``depth`` (int).
        in_channels (int): Input channels. Defaults to 3.
        patch_embed_type (str): ``'conv'`` or ``'conv3'``. Defaults to
            ``'conv'``.
        kernel_size (int): Depthwise kernel. Defaults to 11.
        mlp_ratio (int): MLP expansion. Defaults to 4.
        drop_path_rate (float): Stochastic depth rate. Defaults to 0.
        layer_scale_init_value (float): Defaults to 1e-6.
        modulation (str): How A modulates V (see :class:`Conv2Former`).
        out_indices (Sequence[int] | int): Blocks whose outputs are returned,
            negative indices from the end. Defaults to -1 (the last).
        final_norm (bool): Layer norm on each returned map. Defaults to True.
        frozen_stages (int): Freeze (no gradient, eval mode) the patch
            embedding and the first ``frozen_stages`` blocks, and the final
            norm when all are frozen, as mmpretrain's ViT; 0 or -1 freezes
            nothing. Defaults to 0.
        norm_eval (bool): Keep the BatchNorm layers of the ``'conv3'`` patch
            embedding in eval mode during training. Defaults to False.
        with_cp (bool): Gradient checkpointing per block.
        backend (str): How the modules compute (see :class:`Conv2Former`).
        init_cfg (dict | list[dict], optional): mmengine init config.

    Shapes:
        Input ``(N, in_channels, H, W)``, H, W >= 16; every output is
        ``(N, channels, floor(H / 16), floor(W / 16))``, in the input's
        memory layout.

    Example:
        >>> import torch
        >>> from mmc2f.models import Conv2FormerIsotropic
        >>> model = Conv2FormerIsotropic('IS').eval()
        >>> tuple(model(torch.rand(1, 3, 224, 224))[0].shape)
        (1, 328, 14, 14)
    """
    arch_settings = ISOTROPIC_ARCH_SETTINGS
    arch_aliases = ISOTROPIC_ALIASES
    arch_keys = ('channels', 'depth')
    min_input_size = 16

    def __init__(self,
                 arch: Union[str, dict] = 'small',
                 in_channels: int = 3,
                 patch_embed_type: str = 'conv',
                 kernel_size: int = 11,
                 mlp_ratio: int = 4,
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float = 1e-6,
                 modulation: str = 'hadamard',
                 out_indices: Union[int, Sequence[int]] = -1,
                 final_norm: bool = True,
                 frozen_stages: int = 0,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 backend: str = 'auto',
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg, in_channels, frozen_stages, norm_eval)
        arch = self.parse_arch(arch)
        self.channels: int = arch['channels']
        self.depth: int = arch['depth']
        self.num_stages = self.depth
        check_block_args(kernel_size, modulation, drop_path_rate,
                         MODULATIONS)
        self.out_indices = self.parse_indices(out_indices, frozen_stages)

        self.patch_embed = patch_embed(patch_embed_type, in_channels,
                                       self.channels, backend)
        rates = linear_drop_path_rates(drop_path_rate, self.depth)
        self.blocks = nn.Sequential(*[
            Conv2FormerBlock(
                self.channels,
                kernel_size,
                mlp_ratio=mlp_ratio,
                drop_path=rate,
                layer_scale_init_value=layer_scale_init_value,
                modulation=modulation,
                with_cp=with_cp,
                backend=backend) for rate in rates
        ])
        self.final_norm = final_norm
        if final_norm:
            self.norm = LayerNorm2d(self.channels)
        self.freeze_stages()

    def stage_modules(self, index: int) -> List[nn.Module]:
        modules = [self.blocks[index]]
        if index == 0:
            modules.insert(0, self.patch_embed)
        if index == self.depth - 1 and self.final_norm:
            modules.append(self.norm)
        return modules

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        self.check_input(x)
        inputs = x
        x = self.patch_embed(dispatch.preferred_layout(x))
        outs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.out_indices:
                out = self.norm(x) if self.final_norm else x
                outs.append(in_layout_of(out, inputs))
        return tuple(outs)

    def get_layer_depth(self, param_name: str,
                        prefix: str = '') -> Tuple[int, int]:
        """Layer id for layer-wise learning-rate decay: the patch embedding
        is 0, block i is i + 1, everything after the blocks the last."""
        num_layers = self.depth + 2
        name = param_name[len(prefix):].split('.') \
            if param_name.startswith(prefix) else ['']
        if name[0] == 'patch_embed':
            return 0, num_layers
        if name[0] == 'blocks':
            return int(name[1]) + 1, num_layers
        return num_layers - 1, num_layers
