# Copyright (c) mmc2f contributors. All rights reserved.
"""Whether a checkpoint fits a model: the check before testing and
inference, and the pretrained-backbone load that refuses to leave it random."""
import logging
import os.path as osp
import re
from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch
from mmengine.logging import print_log

from .safe_load import _URL_START, CheckpointLoadError, MapLocation


def _weights_of(filename: str,
                map_location: MapLocation) -> Tuple[dict, dict]:
    """The weights of a checkpoint (its ``state_dict``, or the file itself)
    and its ``meta`` ({} where it has none), through every scheme's safe
    loader."""
    from mmengine.runner.checkpoint import CheckpointLoader
    checkpoint = CheckpointLoader.load_checkpoint(filename, map_location)
    state_dict = checkpoint.get('state_dict', checkpoint) \
        if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state_dict, dict):
        raise CheckpointLoadError(
            f'{filename} holds a {type(state_dict).__name__}, not weights')
    meta = checkpoint.get('meta') if state_dict is not checkpoint else None
    return state_dict, meta if isinstance(meta, dict) else {}


def shape_differences(
        shapes: Dict[str, Optional[torch.Size]],
        state_dict: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    """The keys of ``shapes`` that ``state_dict`` lacks, and ``'key: file S
    vs model S'`` for each it holds in another shape (a None shape takes
    any)."""
    missing = [k for k in shapes if k not in state_dict]
    mismatched = [
        f'{k}: file {tuple(getattr(state_dict[k], "shape", ()))} vs model '
        f'{tuple(shape)}' for k, shape in shapes.items()
        if shape is not None and k in state_dict
        and getattr(state_dict[k], 'shape', None) != shape
    ]
    return missing, mismatched


def describe_differences(shapes: Dict[str, Optional[torch.Size]],
                         state_dict: Dict[str, Any]) -> str:
    """What :func:`shape_differences` finds, in words ('' for nothing)."""
    missing, mismatched = shape_differences(shapes, state_dict)
    return '; '.join(
        ([f'{len(missing)} of the {len(shapes)} tensors are missing (e.g. '
          f'{missing[:3]})'] if missing else []) +
        ([f'{len(mismatched)} differ in shape (e.g. {mismatched[:3]})']
         if mismatched else []))


def check_trained_checkpoint(model: torch.nn.Module, filename: str) -> dict:
    """Raise CheckpointLoadError unless ``filename`` holds every tensor of
    ``model`` in its shape; else return the checkpoint's ``meta`` ({} where
    it has none: its ``dataset_meta`` names the classes), so that callers
    need not load the file again.

    Testing and inference load with mmengine's ``strict=False``, which only
    logs what it could not load: another config's checkpoint, or a released
    file not yet converted, would give the predictions of random weights.
    A wrapped model (distributed, test-time augmentation) is checked
    without its wrapper, as mmengine loads it.
    """
    while isinstance(getattr(model, 'module', None), torch.nn.Module):
        model = model.module
    weights, meta = _weights_of(filename, 'cpu')
    # mmengine's loader drops the prefix of a file saved from a wrapper.
    state_dict = {re.sub(r'^module\.', '', k): v for k, v in weights.items()}
    own = {
        k: v.shape
        for k, v in model.state_dict().items()
        if not k.endswith('num_batches_tracked')
    }
    problems = describe_differences(own, state_dict)
    if problems:
        raise CheckpointLoadError(
            f'{filename} is not a checkpoint of this {type(model).__name__}: '
            f'{problems}. Give the checkpoint that tools/train.py '
            'wrote for this config (for an ImageNet config, a released file '
            'converted by tools/model_converters/conv2former_to_mmc2f.py)')
    return meta


def load_pretrained(module: torch.nn.Module,
                    filename: str,
                    prefix: Optional[str] = None,
                    map_location: str = 'cpu') -> None:
    """Load a backbone's pretrained weights, refusing a load that would
    silently leave it random.

    Unlike mmengine's ``Pretrained`` init (which warns and goes on), a file
    with no key for this module, or with tensors of other shapes (another
    arch), raises; a partial load logs every missing and unexpected key.

    Args:
        module: The backbone.
        filename: Checkpoint path or URL.
        prefix: Keep only keys under this prefix (e.g. ``'backbone.'``),
            with the prefix removed.
        map_location: As for ``torch.load``.
    """
    if not _URL_START.match(filename) and not osp.exists(
            osp.expanduser(filename)):
        # The first run of a config whose ImageNet file is not there yet.
        raise FileNotFoundError(
            f'The pretrained backbone file {filename} does not exist: '
            'download the released ImageNet file of this arch (README: Model '
            'zoo) and convert it with '
            f'tools/model_converters/conv2former_to_mmc2f.py to {filename}, '
            'or train from scratch with --cfg-options '
            'model.backbone.init_cfg=None')
    state_dict, _ = _weights_of(filename, map_location)
    if prefix and not prefix.endswith('.'):
        prefix += '.'  # as mmengine's Pretrained init accepts 'backbone'
    # A whole model's file (a detector's, or an ImageNet classifier's) holds
    # the other parts too; loading its backbone is a normal use.
    others: Dict[str, int] = {}
    if prefix:
        found = {k[len(prefix):]: v for k, v in state_dict.items()
                 if k.startswith(prefix)}
        if not found:
            raise CheckpointLoadError(
                f'{filename} has no key starting with {prefix!r} (its keys '
                f'start {sorted(state_dict)[:3]}); convert released weights '
                'with tools/model_converters/conv2former_to_mmc2f.py, or set '
                'the init_cfg prefix to match the file')
        for key in state_dict:
            if not key.startswith(prefix):
                part = key.split('.', 1)[0]
                others[part] = others.get(part, 0) + 1
        state_dict = found
    own = module.state_dict()
    _, mismatched = shape_differences({k: v.shape
                                       for k, v in own.items()}, state_dict)
    if mismatched:
        raise CheckpointLoadError(
            f'{filename} is for another architecture than this '
            f'{type(module).__name__}; {len(mismatched)} tensors differ in '
            f'shape, e.g. {mismatched[:3]}')
    if not own.keys() & state_dict.keys():
        hint = _prefix_of(state_dict.keys(), own.keys())
        raise CheckpointLoadError(
            f'{filename} has no weight of this {type(module).__name__}: none '
            f'of its keys (e.g. {sorted(state_dict)[:3]}) is a parameter '
            f'name of the model (e.g. {sorted(own)[:3]})' +
            (f'; they are there under {hint!r}: set the init_cfg prefix to '
             f'{(prefix or "") + hint!r}' if hint else ''))
    missing, unexpected = module.load_state_dict(state_dict, strict=False)
    print_log(
        f'Loaded {len(own) - len(missing)}/{len(own)} tensors of '
        f'{type(module).__name__} from {filename}' +
        (f' (not loaded: the tensors outside {prefix!r}, {others})'
         if others else ''), logger='current')
    if missing or unexpected:
        print_log(
            f'Partial load from {filename}: missing in the file (kept at '
            f'their initialisation): {missing}; in the file but not in the '
            f'model (ignored): {unexpected}',
            logger='current',
            level=logging.WARNING)


def _prefix_of(keys: Iterable[str], names: Iterable[str]) -> Optional[str]:
    """The prefix under which ``keys`` hold some of ``names``
    (``'backbone.'`` for a detector's file and a backbone's names)."""
    names = set(names)
    for key in keys:
        parts = key.split('.')
        for i in range(1, len(parts)):
            if '.'.join(parts[i:]) in names:
                return '.'.join(parts[:i]) + '.'
    return None
