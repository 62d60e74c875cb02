# Copyright (c) mmc2f contributors. All rights reserved.
"""Conversion of the authors' released (timm-format) Conv2Former checkpoints
into mmpretrain-style ``backbone.* / neck.* / head.*`` state dicts."""
import io
import os.path as osp
import re
from collections import OrderedDict
from typing import Any, Dict, Optional, Tuple

import torch

from ..checkpoint import atomic_open, safe_torch_load
from ..checkpoint.fit import describe_differences

# Keys every released Conv2Former state dict has, whatever the variant.
EXPECTED_KEYS = (
    'downsample_layers.0.0.weight',
    'downsample_layers.0.6.weight',
    'downsample_layers.1.1.weight',
    'stages.0.0.attn.att.2.weight',
    'stages.0.0.mlp.fc1.weight',
)
# The released classifier: head.0 (1x1 conv to 1280), head.2 (LN), pred.
_HEAD_RENAMES = (
    (r'^head\.0\.', 'neck.conv.'),
    (r'^head\.2\.', 'neck.norm.'),
    (r'^pred\.', 'head.fc.'),
)
_BACKBONE = re.compile(r'^(downsample_layers|stages)\.')


class NotAConv2FormerCheckpoint(ValueError):
    """The file does not hold a released Conv2Former state dict."""


def select_state_dict(checkpoint: Any, filename: str,
                      ema: bool = False) -> Dict[str, torch.Tensor]:
    """The model weights in a released checkpoint: ``state_dict_ema`` when
    ``ema``, else ``state_dict``, ``model`` or the bare dict; a DDP
    ``module.`` prefix is removed."""
    if not isinstance(checkpoint, dict):
        raise NotAConv2FormerCheckpoint(
            f'{filename} holds a {type(checkpoint).__name__}, not a dict of '
            'weights')
    if ema:
        if 'state_dict_ema' not in checkpoint:
            raise NotAConv2FormerCheckpoint(
                f'--ema asked for the EMA weights but {filename} has no '
                f'"state_dict_ema" (top-level keys: {sorted(checkpoint)[:10]})')
        state_dict = checkpoint['state_dict_ema']
    else:
        state_dict = next((checkpoint[k] for k in ('state_dict', 'model')
                           if isinstance(checkpoint.get(k), dict)), checkpoint)
    return OrderedDict((k[len('module.'):] if k.startswith('module.') else k,
                        v) for k, v in state_dict.items())


def infer_arch(state_dict: Dict[str, torch.Tensor]) -> dict:
    """Channels, depths and kernel size read off the tensor shapes."""
    channels = [state_dict['downsample_layers.0.6.weight'].shape[0]] + [
        state_dict[f'downsample_layers.{i}.1.weight'].shape[0]
        for i in (1, 2, 3)
    ]
    depths = [
        1 + max(
            int(m.group(1)) for k in state_dict
            for m in [re.match(rf'stages\.{i}\.(\d+)\.', k)] if m)
        for i in range(4)
    ]
    kernel_size = state_dict['stages.0.0.attn.att.2.weight'].shape[-1]
    return dict(channels=channels, depths=depths, kernel_size=kernel_size)


def convert_state_dict(
        state_dict: Dict[str, torch.Tensor],
        filename: str = '<state dict>'
) -> Tuple['OrderedDict[str, torch.Tensor]', dict]:
    """Rename a released state dict to mmc2f's ImageNet classifier.

    Returns:
        tuple: The renamed state dict and the inferred arch dict.

    Raises:
        NotAConv2FormerCheckpoint: Expected keys are absent, or some keys
            would be dropped by the conversion.
    """
    missing = [k for k in EXPECTED_KEYS if k not in state_dict]
    if missing:
        raise NotAConv2FormerCheckpoint(
            f'{filename} does not look like a Conv2Former checkpoint: it '
            f'lacks {missing}. Expected the released keys '
            f'{list(EXPECTED_KEYS)} (plus head.0/head.2/pred for the '
            f'classifier); its first keys are {list(state_dict)[:5]}')
    converted: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    unknown = []
    for key, value in state_dict.items():
        if _BACKBONE.match(key):
            converted['backbone.' + key] = value
            continue
        for pattern, repl in _HEAD_RENAMES:
            if re.match(pattern, key):
                converted[re.sub(pattern, repl, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise NotAConv2FormerCheckpoint(
            f'{filename} has keys the released Conv2Former does not have: '
            f'{unknown[:10]}{" ..." if len(unknown) > 10 else ""}')
    arch = infer_arch(state_dict)
    _check_complete(converted, arch, filename)
    return converted, arch


def _check_complete(converted: Dict[str, torch.Tensor], arch: dict,
                    filename: str) -> None:
    """NotAConv2FormerCheckpoint unless ``converted`` holds every tensor of
    the Conv2Former its shapes describe, and all of the classifier or none
    of it."""
    from ..models import Conv2Former
    with torch.device('meta'):  # the names and shapes, no memory
        model = Conv2Former(arch=arch, out_indices=(3, ))
    shapes = {f'backbone.{k}': v.shape for k, v in model.state_dict().items()}
    head = ('neck.conv.weight', 'neck.conv.bias', 'neck.norm.weight',
            'neck.norm.bias', 'head.fc.weight', 'head.fc.bias')
    if any(k in converted for k in head):
        shapes.update((k, None) for k in head)  # their sizes vary
    problems = describe_differences(shapes, converted)
    if problems:
        raise NotAConv2FormerCheckpoint(
            f'{filename} is incomplete for the Conv2Former its shapes describe '
            f'(channels {arch["channels"]}, depths {arch["depths"]}; tensors '
            f'named as converted): {problems}. Download the released file '
            'again')


def convert_checkpoint(src: str,
                       dst: str,
                       ema: bool = False,
                       meta: Optional[dict] = None) -> dict:
    """Read a released checkpoint, write an mmpretrain-style one.

    Returns:
        dict: The ``meta`` written (inferred arch, classifier classes or
        None for a file without the classifier, source, EMA flag).
    """
    if osp.isdir(dst):
        raise ValueError(f'{dst} is a folder: give the converted file\'s '
                         f'name, e.g. {osp.join(dst, "conv2former_mmc2f.pth")}')
    if osp.exists(dst) and osp.exists(src) and osp.samefile(src, dst):
        raise ValueError(f'{src} would be overwritten by its own conversion: '
                         'give another destination file')
    state_dict = select_state_dict(safe_torch_load(src), src, ema)
    converted, arch = convert_state_dict(state_dict, src)
    pred = state_dict.get('pred.weight')
    from ..version import __version__
    meta = dict(meta or {}, mmc2f_version=__version__, source=src, ema=ema,
                arch=arch,
                num_classes=None if pred is None else pred.shape[0])
    # Serialised first: torch's writer reports a full disk as a RuntimeError
    # of its own; the file write then raises atomic_open's OSError.
    data = io.BytesIO()
    torch.save(dict(state_dict=converted, meta=meta), data)
    with atomic_open(dst, then='run the conversion again') as f:
        f.write(data.getbuffer())
    return meta
