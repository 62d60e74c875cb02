# Copyright (c) mmc2f contributors. All rights reserved.
"""A built model checked against its config before any work starts.

A neck (or, without one, a decode head or classifier head) whose
``in_channels`` do not match the backbone's feature maps otherwise fails at
the first iteration, after the data has loaded, with a convolution's
"expected input[2, 72, 56, 56] to have 96 channels": the check names both
sides and the fix.
"""
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .error import ConfigCheckError

# Side of the image the backbone's channels are measured on: every Conv2Former
# stage is non-empty from 32 pixels on.
_PROBE_SIZE = 64


def feature_channels(backbone: nn.Module,
                     in_channels: int = 3) -> Optional[List[int]]:
    """The channels of the feature maps ``backbone`` returns, measured on one
    small blank image in eval mode (its modules' train/eval modes are put
    back after); None when it takes no such input or returns no maps."""
    param = next(backbone.parameters(), None)
    if param is None:
        return None
    modes = [(module, module.training) for module in backbone.modules()]
    backbone.eval()
    try:
        with torch.no_grad():
            outs = backbone(
                torch.zeros(1, in_channels, _PROBE_SIZE, _PROBE_SIZE,
                            device=param.device, dtype=param.dtype))
    except Exception:
        return None  # not a backbone of images: nothing to check here
    finally:
        for module, training in modes:
            module.training = training
    if isinstance(outs, torch.Tensor):
        outs = (outs, )
    if not all(isinstance(o, torch.Tensor) and o.dim() >= 2 for o in outs):
        return None
    return [o.shape[1] for o in outs]


def _consumers(model_cfg: Any) -> Iterator[Tuple[str, dict]]:
    """The config entries that take the backbone's feature maps: the
    (first) neck, else the decode and auxiliary heads (mmseg) or the head
    (mmpretrain)."""
    neck = model_cfg.get('neck')
    if neck:
        yield 'model.neck', neck[0] if isinstance(neck, list) else neck
        return
    for key in ('decode_head', 'auxiliary_head', 'head'):
        heads = model_cfg.get(key)
        if isinstance(heads, dict):
            yield f'model.{key}', heads
        elif isinstance(heads, (list, tuple)):
            for i, head in enumerate(heads):
                yield f'model.{key}[{i}]', head


def _expected(channels: List[int], declared: Any,
              index: Any) -> Optional[Any]:
    """What ``in_channels`` should be for these backbone channels, as
    OpenMMLab modules read them: a list takes every map (or those of a list
    ``in_index``), a number the last map (or that of ``in_index``)."""
    if isinstance(declared, Sequence):
        if index is None:
            return list(channels)
        if isinstance(index, Sequence):
            return [channels[i] for i in index]
        return None
    return channels[-1 if index is None else index]


def check_feature_channels(model_cfg: Any, model: nn.Module) -> None:
    """Raise if the neck's (or heads') ``in_channels`` in ``model_cfg`` do
    not match the feature maps of the built ``model``'s backbone.

    Raises:
        ValueError: Naming the config key, what it says, what the backbone
            gives, and the value to set.
    """
    model = getattr(model, 'module', model)  # a DDP wrapper
    backbone = getattr(model, 'backbone', None)
    if backbone is None:
        return
    channels = feature_channels(
        backbone, model_cfg.get('backbone', {}).get('in_channels', 3))
    if channels is None:
        return
    for key, cfg in _consumers(model_cfg):
        declared, index = cfg.get('in_channels'), cfg.get('in_index')
        if declared is None:
            continue
        declared = list(declared) if isinstance(declared, Sequence) \
            else declared
        try:
            expected = _expected(channels, declared, index)
        except IndexError:
            raise ConfigCheckError(
                f'{key}.in_index={index} selects feature maps that the '
                f'backbone {type(backbone).__name__} does not give: it gives '
                f'{len(channels)} maps, of {channels} channels (its '
                'out_indices)') from None
        if expected is not None and expected != declared:
            raise ConfigCheckError(
                f'{key}.in_channels={declared} does not match the backbone: '
                f'{type(backbone).__name__} gives {len(channels)} feature '
                f'maps of {channels} channels. Set {key}.in_channels='
                f'{expected}, or change the backbone (arch, out_indices) '
                f'to what {key} expects')
