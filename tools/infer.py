# Copyright (c) mmc2f contributors. All rights reserved.
"""Run images through a trained model of any mmc2f config (detection,
segmentation or classification) with the library's own inferencer, and save
the drawn pictures and the predictions.

    python tools/infer.py IMAGE_OR_DIR CONFIG CHECKPOINT [--out-dir DIR]
        [--device DEV] [--score-thr T] [--cfg-options k=v ...]

The inferencer follows the config's ``default_scope``: MMDetection's
``DetInferencer``, MMSegmentation's ``MMSegInferencer`` or MMPretrain's
``ImageClassificationInferencer``. For each image ``NAME.EXT`` it writes
``OUT_DIR/vis/NAME.png`` (the predictions drawn on the image) and
``OUT_DIR/preds/NAME.json``:

* detection: ``labels``, ``scores``, ``bboxes`` (x1, y1, x2, y2 in pixels),
  ``masks`` (COCO compressed RLE) as ``DetInferencer`` gives them, for every
  prediction (``--score-thr`` only limits what is drawn), and
  ``label_names``;
* segmentation: ``height``, ``width`` and one entry per class present in the
  label map (``label``, ``label_name``, ``area`` in pixels, ``rle``: its mask
  as COCO uncompressed RLE, which ``pycocotools.mask.frPyObjects`` reads);
* classification: ``pred_label``, ``pred_score``, ``pred_class`` and
  ``pred_scores`` (all classes).

Classes are named as the checkpoint names them (tools/train.py saves its
dataset's names), else as the config's test dataset does; a class beyond
the names, by its number.

A file that cannot be decoded (truncated, or not an image), or whose
prediction fails (an image too small for the model, say), is skipped with its
reason and named at the end; the others are done, and the exit status is 1.
"""
import argparse
import json
import os
import os.path as osp
import sys
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple

import mmcv
import numpy as np
import torch
from mmengine.config import Config, DictAction

from mmc2f.checkpoint import CheckpointLoadError, check_trained_checkpoint
from mmc2f.toolkit.checks import dataset_metainfo
from mmc2f.toolkit.cli import config_scope

# A folder's files taken as images: formats that OpenCV, which the
# inferencers decode with, reads (GIF since 4.7). A multi-page TIFF or an
# animated GIF is predicted and drawn on its first frame, as OpenCV reads it.
IMAGE_EXTS = ('.jpg', '.jpeg', '.jpe', '.jfif', '.png', '.bmp', '.tif',
              '.tiff', '.webp', '.gif')
DEFAULT_SCORE_THR = 0.3  # DetInferencer's

# The RGB picture, the JSON dict and a one-line summary of one image.
Prediction = Tuple[np.ndarray, Dict[str, Any], str]
Infer = Callable[[str], Prediction]


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Draw and save the predictions of a model on images')
    parser.add_argument('inputs', help='an image file or a folder of images')
    parser.add_argument('config', help='config file (detection, '
                        'segmentation or classification)')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out-dir', default='outputs/infer',
                        help='where vis/ and preds/ are written')
    parser.add_argument('--device', default=None,
                        help="e.g. 'cpu' or 'cuda:0' (default: a GPU when "
                        'there is one)')
    parser.add_argument(
        '--score-thr', type=float, default=None,
        help='detection only: draw the instances scoring at least this '
        f'(default {DEFAULT_SCORE_THR})')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries, e.g. '
        "model.test_cfg.rcnn.score_thr=0.1")
    args = parser.parse_args(argv)
    if args.score_thr is not None and not 0 <= args.score_thr <= 1:
        parser.error(f'--score-thr must be in [0, 1], got {args.score_thr}')
    for name in ('config', 'checkpoint'):
        if not osp.isfile(getattr(args, name)):
            parser.error(f'{name} {getattr(args, name)!r} is not a file')
    return args


def list_images(path: str) -> List[str]:
    """The image itself, or the image files directly inside a folder
    (sorted; hidden files, e.g. macOS's ``._photo.jpg``, left out)."""
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise FileNotFoundError(f'{path!r} is neither an image file nor a '
                                'folder')
    images = sorted(
        osp.join(path, name) for name in os.listdir(path)
        if name.lower().endswith(IMAGE_EXTS) and not name.startswith('.')
        and osp.isfile(osp.join(path, name)))
    if not images:
        raise FileNotFoundError(f'no image ({", ".join(IMAGE_EXTS)}) in the '
                                f'folder {path!r} (sub-folders are not '
                                'searched)')
    # Outputs are named by the file name without its extension.
    stems = [osp.splitext(osp.basename(image))[0] for image in images]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise ValueError(f'{path!r} has several images named {clashes} '
                         '(other extensions): their outputs would overwrite '
                         'each other; move or rename all but one')
    return images


def decode_error(image: str) -> Optional[str]:
    """Why ``image`` cannot be decoded (None where it can), e.g. a
    truncated download or another file named like an image."""
    try:
        if mmcv.imread(image) is not None:
            return None
        return 'not an image that OpenCV can decode'
    except Exception as error:  # e.g. OpenCV's assertion on an empty file
        return f'{type(error).__name__}: {error}'.strip()


def uncompressed_rle(mask: np.ndarray) -> Dict[str, list]:
    """COCO's uncompressed RLE of a binary mask: run lengths over the
    column-major pixels, starting with a run of zeros."""
    flat = mask.ravel(order='F').astype(np.int8)
    bounds = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], bounds, [flat.size]])).tolist()
    if flat.size and flat[0]:
        counts.insert(0, 0)
    return {'size': list(mask.shape), 'counts': counts}


def class_meta(model: Any, cfg: Config,
               checkpoint_meta: Dict[str, Any]) -> Dict[str, list]:
    """The names and colours of the classes the model predicts: those the
    checkpoint saved (tools/train.py saves its dataset's), else those of the
    config's test dataset, as tools/test.py names them (the inferencers fell
    back to COCO's or Cityscapes' names, or none). A class beyond them (a
    head for more classes than names) is named by its number, with a
    colour of its own."""
    meta = checkpoint_meta.get('dataset_meta') or {}
    if not meta.get('classes'):
        meta = dataset_metainfo(cfg)
    names = [str(name) for name in meta.get('classes') or ()]
    count = max([len(names)] + [
        m.num_classes for m in model.modules()
        if isinstance(getattr(m, 'num_classes', None), int)
    ])
    palette = [tuple(map(int, c)) for c in meta.get('palette') or ()][:count]
    colours = np.random.default_rng(0).integers(0, 256, (count, 3)).tolist()
    return dict(classes=names + [str(i) for i in range(len(names), count)],
                palette=palette + [tuple(c) for c in colours[len(palette):]])


def detector(cfg: Config, args: argparse.Namespace) -> Infer:
    from mmdet.apis import DetInferencer
    inferencer = DetInferencer(cfg, args.checkpoint, device=args.device)
    inferencer.show_progress = False  # the tool prints a line per image
    meta = class_meta(inferencer.model, cfg, check_trained_checkpoint(
        inferencer.model, args.checkpoint))
    # Its visualizer draws with the model's meta, read when it was built.
    inferencer.model.dataset_meta = inferencer.visualizer.dataset_meta = meta
    classes = meta['classes']
    thr = DEFAULT_SCORE_THR if args.score_thr is None else args.score_thr

    def infer(image: str) -> Prediction:
        out = inferencer(image, return_vis=True, pred_score_thr=thr,
                         no_save_vis=True, no_save_pred=True)
        pred = out['predictions'][0]
        pred['label_names'] = [classes[i] for i in pred['labels']]
        drawn = sum(score >= thr for score in pred['scores'])
        return (out['visualization'][0], pred,
                f"{len(pred['labels'])} instances, {drawn} scoring >= {thr}")

    return infer


# The most bytes of class scores upsampled at once to a photograph's size.
SCORES_AT_ONCE = 1 << 30


def upsample_scores_in_groups(model: Any,
                              budget: int = SCORES_AT_ONCE) -> None:
    """Make the segmentor's ``postprocess_result`` upsample its class scores
    to the image's size a group of classes at a time, keeping the running
    best: the same label map as MMSegmentation's (its own steps per group;
    the first of equal scores wins, as in ``argmax``), in ``budget`` bytes
    where it would take classes x pixels x 4 (14 GB for ADE20k's 150 classes
    on a 24-megapixel photo). The full-size scores (``seg_logits``), which
    the inferencer does not use, are not kept then."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    original = model.postprocess_result

    def postprocess_result(seg_logits, data_samples=None):
        classes = seg_logits.shape[1]
        pixels = max((int(np.prod(s.metainfo['ori_shape'][:2]))
                      for s in data_samples or []), default=0)
        group = max(budget // max(pixels * seg_logits.element_size(), 1), 1)
        if classes == 1 or not data_samples or group >= classes:
            return original(seg_logits, data_samples)
        best: List[Any] = [None] * len(data_samples)
        labels: List[Any] = [None] * len(data_samples)
        for start in range(0, classes, group):
            parts = original(
                seg_logits[:, start:start + group],
                [SegDataSample(metainfo=s.metainfo) for s in data_samples])
            for i, part in enumerate(parts):
                score, label = part.seg_logits.data.max(dim=0)
                if best[i] is None:
                    best[i], labels[i] = score, label
                else:
                    better = score > best[i]
                    best[i] = torch.where(better, score, best[i])
                    labels[i] = torch.where(better, label + start, labels[i])
        for sample, label in zip(data_samples, labels):
            sample.set_data({'pred_sem_seg': PixelData(data=label[None])})
        return data_samples

    model.postprocess_result = postprocess_result


def segmentor(cfg: Config, args: argparse.Namespace) -> Infer:
    from mmseg.apis import MMSegInferencer
    inferencer = MMSegInferencer(cfg, args.checkpoint, device=args.device)
    inferencer.show_progress = False  # the tool prints a line per image
    upsample_scores_in_groups(inferencer.model)
    meta = class_meta(inferencer.model, cfg, check_trained_checkpoint(
        inferencer.model, args.checkpoint))
    inferencer.model.dataset_meta = meta
    # Its visualizer draws with Cityscapes' names and colours unless told.
    inferencer.visualizer.set_dataset_meta(meta['classes'], meta['palette'])
    classes = meta['classes']

    def infer(image: str) -> Prediction:
        out = inferencer(image, return_vis=True)
        label_map = out['predictions']
        segments = []
        for label in np.unique(label_map).tolist():
            mask = label_map == label
            segments.append(
                dict(label=label, label_name=classes[label],
                     area=int(mask.sum()), rle=uncompressed_rle(mask)))
        height, width = label_map.shape
        largest = sorted(segments, key=lambda s: -s['area'])[:3]
        return (out['visualization'],
                dict(height=height, width=width, segments=segments),
                'largest classes: ' +
                ', '.join(s['label_name'] for s in largest))

    return infer


def classifier(cfg: Config, args: argparse.Namespace) -> Infer:
    from mmengine.registry import init_default_scope
    from mmpretrain.apis import ImageClassificationInferencer
    from mmpretrain.visualization import UniversalVisualizer

    # Unlike the other two, it builds its pipeline in the current default
    # scope, which another inferencer in this process may have set.
    init_default_scope('mmpretrain')
    inferencer = ImageClassificationInferencer(cfg, args.checkpoint,
                                               device=args.device)
    inferencer.show_progress = False  # the tool prints a line per image
    inferencer.classes = class_meta(
        inferencer.model, cfg,
        check_trained_checkpoint(inferencer.model, args.checkpoint))['classes']
    # The inferencer draws only into files (show_dir): its visualizer is
    # called directly, as it does, with the picture returned.
    visualizer = inferencer.visualizer or UniversalVisualizer()

    def infer(image: str) -> Prediction:
        sample = inferencer(image, return_datasamples=True)[0]
        pred = inferencer.postprocess([sample], None)[0]
        pred['pred_scores'] = pred['pred_scores'].tolist()
        picture = visualizer.visualize_cls(
            mmcv.imread(image, channel_order='rgb'), sample,
            classes=inferencer.classes, draw_gt=False)
        return (picture, pred, f"{pred.get('pred_class', pred['pred_label'])}"
                f" ({pred['pred_score']:.2f})")

    return infer


# Per default_scope: the inferencer, the task's name in the JSON.
TASKS: Dict[str, Tuple[Callable[[Config, argparse.Namespace], Infer],
                      str]] = {
    'mmdet': (detector, 'detection'),
    'mmseg': (segmentor, 'segmentation'),
    'mmpretrain': (classifier, 'classification'),
}


def load_config(args: argparse.Namespace) -> Config:
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    scope = config_scope(cfg, args.config)
    if args.score_thr is not None and scope != 'mmdet':
        raise ValueError(f'--score-thr applies to detection configs; '
                         f'{args.config} is a {TASKS[scope][1]} config')
    if scope == 'mmpretrain' and cfg.model.type != 'ImageClassifier':
        raise ValueError(f'{args.config} builds a {cfg.model.type}; '
                         'tools/infer.py classifies with ImageClassifier '
                         'configs only')
    return cfg


def main(argv: Optional[List[str]] = None) -> int:
    """The exit status: 1 where an image was skipped (the others are done),
    else 0."""
    args = parse_args(argv)
    images = list_images(args.inputs)
    cfg = load_config(args)
    build, task = TASKS[cfg.default_scope]
    infer = build(cfg, args)
    vis_dir = osp.join(args.out_dir, 'vis')
    pred_dir = osp.join(args.out_dir, 'preds')
    os.makedirs(vis_dir, exist_ok=True)
    os.makedirs(pred_dir, exist_ok=True)
    skipped = []
    first_failure = ''
    for image in images:
        error = decode_error(image)
        if not error:
            try:
                picture, pred, line = infer(image)
            except Exception as failure:  # noqa: B902 one image's, not all
                error = (f'its prediction failed: '
                         f'{type(failure).__name__}: {failure}')
                first_failure = first_failure or traceback.format_exc()
        if error:
            print(f'{image}: skipped, {error}', file=sys.stderr)
            skipped.append(image)
            continue
        stem = osp.splitext(osp.basename(image))[0]
        mmcv.imwrite(picture[..., ::-1], osp.join(vis_dir, stem + '.png'))
        with open(osp.join(pred_dir, stem + '.json'), 'w') as f:
            json.dump(dict(image=image, task=task, **pred), f)
        print(f'{image}: {line}')
    print(f'{len(images) - len(skipped)} image(s): pictures in {vis_dir}, '
          f'predictions in {pred_dir}')
    if skipped:
        print(f'{len(skipped)} file(s) could not be read or predicted and '
              f'were skipped: {skipped}', file=sys.stderr)
    if first_failure and len(skipped) == len(images):
        # Nothing predicted: a fault of the model or the set-up, not of one
        # image; where it arose.
        print(f'No image was predicted; the first failure:\n{first_failure}',
              file=sys.stderr)
    return int(bool(skipped))


if __name__ == '__main__':
    try:
        sys.exit(main())
    except (FileNotFoundError, ValueError, CheckpointLoadError) as error:
        sys.exit(f'error: {error}')
