# Copyright (c) mmc2f contributors. All rights reserved.
"""A config's data checked before any work starts: its ``data_root`` and
``classes`` variables against what the dataloaders read; a detection
config's ``classes`` against its COCO-format annotation files and its heads;
a classifier's heads against its classes; a segmentor's heads against its
classes and a sample of its label maps.

A config variable is substituted where the file that uses it is read: a
child config or ``--cfg-options`` that sets ``data_root`` or ``classes``
anew changes the variable only, and the dataloaders go on reading the base
config's data, silently. That is an error here, naming the keys to set.

MMDetection's ``CocoDataset`` loads the categories that
``metainfo.classes`` names and numbers them in the annotation file's order,
yet calls label ``i`` ``classes[i]``. Classes listed in another order give
every prediction another class's name; a name the file lacks trains a class
that has no instance (with no name found, numpy's "need at least one array
to concatenate"); heads with another ``num_classes`` fail later or waste
outputs. None of these is an error there; each is one here, naming the file,
its categories and the fix.

The annotation files it reads are also checked for the fields
``CocoDataset`` takes unchecked: each image's size, and each annotation's
mask where the pipeline loads masks (box-only COCO for Mask R-CNN); and for
photos annotated at their stored size whose EXIF orientation the image
loader applies (a sample of 1000 per file).
"""
import ast
import copy
import importlib
import json
import os
import os.path as osp
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

import numpy as np
from mmengine.config import Config
from mmengine.fileio import list_from_file

_DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
# The RoI heads whose num_classes counts the dataset's (thing) classes; other
# heads' num_classes may count something else (e.g. text tokens).
_HEADS = ('bbox_head', 'mask_head', 'point_head')


def _leaf_datasets(cfg: Config) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """(its place in the config, its config) of each dataset the dataloaders
    read, inside wrappers (``dataset``) and concatenations (``datasets``)."""
    for name in _DATALOADERS:
        loader = cfg.get(name)
        stack = [(f'{name}.dataset', loader.get('dataset'))] if loader else []
        while stack:
            where, dataset = stack.pop()
            if not isinstance(dataset, dict):
                continue
            if isinstance(dataset.get('datasets'), (list, tuple)):
                # Dotted indices, as --cfg-options takes them; in order.
                stack += reversed([(f'{where}.datasets.{i}', d)
                                   for i, d in enumerate(dataset['datasets'])])
            elif isinstance(dataset.get('dataset'), dict):
                stack.append((f'{where}.dataset', dataset['dataset']))
            else:
                yield where, dataset


def _dataset_class(dataset: Dict[str, Any], registry: Any,
                   base: type) -> Optional[type]:
    """The dataset's class where it is a ``base``; None for other types, or
    for one the registry cannot import here (an optional package's)."""
    kind = dataset.get('type')
    if isinstance(kind, str):
        try:
            kind = registry.get(kind)
        except Exception:  # noqa: B902 the dataset reports it when built
            return None
    return kind if isinstance(kind, type) and issubclass(kind, base) else None


def _type_name(node: Dict[str, Any]) -> str:
    """A config node's ``type`` as a name (lazy configs give the class)."""
    kind = node.get('type')
    return kind.__name__ if isinstance(kind, type) else str(kind)


def _transforms(dataset: Dict[str, Any],
                name: str) -> List[Tuple[int, Dict[str, Any]]]:
    """(index, config) of the dataset's pipeline transforms of type
    ``name`` (scoped or not)."""
    return [(i, t) for i, t in enumerate(dataset.get('pipeline') or [])
            if isinstance(t, dict) and _type_name(t).endswith(name)]


def _spread(items: List[Any], count: int) -> List[Any]:
    """At most ``count`` of the items, evenly spaced."""
    return items[::max(len(items) // count, 1)][:count]


def _lazily_built(dataset: Dict[str, Any], registry: Any,
                  base: type) -> Optional[Any]:
    """The dataset built without reading its data (``lazy_init``, no
    pipeline): its paths, classes and label mapping as the library resolves
    them. None where it is not a ``base``, or cannot be built here (data an
    assertion wants, names its class lacks, a class file this machine cannot
    read): the dataset says why when it is built for real."""
    kind = _dataset_class(dataset, registry, base)
    if kind is None:
        return None
    arguments = {k: v for k, v in dataset.items()
                 if k not in ('type', '_scope_')}
    try:
        return kind(**dict(arguments, pipeline=[], lazy_init=True))
    except Exception:  # noqa: B902 see above
        return None


def dataset_metainfo(cfg: Config) -> Dict[str, Any]:
    """The metainfo (``classes``, ``palette``, ...) of the config's test
    dataset as its library resolves it (the config's ``metainfo``, else its
    class's), read without its data; {} where it has none or cannot be
    built here."""
    from mmengine.dataset import BaseDataset
    registry = importlib.import_module(
        f'{cfg.default_scope}.registry').DATASETS
    for where, dataset in _leaf_datasets(cfg):
        if where.startswith('test_dataloader'):
            built = _lazily_built(dataset, registry, BaseDataset)
            return {} if built is None else dict(built.metainfo)
    return {}


def _whence(dataset: Dict[str, Any], built: Any) -> str:
    """Where a built dataset's classes come from, for messages."""
    if (dataset.get('metainfo') or {}).get('classes') is not None:
        return 'its metainfo.classes'
    return f"{type(built).__name__}'s"


def _reads(variable: Any, value: Any) -> int:
    """How closely a dataset's ``value`` follows the config's ``variable``:
    0 not at all; for a root, the length of the variable it extends
    (``data_root + 'coco/'``), so the longer of two roots wins."""
    if isinstance(variable, str) and isinstance(value, str) and variable:
        root = osp.normpath(variable)
        return len(root) if osp.normpath(value) == root or \
            value.startswith(root + '/') else 0
    if isinstance(variable, (list, tuple)) and isinstance(
            value, (list, tuple)):
        return int(list(variable) == list(value))
    return int(variable is not None and variable == value)


# The variables that configs pass to their datasets: the dataset key that
# reads each, and what else the variable usually sets.
_VARIABLES = {
    'data_root': (('data_root', ), "the evaluators' ann_file"),
    'classes': (('metainfo', 'classes'), "the heads' num_classes"),
}


def _assigned(path: Optional[str]) -> Set[str]:
    """The names a Python config file assigns at its top level."""
    if not path or not path.endswith('.py') or not osp.isfile(path):
        return set()
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), path)
    return {target.id for node in tree.body
            if isinstance(node, (ast.Assign, ast.AnnAssign))
            for target in (node.targets if isinstance(node, ast.Assign)
                           else [node.target])
            if isinstance(target, ast.Name)}


def _base_value(path: str, variable: str) -> Any:
    """The variable's value in the ``_base_`` files of a Python config (at
    most one of them may set it), or None."""
    if not path.endswith('.py'):
        return None
    for base in Config._get_base_files(path):
        value = Config.fromfile(Config._get_cfg_path(base, path)[0]).get(
            variable)
        if value is not None:
            return value
    return None


def _readers(cfg: Config, key: Tuple[str, ...]) -> List[Tuple[str, Any]]:
    """(place, value) of ``key`` in each dataset that sets it."""
    found = []
    for where, dataset in _leaf_datasets(cfg):
        node: Any = dataset
        for part in key:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            found.append((f'{where}.{".".join(key)}', node))
    return found


def check_config_variables(cfg: Config,
                           options: Optional[Dict[str, Any]] = None) -> None:
    """ValueError where ``data_root`` or ``classes`` was set anew, by the
    config file over the value of its ``_base_`` or by ``options``
    (``--cfg-options``, not yet merged into ``cfg``), and no dataset follows
    it while datasets still read the old value: the variable was set after
    the file that used it was read.

    A flat file (no ``_base_`` that has the variable: a work_dir's dumped
    config, a whole copy edited by hand) is read with its datasets at once,
    so its variable is no mistake whatever they read; nor is a new value
    where no dataset reads the old one any more. A child config that sets
    the datasets' keys and not the variable, options that set the datasets'
    keys, and a child whose variable reaches some of the datasets, pass.
    """
    merged = copy.deepcopy(cfg)
    merged.merge_from_dict(options or {})
    for variable, (key, also) in _VARIABLES.items():
        new = merged.get(variable)
        if not new:
            continue
        if variable in (options or {}):
            old = cfg.get(variable)
        elif variable in _assigned(cfg.filename):
            old = _base_value(cfg.filename, variable)
            if old is None:
                continue  # no base had it: the file's datasets read it
        else:
            continue
        if old is not None and _reads(old, new) and _reads(new, old):
            continue  # set again to the same value
        readers = _readers(merged, key)
        # Where some dataset follows the new value, others may keep the old
        # one by design (a child that evaluates elsewhere).
        if any(_reads(new, v) > _reads(old, v) for _, v in readers):
            continue
        stale = [(w, v) for w, v in readers
                 if old is None or _reads(old, v)]
        if stale:
            places = ', '.join(f'{w}={v!r}' for w, v in stale)
            raise ValueError(
                f'The config sets {variable}={new!r}, but the dataloaders '
                f'read {places}: a config variable is substituted when the '
                'file that uses it is read, so a new value in a child config '
                'or --cfg-options does not reach them. Set it where it is '
                'used (--cfg-options '
                f'{" ".join(f"{w}=..." for w, _ in stale)}, and {also}), or '
                'edit a copy of the whole config')


def _is_coco(dataset: Dict[str, Any]) -> bool:
    from mmdet.datasets import CocoDataset
    from mmdet.registry import DATASETS
    return _dataset_class(dataset, DATASETS, CocoDataset) is not None


def _read_coco(path: str) -> Dict[str, Any]:
    with open(path) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f'{path} is not valid JSON: {error}') from None
    if not isinstance(data, dict) or not isinstance(
            data.get('categories'), list):
        raise ValueError(f'{path} has no "categories" list: it is not a '
                         'COCO-format annotation file')
    return data


def _category_names(data: Dict[str, Any]) -> List[str]:
    return [str(category.get('name')) for category in data['categories']]


def _loads_masks(dataset: Dict[str, Any]) -> bool:
    return any(t.get('with_mask')
               for _, t in _transforms(dataset, 'LoadAnnotations'))


# What a Mask R-CNN config's user with box-only data is pointed to.
BOX_ONLY_CONFIGS = {
    'finetune': 'configs/faster_rcnn/finetune/'
    'faster-rcnn_conv2former-t_fpn_amp-ms-crop-1x_custom-coco.py',
    'coco': 'configs/cascade_rcnn/'
    'cascade-rcnn_conv2former-t_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py',
}


def _check_annotations(where: str, path: str, data: Dict[str, Any],
                       classes: List[str], masks: bool) -> None:
    """The fields MMDetection's CocoDataset reads without a check: every
    image's size, and (for a pipeline that loads masks) the mask of every
    annotation it keeps, which else fail as KeyError: 'height' or 'mask'."""
    images = data.get('images') or []
    sizeless = [i.get('file_name', i.get('id')) for i in images
                if not all(isinstance(i.get(k), (int, float))
                           for k in ('height', 'width'))]
    if sizeless:
        raise ValueError(
            f'{len(sizeless)} of the {len(images)} images of {path} lack '
            f'"height" or "width" (e.g. {sizeless[:3]}): MMDetection reads '
            "both from the file; add each image's size in pixels")
    if not masks:
        return
    ids = {c.get('id') for c in data['categories']
           if str(c.get('name')) in classes}
    sizes = {i.get('id'): (i['width'], i['height']) for i in images}

    def is_kept(a: Dict[str, Any]) -> bool:
        """Whether CocoDataset.parse_data_info keeps the annotation."""
        box = a.get('bbox') or []
        if a.get('category_id') not in ids or a.get('ignore', False) or \
                a.get('area', 0) <= 0 or len(box) != 4 or min(box[2:]) < 1:
            return False
        width, height = sizes.get(a.get('image_id'), (0, 0))
        x, y, w, h = box
        return min(x + w, width) > max(x, 0) and min(y + h, height) > max(
            y, 0)

    kept = [a for a in data.get('annotations') or [] if is_kept(a)]
    maskless = [a.get('id') for a in kept if not a.get('segmentation')]
    if maskless:
        raise ValueError(
            f'{len(maskless)} of the {len(kept)} annotations of {path} have '
            f'no "segmentation" (e.g. ids {maskless[:3]}), but {where}\'s '
            'pipeline loads masks (LoadAnnotations with_mask=True) for the '
            "model's mask head: add the instance masks (polygons or RLE), or "
            'use a box-only detector config: '
            f'{BOX_ONLY_CONFIGS["finetune"]} on your own data (the Mask '
            'R-CNN fine-tuning config without masks), '
            f'{BOX_ONLY_CONFIGS["coco"]} on COCO')


# EXIF orientations that show the stored image turned by 90 degrees, and how
# many images' headers are read per annotation file (evenly spaced).
_TURNED = (5, 6, 7, 8)
_IMAGES_OPENED = 1000


def _check_orientation(where: str, path: str, data: Dict[str, Any],
                       dataset: Dict[str, Any]) -> None:
    """A photo whose EXIF orientation turns it, annotated at its stored size:
    the image loader turns it and the masks do not (BitmapMasks' "all input
    arrays must have the same shape", or silently misplaced boxes)."""
    loaders = _transforms(dataset, 'LoadImageFromFile')
    # mmcv applies the orientation for 'color' and 'grayscale' read by cv2 or
    # pillow; 'unchanged', '*_ignore_orientation' and turbojpeg leave it.
    if not loaders or any(
            t.get('color_type', 'color') not in ('color', 'grayscale')
            or t.get('imdecode_backend', 'cv2') not in ('cv2', 'pillow')
            for _, t in loaders):
        return
    prefix = dataset.get('data_prefix') or {}
    folder = osp.join(dataset.get('data_root') or '',
                      prefix.get('img', '') if isinstance(prefix, dict)
                      else '')
    from PIL import Image
    for info in _spread(data.get('images') or [], _IMAGES_OPENED):
        file = osp.join(folder, str(info.get('file_name', '')))
        try:
            with Image.open(file) as image:
                orientation = image.getexif().get(0x0112, 1)
                width, height = image.size
        except OSError:  # missing or unreadable: the dataset says so
            continue
        if orientation in _TURNED and width != height and (
                info['width'], info['height']) == (width, height):
            raise ValueError(
                f'{file} is stored {width}x{height} with EXIF orientation '
                f'{orientation}, which the image loader applies (it reads '
                f'{height}x{width}), but {path} gives it the stored size: '
                'its annotations are in the stored orientation. Set '
                "color_type='color_ignore_orientation' in every pipeline's "
                f'LoadImageFromFile (--cfg-options {where}.pipeline.'
                f'{loaders[0][0]}.color_type=color_ignore_orientation, and '
                'the same for the other dataloaders), or turn the images and '
                'their annotations upright')


def _check_order(where: str, classes: List[str], path: str,
                 names: List[str]) -> None:
    twice = sorted({n for n in names if n in classes and names.count(n) > 1})
    if twice:
        raise ValueError(f'{path} has several categories named {twice}: '
                         'give each category of the file its own name')
    missing = [c for c in classes if c not in names]
    if missing:
        raise ValueError(
            f'{where}.metainfo.classes names {missing}, which {path} does '
            f'not have: its categories are {names}. Set classes to names of '
            'its categories')
    in_file_order = [n for n in names if n in classes]
    if in_file_order != classes:
        raise ValueError(
            f'{where}.metainfo.classes lists {classes}, but {path} has them '
            f'in the order {in_file_order}: MMDetection numbers the labels '
            "in the file's order, so every prediction would carry another "
            f'class\'s name. Set classes = {tuple(in_file_order)}')


def _head_num_classes(model: Dict[str, Any]) -> Iterator[Tuple[str, int]]:
    """(place, value) of num_classes of a two-stage detector's box, mask and
    point heads (of every cascade stage), not the RPN's or a semantic
    head's."""
    stack = [('model.roi_head', model.get('roi_head'), False)]
    while stack:
        where, node, is_head = stack.pop()
        if isinstance(node, (list, tuple)):  # a cascade's stages
            stack += [(f'{where}.{i}', n, is_head)
                      for i, n in enumerate(node)]
        elif isinstance(node, dict):
            if is_head and isinstance(node.get('num_classes'), int):
                yield f'{where}.num_classes', node['num_classes']
            stack += [(f'{where}.{key}', value, True)
                      for key, value in node.items() if key in _HEADS]


def _classes(metainfo: Dict[str, Any], key: str) -> Optional[List[str]]:
    """``metainfo[key]`` as mmengine reads it: a sequence, or a file of one
    name per line; None where absent or not a file it can read here."""
    names = metainfo.get(key)
    if isinstance(names, str):
        return list_from_file(names) if osp.isfile(names) else None
    return None if names is None else list(names)


def check_detection_classes(cfg: Config) -> None:
    """ValueError where an MMDetection config's COCO-format datasets set
    ``metainfo.classes`` that their annotation files lack or order otherwise,
    or that the heads' ``num_classes`` does not count.

    Their annotation files are checked by :func:`_check_annotations` and
    :func:`_check_orientation` too.
    Datasets without ``classes`` of their own are not checked; an annotation
    file that is not a local file (yet) is not read (the dataset itself then
    says so).
    """
    if cfg.get('default_scope') != 'mmdet':
        return
    read: Dict[str, Dict[str, Any]] = {}
    counted = None
    for where, dataset in _leaf_datasets(cfg):
        metainfo = dataset.get('metainfo') or {}
        classes = _classes(metainfo, 'classes')
        ann_file = dataset.get('ann_file')
        if classes is None or not isinstance(ann_file, str) \
                or not _is_coco(dataset):
            continue
        # A panoptic set's heads count its things, not its stuff.
        things = _classes(metainfo, 'thing_classes')
        counted = counted or (where, len(classes if things is None else
                                         things))
        path = ann_file if osp.isabs(ann_file) else osp.join(
            dataset.get('data_root') or '', ann_file)
        if osp.isfile(path):
            if path not in read:
                read[path] = _read_coco(path)
            try:
                _check_order(where, classes, path,
                             _category_names(read[path]))
                _check_annotations(where, path, read[path], classes,
                                   _loads_masks(dataset))
                _check_orientation(where, path, read[path], dataset)
            except (AttributeError, IndexError, KeyError, TypeError) as error:
                raise ValueError(
                    f'{path} has an entry of an unexpected form '
                    f'({type(error).__name__}: {error}): it is not a '
                    'well-formed COCO annotation file') from None
    if counted is None:
        return
    where, count = counted
    for place, value in _head_num_classes(cfg.model):
        if value != count:
            raise ValueError(
                f'{place}={value}, but {where}.metainfo has {count} (thing) '
                f'classes: set num_classes={count} in every head (e.g. '
                'num_classes=len(classes) in the config)')


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
    built = _lazily_built(dataset, DATASETS, CustomDataset)
    if built is None or not built.with_label:
        return None  # unlabelled images (ImageNet's test split) count none
    root = osp.normpath(built.img_prefix) if built.img_prefix else ''
    folders = None  # an annotation file, or images only: no class folders
    if not built.ann_file and root and osp.isdir(root):
        folders = sorted(d for d in os.listdir(root)
                         if osp.isdir(osp.join(root, d))) or None
    classes, whence = built.CLASSES, _whence(dataset, built)
    # The class's own names without the folders seen: the labels may come
    # from a file (an ImageNet-type set of 21k classes), a lower bound.
    exact = folders is not None or whence == 'its metainfo.classes'
    if classes is not None:
        if folders is not None and len(folders) != len(classes):
            raise ValueError(
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
    counted = [(where, found) for where, dataset in _leaf_datasets(cfg)
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
        raise ValueError(
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
            if limit and topk and max(topk) > limit and _type_name(
                    evaluator).endswith('Accuracy'):
                raise ValueError(
                    f'{name} has topk={tuple(topk)}, but the model scores '
                    f'{limit} classes: set {name}.topk to values up to '
                    f'{limit}, e.g. topk=(1, )')


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
    for name in _spread(files, _LABEL_MAPS_READ):
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
                raise ValueError(
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
            raise ValueError(
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
        raise ValueError(
            'The heads count other classes: ' + ', '.join(
                f'{w}.num_classes={h["num_classes"]}' for w, h in heads) +
            ': set the same num_classes in each')
    (head_at, head), num_classes = heads[0], heads[0][1]['num_classes']
    from mmseg.datasets import BaseSegDataset
    from mmseg.registry import DATASETS
    for where, dataset in _leaf_datasets(cfg):
        built = _lazily_built(dataset, DATASETS, BaseSegDataset)
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
            raise ValueError(
                f'{where} has {len(classes)} classes '
                f'({_whence(dataset, built)}), but '
                f'{head_at}.num_classes={num_classes}: set '
                f'{where}.metainfo.classes=(...) to the names of your '
                f'{num_classes} classes{other}, or num_classes={len(classes)}'
                ' in every head')
        if where.startswith('train_dataloader'):
            _check_label_maps(head_at, head, built)
