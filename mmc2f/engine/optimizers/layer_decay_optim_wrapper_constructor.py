# Copyright (c) mmc2f contributors. All rights reserved.
import logging
from typing import Callable, Dict, List, Tuple

import torch.nn as nn
from mmengine.device import get_device
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

# decay_type -> the backbone method that gives a parameter's id
# ('backbone_wise' needs none: the whole backbone is one id).
DEPTH_METHODS = {
    'layer_wise': 'get_layer_depth',
    'stage_wise': 'get_stage_depth',
    'backbone_wise': None
}
# What mmengine's DefaultOptimWrapperConstructor counts as a norm layer
# (its norm_decay_mult).
NORMS = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)


class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """AdamW groups with ConvNeXt's layer-wise or stage-wise learning-rate
    decay, or a backbone at a fraction of the learning rate.

    The id of each backbone parameter comes from the backbone itself, so no
    table of parameter names lives here and any backbone that declares its
    depths works:

    - ``decay_type='layer_wise'`` (ConvNeXt's detection recipe) reads
      ``get_layer_depth(param_name, prefix)`` (the mmpretrain contract). A
      parameter of id ``i`` out of ``n`` gets
      ``lr = base_lr * decay_rate ** (n - 1 - i)``.
    - ``decay_type='stage_wise'`` (ConvNeXt's segmentation recipe, as
      MMSegmentation's ``LearningRateDecayOptimizerConstructor`` computes
      it) reads ``get_stage_depth(param_name, prefix)``: the stem and the
      downsampling layers have id 0, stage ``i`` id ``i + 1``, and the rest
      (output norms, neck, heads) the last id. With ``num_layers`` from the
      config, a parameter of id ``i`` gets
      ``lr = base_lr * decay_rate ** (num_layers + 1 - i)``, the rest
      ``base_lr``.
    - ``decay_type='backbone_wise'`` (the DETR-style recipes of DINO and
      Mask2Former, for every backbone): the whole backbone is one id, at
      ``lr = base_lr * decay_rate``.

    Parameters outside the backbone always get ``base_lr``. The parameters
    that ``no_decay`` names get no weight decay, the others ``base_wd``.

    ``paramwise_cfg`` keys:
        decay_rate (float): Decay of the learning rate per id.
        decay_type (str): ``'layer_wise'`` (default), ``'stage_wise'`` or
            ``'backbone_wise'``.
        num_layers (int): ``'stage_wise'`` only: ConvNeXt's ``num_layers``
            (6 for tiny, 12 for small, base and large); defaults to the
            number of stages. ``'layer_wise'`` takes the count from the
            backbone.
        no_decay (list[str]): The parameters without weight decay:
            ``'flat'`` the one-dimensional ones (norm weights, biases,
            layer scales: ConvNeXt's recipes, the default ``['flat']``),
            ``'norm'`` those of norm layers (mmengine's ``norm_decay_mult``),
            any other entry those whose name contains it; ``[]`` for none.

    The paper's configs train with AMP, which mmengine's ``AmpOptimWrapper``
    supports on accelerators only; on a CPU (smoke tests, the demo) the
    wrapper falls back to fp32 ``OptimWrapper`` with a warning, whichever
    train script builds it.

    Example:
        >>> optim_wrapper = dict(
        ...     constructor='mmc2f.LayerDecayOptimWrapperConstructor',
        ...     optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
        ...     paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise',
        ...                        num_layers=6))
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

    def _lr_scale_fn(self, backbone: nn.Module) -> Callable[[str], Tuple[
            int, float]]:
        """``param_name -> (group id, lr scale)`` from the backbone's depth
        method for the configured decay type."""
        name = type(self).__name__
        unknown = set(self.paramwise_cfg) - {
            'decay_rate', 'decay_type', 'num_layers', 'no_decay'
        }
        if unknown:
            raise ValueError(
                f'{name} got paramwise_cfg keys {sorted(unknown)} it does not '
                'use; it takes "decay_rate", "decay_type", "num_layers" and '
                '"no_decay"')
        decay_rate = self.paramwise_cfg.get('decay_rate', 1.0)
        decay_type = self.paramwise_cfg.get('decay_type', 'layer_wise')
        if decay_type not in DEPTH_METHODS:
            raise ValueError(f'{name}: unknown decay_type {decay_type!r}; use '
                             f'one of {sorted(DEPTH_METHODS)}')
        num_layers = self.paramwise_cfg.get('num_layers')
        if decay_type != 'stage_wise' and num_layers is not None:
            raise ValueError(
                f'{name}: num_layers is for decay_type="stage_wise"; '
                f'{decay_type} takes the number of ids from the backbone, '
                'remove num_layers')
        if decay_type == 'backbone_wise':

            def backbone_scale(param_name: str) -> Tuple[int, float]:
                if param_name.startswith('backbone.'):
                    return 0, decay_rate
                return 1, 1.

            return backbone_scale

        method = DEPTH_METHODS[decay_type]
        get_depth = getattr(backbone, method, None)
        if get_depth is None:
            raise TypeError(
                f'{name} with decay_type={decay_type!r} needs '
                f'model.backbone.{method}(param_name, prefix), which '
                f'{type(backbone).__name__} does not define; use another '
                'decay_type or the default constructor for this model')
        if decay_type == 'layer_wise':

            def scale(param_name: str) -> Tuple[int, float]:
                layer_id, num_ids = get_depth(param_name, 'backbone.')
                return layer_id, decay_rate**(num_ids - 1 - layer_id)

            return scale

        _, num_ids = get_depth('', 'backbone.')  # outside: the last id
        num_stages = num_ids - 2
        if num_layers is None:
            num_layers = num_stages
        if not isinstance(num_layers, int) or num_layers < num_stages:
            raise ValueError(
                f'{name}: num_layers must be an int >= the backbone\'s '
                f'{num_stages} stages, got {num_layers!r}')

        def stage_scale(param_name: str) -> Tuple[int, float]:
            stage_id, _ = get_depth(param_name, 'backbone.')
            if stage_id == num_ids - 1:  # output norms, neck, heads
                stage_id = num_layers + 1
            return stage_id, decay_rate**(num_layers + 1 - stage_id)

        return stage_scale

    def _no_decay_fn(
            self, model: nn.Module) -> Callable[[str, nn.Parameter], bool]:
        """``(param_name, param) -> True`` where ``no_decay`` exempts the
        parameter from weight decay."""
        rules = self.paramwise_cfg.get('no_decay', ['flat'])
        if not isinstance(rules, (list, tuple)) or not all(
                isinstance(rule, str) and rule for rule in rules):
            raise ValueError(
                f'{type(self).__name__}: no_decay must be a list of '
                f'non-empty strings, got {rules!r}')
        flat = 'flat' in rules
        norm_params = {
            id(param)
            for module in model.modules() if isinstance(module, NORMS)
            for param in module.parameters(recurse=False)
        } if 'norm' in rules else set()
        keys = [rule for rule in rules if rule not in ('flat', 'norm')]

        def no_decay(param_name: str, param: nn.Parameter) -> bool:
            return (flat and param.ndim == 1) or id(param) in norm_params \
                or any(key in param_name for key in keys)

        return no_decay

    def add_params(self, params: List[dict], module: nn.Module,
                   **kwargs) -> None:
        if is_model_wrapper(module):
            module = module.module
        lr_scale = self._lr_scale_fn(getattr(module, 'backbone', None))
        is_no_decay = self._no_decay_fn(module)
        groups: Dict[str, dict] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            group_id, scale = lr_scale(name)
            no_decay = is_no_decay(name, param)
            group = f'layer_{group_id}_{"no_decay" if no_decay else "decay"}'
            if group not in groups:
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
