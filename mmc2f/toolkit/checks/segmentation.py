# Copyright (c) mmc2f contributors. All rights reserved.
"""A segmentation config's heads against its classes and a sample of its
label maps."""
import os.path as osp
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np
from mmengine.config import Config

from .datasets import classes_source, lazily_built, leaf_datasets, spread
from .error import ConfigCheckError

# Label maps read per dataset: a sample, enough for a mistake made in every
# file (colour maps, another numbering), in seconds on a large set.
_LABEL_MAPS_READ = 8


def _seg_heads(model: Dict[str, Any]) -> List[Tuple[str, Dict[str, Any]]]:
    """(place, config) of the heads that predict the dataset's classes: the
    decode head(s) and a single auxiliary head (in a list, auxiliary heads
    may predict other things, e.g. STDC's 2-class boundary head)."""
    decode, auxiliary = model.get('decode_head'), model.get('auxiliary_head')
    heads = ([(f'model.decode_head.{i}', h) for i, h in enumerate(decode)]
             if isinstance(decode, (list, tuple)) else
             [('model.decode_head', decode)])
    heads.append(('model.auxiliary_head', auxiliary))
    return [(where, head) for where, head in heads
            if isinstance(head, dict) and 'num_classes' in head]


def _label_map_pairs(built: Any) -> Iterator[str]:
    """The label maps of a sample of a built dataset's images, as
    MMSegmentation pairs them (the image's path, its suffix replaced)."""
    images = built.data_prefix.get('img_path', '')
    labels = built.data_prefix.get('seg_map_path', '')
    if built.ann_file or not (osp.isdir(images) and osp.isdir(labels)):
        return
    from mmengine.utils import scandir
    suffix = built.img_suffix
    files = sorted(scandir(images, suffix, recursive=True))
    for name in spread(files, _LABEL_MAPS_READ):
        path = osp.join(labels, name[:-len(suffix)] + built.seg_map_suffix)
        if osp.isfile(path):
            yield path


def _check_label_maps(head_at: str, head: Dict[str, Any],
                      built: Any) -> None:
    """Colour label maps, or labels beyond the head once MMSegmentation's
    LoadAnnotations has mapped them (reduce_zero_label, a class subset's
    label_map), in a sample of the training set."""
    num_classes = head['num_classes']
    ignore = head.get('ignore_index', 255)
    reduce, label_map = built.reduce_zero_label, built.label_map
    from PIL import Image
    for path in _label_map_pairs(built):
        with Image.open(path) as image:
            if image.mode != 'P' and len(image.getbands()) > 1:
                raise ConfigCheckError(
                    f'{path} is a {image.mode} colour image: MMSegmentation '
                    'reads label maps as one class index per pixel (a '
                    'grayscale or palette PNG). Convert the colours to '
                    'indices (a palette PNG keeps the colours for viewing)')
            labels = np.unique(np.asarray(image)).tolist()
        if reduce:  # 0 is ignored, the others shift down by one
            labels = [255 if v in (0, 255) else v - 1 for v in labels]
        if label_map:  # a subset of the classes: the others are ignored
            labels = [label_map.get(v, v) for v in labels]
        labels = [v for v in labels if v not in (255, ignore)]
        if labels and max(labels) >= num_classes:
            reduced = (' (after reduce_zero_label, which ignores 0: set it '
                       'False where 0 is a class)') if reduce else ''
            raise ConfigCheckError(
                f'{path} has label {max(labels)}{reduced}, but '
                f'{head_at}.num_classes={num_classes}: set num_classes to '
                'the number of classes in decode_head and auxiliary_head')


def check_segmentation_labels(cfg: Config) -> None:
    """ValueError where an MMSegmentation config's heads disagree on
    ``num_classes``, its datasets name another number of classes, or a
    sample of its label maps holds colours or labels beyond the heads (on a
    GPU, a device-side assert; on a CPU, "Target 3 is out of bounds")."""
    if cfg.get('default_scope') != 'mmseg':
        return
    heads = _seg_heads(cfg.get('model') or {})
    if not heads:
        return
    if len({h['num_classes'] for _, h in heads}) > 1:
        raise ConfigCheckError(
            'The heads count other classes: ' + ', '.join(
                f'{w}.num_classes={h["num_classes"]}' for w, h in heads) +
            ': set the same num_classes in each')
    (head_at, head), num_classes = heads[0], heads[0][1]['num_classes']
    from mmseg.datasets import BaseSegDataset
    from mmseg.registry import DATASETS
    for where, dataset in leaf_datasets(cfg):
        built = lazily_built(dataset, DATASETS, BaseSegDataset)
        if built is None:
            continue
        classes = built.metainfo.get('classes')
        # One class more than the heads: class 0 (VOC's background) left to
        # reduce_zero_label or a mask-classification head's "no object";
        # the label maps below still tell.
        if classes is not None and len(classes) not in (num_classes,
                                                        num_classes + 1):
            # Such a class takes only a subset of its own names.
            kind = type(built)
            other = (f" (and {where}.type='BaseSegDataset' for names that "
                     f"are not {kind.__name__}'s)"
                     if kind.METAINFO.get('classes') else '')
            raise ConfigCheckError(
                f'{where} has {len(classes)} classes '
                f'({classes_source(dataset, built)}), but '
                f'{head_at}.num_classes={num_classes}: set '
                f'{where}.metainfo.classes=(...) to the names of your '
                f'{num_classes} classes{other}, or num_classes={len(classes)}'
                ' in every head')
        if where.startswith('train_dataloader'):
            _check_label_maps(head_at, head, built)
