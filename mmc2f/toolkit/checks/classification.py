# Copyright (c) mmc2f contributors. All rights reserved.
"""A classification config's heads (and top-k) against its classes."""
import os
import os.path as osp
from typing import Any, Dict, Optional, Tuple

from mmengine.config import Config
from mmengine.fileio import list_from_file

from .datasets import classes_source, lazily_built, leaf_datasets, type_name
from .error import ConfigCheckError


def _classification_classes(
        where: str,
        dataset: Dict[str, Any]) -> Optional[Tuple[int, bool, str]]:
    """(count, exact, whence) of the classes an MMPretrain dataset reads:
    its ``metainfo.classes`` or its class's own (``ImageNet``'s 1000), else
    the sub-folders of a folder-layout set (exact), else the largest label
    of its annotation file plus one (a lower bound). Paths are the dataset's
    own (``ImageNet``'s ``split``: its folder or ``meta/SPLIT.txt``)."""
    from mmpretrain.datasets import CustomDataset
    from mmpretrain.registry import DATASETS
    built = lazily_built(dataset, DATASETS, CustomDataset)
    if built is None or not built.with_label:
        return None  # unlabelled images (ImageNet's test split) count none
    root = osp.normpath(built.img_prefix) if built.img_prefix else ''
    folders = None  # an annotation file, or images only: no class folders
    if not built.ann_file and root and osp.isdir(root):
        folders = sorted(d for d in os.listdir(root)
                         if osp.isdir(osp.join(root, d))) or None
    classes, whence = built.CLASSES, classes_source(dataset, built)
    # The class's own names without the folders seen: the labels may come
    # from a file (an ImageNet-type set of 21k classes), a lower bound.
    exact = folders is not None or whence == 'its metainfo.classes'
    if classes is not None:
        if folders is not None and len(folders) != len(classes):
            raise ConfigCheckError(
                f'{where} names {len(classes)} classes ({whence}), but {root} '
                f'has {len(folders)} class sub-folders {folders[:10]}: set '
                f'{where}.metainfo.classes to their {len(folders)} names, in '
                'this (sorted) order, which MMPretrain numbers them in')
        return len(classes), exact, whence
    if folders is not None:
        return len(folders), True, f'the sub-folders of {root}: {folders}'
    if not built.ann_file or not osp.isfile(built.ann_file):
        return None
    labels = [line.rsplit(' ', 1)[-1]
              for line in list_from_file(built.ann_file) if line.strip()]
    if not labels or not all(label.isdigit() for label in labels):
        return None
    top = max(map(int, labels))
    return top + 1, False, f'labels up to {top} in {built.ann_file}'


def check_classification_classes(cfg: Config) -> None:
    """ValueError where an MMPretrain config's head, data preprocessor
    (Mixup/CutMix targets) or top-k accuracy count other classes than the
    training data has: a 1000-class head trains silently on 3 folders, and
    the inferencer then fails on an index its classes lack."""
    if cfg.get('default_scope') != 'mmpretrain':
        return
    # Every dataset (each one's folders against its classes); the first
    # counted, the training set's, against the model.
    counted = [(where, found) for where, dataset in leaf_datasets(cfg)
               if (found := _classification_classes(where, dataset))]
    if not counted:
        return
    where, (count, exact, whence) = counted[0]
    model = cfg.get('model') or {}
    preprocessor_at = ('model.data_preprocessor'
                       if model.get('data_preprocessor') else
                       'data_preprocessor')
    preprocessor = model.get('data_preprocessor') or cfg.get(
        'data_preprocessor') or {}
    for place, value in (('model.head.num_classes',
                          (model.get('head') or {}).get('num_classes')),
                         (f'{preprocessor_at}.num_classes',
                          preprocessor.get('num_classes'))):
        if value is None or value == count or (not exact and value > count):
            continue
        raise ConfigCheckError(
            f'{place}={value}, but {where} has {count} classes ({whence}): '
            f'set model.head.num_classes={count} and '
            f'{preprocessor_at}.num_classes={count} (the Mixup/CutMix '
            'targets)')
    # Top-k of more scores than the head gives fails in the evaluator.
    limit = (model.get('head') or {}).get('num_classes') or (
        count if exact else None)
    for name in ('val_evaluator', 'test_evaluator'):
        evaluators = cfg.get(name) or []
        for evaluator in (evaluators if isinstance(evaluators, (list, tuple))
                          else [evaluators]):
            topk = evaluator.get('topk', ()) if isinstance(
                evaluator, dict) else ()
            topk = topk if isinstance(topk, (list, tuple)) else (topk, )
            if limit and topk and max(topk) > limit and type_name(
                    evaluator).endswith('Accuracy'):
                raise ConfigCheckError(
                    f'{name} has topk={tuple(topk)}, but the model scores '
                    f'{limit} classes: set {name}.topk to values up to '
                    f'{limit}, e.g. topk=(1, )')
