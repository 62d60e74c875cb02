# Copyright (c) mmc2f contributors. All rights reserved.
"""Small generated datasets in the COCO and ADE20k formats.

Images show a few filled shapes (rectangles, ellipses, triangles) on a noisy
background; each class has its own shape and colour family, so a detector or
segmenter can learn them in a few hundred iterations. They let the real
configs run end to end with nothing downloaded (tests, ``tools/demo.py``).
"""
import json
import os
import os.path as osp
from typing import Dict, List, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils

SHAPES = ('rectangle', 'ellipse', 'triangle')
# One hue per class, jittered per instance.
COLORS = ((220, 60, 60), (60, 200, 60), (60, 90, 230))


def _draw_instance(rng: np.random.Generator, size: Tuple[int, int],
                   label: int) -> Tuple[np.ndarray, List[List[float]]]:
    """A binary mask of one shape and, for polygon shapes, its polygon."""
    h, w = size
    side = rng.integers(min(h, w) // 5, min(h, w) // 2)
    cx = int(rng.integers(side // 2 + 1, w - side // 2 - 1))
    cy = int(rng.integers(side // 2 + 1, h - side // 2 - 1))
    mask = np.zeros(size, np.uint8)
    shape = SHAPES[label]
    if shape == 'ellipse':
        axes = (int(side // 2), int(side // 2 * rng.uniform(0.6, 1.0)))
        cv2.ellipse(mask, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360,
                    1, -1)
        return mask, []
    if shape == 'rectangle':
        half = side // 2
        pts = np.array([[cx - half, cy - half], [cx + half, cy - half],
                        [cx + half, cy + half], [cx - half, cy + half]])
    else:
        half = side // 2
        pts = np.array([[cx, cy - half], [cx + half, cy + half],
                        [cx - half, cy + half]])
    cv2.fillPoly(mask, [pts.astype(np.int32)], 1)
    return mask, [pts.astype(float).ravel().tolist()]


def _render(rng: np.random.Generator, size: Tuple[int, int],
            max_instances: int):
    """An image and its instances (label, mask, polygon), painted in order;
    later shapes occlude earlier ones, so masks are made disjoint."""
    h, w = size
    image = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
    instances = []
    occupied = np.zeros(size, np.uint8)
    for _ in range(int(rng.integers(1, max_instances + 1))):
        label = int(rng.integers(len(SHAPES)))
        mask, polygon = _draw_instance(rng, size, label)
        if (mask & occupied).any():
            continue  # keep instances apart: clean masks, easy learning
        occupied |= mask
        color = np.clip(np.array(COLORS[label]) + rng.integers(-25, 26, 3), 0,
                        255)
        image[mask.astype(bool)] = color.astype(np.uint8)
        instances.append((label, mask, polygon))
    return image, instances


def make_coco_shapes(root: str,
                     num_train: int = 64,
                     num_val: int = 16,
                     size: Tuple[int, int] = (128, 128),
                     max_instances: int = 3,
                     seed: int = 0,
                     masks: bool = True) -> Dict[str, str]:
    """Write a COCO-format instance segmentation set, or with
    ``masks=False`` a box-only detection set (no ``segmentation``).

    Layout: ``root/{train,val}/*.jpg`` and
    ``root/annotations/instances_{train,val}.json``. Rectangles and triangles
    are annotated as polygons, ellipses as compressed RLE.

    Returns:
        dict: ``data_root`` and, per split, the annotation file and image
        prefix relative to it.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    categories = [
        dict(id=i + 1, name=name, supercategory='shape')
        for i, name in enumerate(SHAPES)
    ]
    ann_id = 1
    for split, count in (('train', num_train), ('val', num_val)):
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, annotations = [], []
        for image_id in range(1, count + 1):
            image, instances = _render(rng, size, max_instances)
            file_name = f'{image_id:06d}.jpg'
            cv2.imwrite(osp.join(root, split, file_name),
                        cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            images.append(dict(id=image_id, file_name=file_name,
                               height=size[0], width=size[1]))
            for label, mask, polygon in instances:
                rle = mask_utils.encode(np.asfortranarray(mask))
                x, y, w, h = mask_utils.toBbox(rle).tolist()
                annotation = dict(id=ann_id, image_id=image_id,
                                  category_id=label + 1, bbox=[x, y, w, h],
                                  area=float(mask_utils.area(rle)),
                                  iscrowd=0)
                if masks:
                    annotation['segmentation'] = polygon or dict(
                        size=rle['size'], counts=rle['counts'].decode())
                annotations.append(annotation)
                ann_id += 1
        with open(osp.join(root, 'annotations', f'instances_{split}.json'),
                  'w') as f:
            json.dump(dict(images=images, annotations=annotations,
                           categories=categories), f)
    return dict(data_root=root,
                train_ann='annotations/instances_train.json',
                train_img='train/',
                val_ann='annotations/instances_val.json',
                val_img='val/')


def make_ade_shapes(root: str,
                    num_train: int = 64,
                    num_val: int = 16,
                    size: Tuple[int, int] = (128, 128),
                    max_instances: int = 4,
                    seed: int = 0) -> Dict[str, str]:
    """Write an ADE20k-format semantic segmentation set.

    Layout: ``root/images/{training,validation}/*.jpg`` and
    ``root/annotations/{training,validation}/*.png``. ADE20k's
    ``reduce_zero_label`` ignores label 0 and shifts the others down by one:
    the background is stored as 1 (ADE20k class 0, "wall") and shape ``k``
    as ``k + 2`` (class ``k + 1``), so a model must find the shapes'
    outlines, not only tell their colours apart.

    Returns:
        dict: ``data_root``.
    """
    rng = np.random.default_rng(seed)
    for split, count in (('training', num_train), ('validation', num_val)):
        os.makedirs(osp.join(root, 'images', split), exist_ok=True)
        os.makedirs(osp.join(root, 'annotations', split), exist_ok=True)
        for index in range(count):
            image, instances = _render(rng, size, max_instances)
            label_map = np.ones(size, np.uint8)
            for label, mask, _ in instances:
                label_map[mask.astype(bool)] = label + 2
            name = f'ADE_{split}_{index:08d}'
            cv2.imwrite(osp.join(root, 'images', split, name + '.jpg'),
                        cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(osp.join(root, 'annotations', split, name + '.png'),
                        label_map)
    return dict(data_root=root)
