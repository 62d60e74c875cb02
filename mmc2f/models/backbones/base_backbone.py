# Copyright (c) mmc2f contributors. All rights reserved.
"""The OpenMMLab backbone contract, implemented once for both Conv2Former
backbones: ``arch`` presets and dicts, ``out_indices``, ``frozen_stages``,
``norm_eval``, ``init_cfg`` (the released initialisation, or a strictly
checked ``Pretrained`` load), the input checks and the output layout."""
from typing import Collection, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModule, initialize
from mmengine.model.weight_init import trunc_normal_
from torch.nn.modules.batchnorm import _BatchNorm

from ...checkpoint import load_pretrained


def init_conv2former_weights(module: nn.Module) -> None:
    """The released initialisation: truncated normal (std 0.02) conv and
    linear weights, zero biases; norms keep weight 1, bias 0."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        trunc_normal_(module.weight, std=.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def check_block_args(kernel_size: int, modulation: str, drop_path_rate: float,
                     modulations: Collection[str]) -> None:
    """The block settings both backbones take, checked with the fix named."""
    if (not isinstance(kernel_size, int) or isinstance(kernel_size, bool)
            or kernel_size < 1 or kernel_size % 2 == 0):
        raise ValueError(
            f'kernel_size must be a positive odd integer (e.g. 5, 7, 11, 21) '
            f'so that padding k//2 keeps the spatial size, got {kernel_size}')
    if modulation not in modulations:
        raise ValueError(f'Unknown modulation {modulation!r}; valid '
                         f'modulations are {sorted(modulations)}')
    if not 0 <= drop_path_rate < 1:
        raise ValueError(
            f'drop_path_rate must be in [0, 1), got {drop_path_rate!r}')


def linear_drop_path_rates(rate: float, num_blocks: int) -> List[float]:
    """Stochastic depth rising linearly from 0 to ``rate`` over the blocks."""
    return [rate * i / max(num_blocks - 1, 1) for i in range(num_blocks)]


class BaseConv2Former(BaseModule):
    """What both backbones share; a subclass defines the network, sets
    ``num_stages`` (the units that ``out_indices`` and ``frozen_stages``
    count) and lists each stage's modules in :meth:`stage_modules`.

    Class attributes:
        arch_settings: The presets, by name.
        arch_aliases: Other names of the presets (lower case).
        arch_keys: The keys an ``arch`` dict must have.
        min_input_size: Input side below which the last output is empty.
    """
    arch_settings: Dict[str, dict] = {}
    arch_aliases: Dict[str, str] = {}
    arch_keys: Tuple[str, ...] = ()
    min_input_size: int = 1
    num_stages: int

    def __init__(self, init_cfg: Optional[Union[dict, List[dict]]] = None,
                 in_channels: int = 3, frozen_stages: int = 0,
                 norm_eval: bool = False) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels = in_channels
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

    def parse_arch(self, arch: Union[str, dict]) -> dict:
        """A preset by name or alias, or a dict with :attr:`arch_keys`."""
        if isinstance(arch, str):
            name = self.arch_aliases.get(arch.lower(), arch.lower())
            if name not in self.arch_settings:
                aliases = sorted(set(self.arch_aliases) - set(
                    self.arch_settings))
                raise ValueError(
                    f'Unknown arch {arch!r}; valid presets are '
                    f'{sorted(self.arch_settings)} (or {aliases}), or pass a '
                    f'dict with {list(self.arch_keys)}')
            return self.arch_settings[name]
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or a dict, got {type(arch)}')
        missing = set(self.arch_keys) - set(arch)
        if missing:
            raise ValueError(f'arch dict is missing {sorted(missing)}; it '
                             f'needs {list(self.arch_keys)}')
        return arch

    def parse_indices(self, out_indices: Union[int, Sequence[int]],
                      frozen_stages: int) -> Tuple[int, ...]:
        """``out_indices`` as sorted non-negative stage indices; checks
        ``frozen_stages`` against the same count."""
        n = self.num_stages
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        parsed = []
        for index in out_indices:
            if not -n <= index < n:
                raise ValueError(f'out_indices entry {index} is out of range:'
                                 f' valid are {-n}..{n - 1}')
            parsed.append(index % n)
        if len(set(parsed)) != len(parsed):
            raise ValueError(
                f'out_indices {list(out_indices)} name a stage twice')
        if not -1 <= frozen_stages <= n:
            raise ValueError(f'frozen_stages must be in [-1, {n}] (-1 or 0 '
                             f'freezes nothing), got {frozen_stages!r}')
        return tuple(sorted(parsed))

    def stage_modules(self, index: int) -> List[nn.Module]:
        """The modules that ``frozen_stages > index`` freezes."""
        raise NotImplementedError

    def freeze_stages(self) -> None:
        for i in range(max(self.frozen_stages, 0)):
            for module in self.stage_modules(i):
                module.eval()
                for param in module.parameters():
                    param.requires_grad = False

    def train(self, mode: bool = True) -> 'BaseConv2Former':
        super().train(mode)
        self.freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def init_weights(self) -> None:
        """The released initialisation, then the weights of a ``Pretrained``
        ``init_cfg`` (alone, or in a list after the others), loaded strictly
        enough that a wrong file is an error (see
        :func:`~mmc2f.checkpoint.load_pretrained`). A second call
        changes nothing, as for mmengine's own modules."""
        if self._is_init:
            print_log(f'init_weights of {type(self).__name__} has been called '
                      'more than once: the weights are left as they are.',
                      logger='current')
            return
        cfg = self.init_cfg
        cfgs = cfg if isinstance(cfg, list) else [] if cfg is None else [cfg]
        pretrained = [
            cfg for cfg in cfgs
            if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained'
        ]
        if len(pretrained) > 1:
            raise ValueError(f'init_cfg has {len(pretrained)} Pretrained '
                             'entries; keep the one to load')
        if not cfgs or pretrained:
            self.apply(init_conv2former_weights)
        if not pretrained:
            super().init_weights()
            return
        # Not through mmengine's Pretrained, which loads without a check.
        others = [cfg for cfg in cfgs if cfg is not pretrained[0]]
        if others:
            initialize(self, others)
        cfg = pretrained[0]
        load_pretrained(self, cfg['checkpoint'], cfg.get('prefix'),
                        cfg.get('map_location', 'cpu'))
        self._is_init = True

    def check_input(self, x: torch.Tensor) -> None:
        """Fail on inputs the network cannot mean anything for, naming the
        fix."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x)
            raise ValueError(f'Expected a 4D input (N, C, H, W), got {shape};'
                             ' add a batch dimension with x[None] for one '
                             'image')
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f'Expected {self.in_channels} input channels, got '
                f'{x.shape[1]} (shape {tuple(x.shape)}); inputs are NCHW, set '
                'in_channels to match')
        if min(x.shape[2:]) < self.min_input_size:
            raise ValueError('Input height and width must be >= '
                             f'{self.min_input_size}, got '
                             f'{tuple(x.shape[2:])}')


def in_layout_of(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``out`` in the memory layout of the backbone's input ``x``. Inside,
    tensors may turn channels last (after a layer norm's NHWC view, or by
    the CPU inference's choice), but compiled ops downstream, mmcv's
    RoIAlign among them, read their input as contiguous NCHW memory whatever
    its strides say."""
    if x.is_contiguous(memory_format=torch.channels_last):
        return out.contiguous(memory_format=torch.channels_last)
    return out.contiguous()
