# Copyright (c) mmc2f contributors. All rights reserved.
"""A detection config's ``classes`` against its COCO-format annotation
files and its heads.

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
import json
import os.path as osp
from typing import Any, Dict, Iterator, List, Tuple

from mmengine.config import Config

from .datasets import (dataset_class, leaf_datasets, read_classes, spread,
                       transforms_of)
from .error import ConfigCheckError

# The RoI heads whose num_classes counts the dataset's (thing) classes; other
# heads' num_classes may count something else (e.g. text tokens).
_HEADS = ('bbox_head', 'mask_head', 'point_head')


def _is_coco(dataset: Dict[str, Any]) -> bool:
    from mmdet.datasets import CocoDataset
    from mmdet.registry import DATASETS
    return dataset_class(dataset, DATASETS, CocoDataset) is not None


def _read_coco(path: str) -> Dict[str, Any]:
    with open(path) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as error:
            raise ConfigCheckError(
                f'{path} is not valid JSON: {error}') from None
    if not isinstance(data, dict) or not isinstance(
            data.get('categories'), list):
        raise ConfigCheckError(f'{path} has no "categories" list: it is not '
                               'a COCO-format annotation file')
    return data


def _category_names(data: Dict[str, Any]) -> List[str]:
    return [str(category.get('name')) for category in data['categories']]


def _loads_masks(dataset: Dict[str, Any]) -> bool:
    return any(t.get('with_mask')
               for _, t in transforms_of(dataset, 'LoadAnnotations'))


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
        raise ConfigCheckError(
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
        raise ConfigCheckError(
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
    loaders = transforms_of(dataset, 'LoadImageFromFile')
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
    for info in spread(data.get('images') or [], _IMAGES_OPENED):
        file = osp.join(folder, str(info.get('file_name', '')))
        try:
            with Image.open(file) as image:
                orientation = image.getexif().get(0x0112, 1)
                width, height = image.size
        except OSError:  # missing or unreadable: the dataset says so
            continue
        if orientation in _TURNED and width != height and (
                info['width'], info['height']) == (width, height):
            raise ConfigCheckError(
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
        raise ConfigCheckError(
            f'{path} has several categories named {twice}: give each '
            'category of the file its own name')
    missing = [c for c in classes if c not in names]
    if missing:
        raise ConfigCheckError(
            f'{where}.metainfo.classes names {missing}, which {path} does '
            f'not have: its categories are {names}. Set classes to names of '
            'its categories')
    in_file_order = [n for n in names if n in classes]
    if in_file_order != classes:
        raise ConfigCheckError(
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
    for where, dataset in leaf_datasets(cfg):
        metainfo = dataset.get('metainfo') or {}
        classes = read_classes(metainfo, 'classes')
        ann_file = dataset.get('ann_file')
        if classes is None or not isinstance(ann_file, str) \
                or not _is_coco(dataset):
            continue
        # A panoptic set's heads count its things, not its stuff.
        things = read_classes(metainfo, 'thing_classes')
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
                raise ConfigCheckError(
                    f'{path} has an entry of an unexpected form '
                    f'({type(error).__name__}: {error}): it is not a '
                    'well-formed COCO annotation file') from None
    if counted is None:
        return
    where, count = counted
    for place, value in _head_num_classes(cfg.model):
        if value != count:
            raise ConfigCheckError(
                f'{place}={value}, but {where}.metainfo has {count} (thing) '
                f'classes: set num_classes={count} in every head (e.g. '
                'num_classes=len(classes) in the config)')
