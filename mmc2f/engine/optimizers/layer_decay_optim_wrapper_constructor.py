# Copyright (c) mmc2f contributors. All rights reserved.
import logging
from typing import Dict, List

import torch.nn as nn
from mmengine.device import get_device
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper


class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """AdamW groups with layer-wise learning-rate decay.

    The layer of each backbone parameter comes from the backbone's own
    ``get_layer_depth(param_name, prefix)`` (the mmpretrain contract, which
    :class:`~mmc2f.models.Conv2Former` implements), so no table of parameter
    names lives here and any backbone that declares its depths works.
    Parameters outside the backbone (neck, heads) belong to the last layer.
    A parameter of layer ``i`` out of ``n`` gets
    ``lr = base_lr * decay_rate ** (n - 1 - i)``.

    One-dimensional parameters (norm weights, biases, layer scales) get no
    weight decay, as in ConvNeXt's and Swin's recipes.

    ``paramwise_cfg`` keys:
        decay_rate (float): Per-layer decay of the learning rate.

    The paper's configs train with AMP, which mmengine's ``AmpOptimWrapper``
    supports on accelerators only; on a CPU (smoke tests, the demo) the
    wrapper falls back to fp32 ``OptimWrapper`` with a warning, whichever
    train script builds it.

    Example:
        >>> optim_wrapper = dict(
        ...     constructor='mmc2f.LayerDecayOptimWrapperConstructor',
        ...     optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
        ...     paramwise_cfg=dict(decay_rate=0.95))
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        if (self.optim_wrapper_cfg.get('type') == 'AmpOptimWrapper'
                and get_device() == 'cpu'):
            print_log(
                'No GPU/NPU/MLU: AmpOptimWrapper replaced by OptimWrapper, '
                'training runs in fp32.',
                logger='current',
                level=logging.WARNING)
            self.optim_wrapper_cfg = {
                k: v
                for k, v in self.optim_wrapper_cfg.items()
                if k not in ('loss_scale', 'dtype', 'use_fsdp')
            }
            self.optim_wrapper_cfg['type'] = 'OptimWrapper'
        return super().__call__(model)

    def add_params(self, params: List[dict], module: nn.Module,
                   **kwargs) -> None:
        if is_model_wrapper(module):
            module = module.module
        unknown = set(self.paramwise_cfg) - {'decay_rate'}
        if unknown:
            raise ValueError(
                f'{type(self).__name__} got paramwise_cfg keys '
                f'{sorted(unknown)} it does not use; it takes only '
                '"decay_rate"')
        decay_rate = self.paramwise_cfg.get('decay_rate', 1.0)
        backbone = getattr(module, 'backbone', None)
        get_layer_depth = getattr(backbone, 'get_layer_depth', None)
        if get_layer_depth is None:
            raise TypeError(
                f'{type(self).__name__} needs model.backbone.get_layer_depth('
                f'param_name, prefix), which {type(backbone).__name__} does '
                'not define; use the default constructor for this model')

        groups: Dict[str, dict] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            layer_id, num_layers = get_layer_depth(name, 'backbone.')
            no_decay = param.ndim == 1
            group = f'layer_{layer_id}_{"no_decay" if no_decay else "decay"}'
            if group not in groups:
                scale = decay_rate**(num_layers - 1 - layer_id)
                groups[group] = dict(
                    params=[],
                    param_names=[],
                    group_name=group,
                    lr_scale=scale,
                    lr=self.base_lr * scale,
                    weight_decay=0. if no_decay else self.base_wd)
            groups[group]['params'].append(param)
            groups[group]['param_names'].append(name)
        params.extend(groups.values())
