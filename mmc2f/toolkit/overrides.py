# Copyright (c) mmc2f contributors. All rights reserved.
"""Command-line overrides that point a real config at a small generated
dataset and shrink its image scale and schedule, leaving the rest (model,
pipeline structure, optimiser, hooks) as the config has it.

They are derived from the loaded config rather than hard-coded, so the same
function serves Mask R-CNN and Cascade Mask R-CNN (three box heads), or any
UperNet config.
"""
from typing import Any, Dict, List, Sequence, Tuple, Union

from mmengine.config import Config

Overrides = Dict[str, Any]

# Tiny data need a short warm-up and a larger step than the 16-GPU recipe;
# there is no ImageNet checkpoint here, so backbones start from their init.
SHORT_RUN = {
    'model.backbone.init_cfg': None,
    'model.backbone.drop_path_rate': 0.0,
    'optim_wrapper.optimizer.lr': 2e-4,
    'param_scheduler.0.end': 20,
    'default_hooks.logger.interval': 10,
    'randomness.seed': 0,
}
# Narrower heads (the paper's are 256/1024 channels for COCO's 80 classes,
# 512 for ADE20k): on 2 CPU cores they, not the backbone, would dominate.
SMALL_MASK_RCNN = {
    'model.neck.out_channels': 128,
    'model.rpn_head.in_channels': 128,
    'model.rpn_head.feat_channels': 128,
    'model.roi_head.bbox_roi_extractor.out_channels': 128,
    'model.roi_head.bbox_head.in_channels': 128,
    'model.roi_head.bbox_head.fc_out_channels': 256,
    'model.roi_head.mask_roi_extractor.out_channels': 128,
    'model.roi_head.mask_head.in_channels': 128,
    'model.roi_head.mask_head.conv_out_channels': 128,
    # A few shapes per image: 128 sampled RoIs instead of 512.
    'model.train_cfg.rcnn.sampler.num': 128,
}
SMALL_UPERNET = {
    'model.backbone.arch': 'nano',
    'model.decode_head.in_channels': [64, 128, 256, 512],
    'model.decode_head.channels': 128,
    'model.auxiliary_head.in_channels': 256,
    'model.auxiliary_head.channels': 64,
}


def to_cli(overrides: Overrides) -> List[str]:
    """``--cfg-options`` arguments; values in Python literal syntax, which
    mmengine's ``DictAction`` parses back."""
    return [f'{key}={value!r}'.replace(' ', '') for key, value in
            overrides.items()]


def _scaled(scales: Sequence[Union[int, Sequence[int]]],
            factor: float) -> list:
    """Each scale, a size or one edge (a shortest-edge resize's), times
    ``factor`` and at least 32."""
    def edge(s: int) -> int:
        return max(int(s * factor), 32)

    return [edge(scale) if isinstance(scale, int) else tuple(map(edge, scale))
            for scale in scales]


def _scale_pipeline(pipeline: list, prefix: str, factor: float) -> Overrides:
    """Rescale every image size (resize scales, crop sizes) in a pipeline,
    keyed by list index as ``--cfg-options`` addresses it."""
    out: Overrides = {}

    def visit(node: Any, key: str) -> None:
        if isinstance(node, (list, tuple)):
            for i, child in enumerate(node):
                visit(child, f'{key}.{i}')
        elif isinstance(node, dict):
            for name in ('scale', 'crop_size'):
                if isinstance(node.get(name), (list, tuple)):
                    out[f'{key}.{name}'] = _scaled([node[name]], factor)[0]
            if isinstance(node.get('scales'), (list, tuple)):
                out[f'{key}.scales'] = _scaled(node['scales'], factor)
            for name in ('transforms', ):
                if name in node:
                    visit(node[name], f'{key}.{name}')

    visit(pipeline, prefix)
    return out


def scale_images(cfg: Config, factor: float) -> Overrides:
    """Every resize scale and crop size of the train/val/test pipelines
    multiplied by ``factor`` (at least 32 pixels), the data left as the
    config has it."""
    out: Overrides = {}
    for split in ('train', 'val', 'test'):
        key = f'{split}_dataloader.dataset'
        out.update(
            _scale_pipeline(cfg[f'{split}_dataloader'].dataset.pipeline,
                            f'{key}.pipeline', factor))
    return out


def schedulers(cfg: Config) -> List[Tuple[str, Any]]:
    """``(key, scheduler)`` of each of the config's ``param_scheduler``
    (one dict or a list of them), keyed as ``--cfg-options`` addresses
    it."""
    found = cfg.get('param_scheduler') or []
    if isinstance(found, dict):
        return [('param_scheduler', found)]
    return [(f'param_scheduler.{i}', s) for i, s in enumerate(found)]


def epoch_schedule(cfg: Config, max_epochs: int) -> Overrides:
    """The config's epoch-based schedule compressed to ``max_epochs``, with
    its learning-rate steps at the same fractions of training (the 3x
    schedule's epochs 27 and 33 of 36 become 18 and 22 of 24), and no
    validation (mmengine validates after the last epoch too, unless
    ``val_begin`` lies beyond it): the caller tests once."""
    out: Overrides = {
        'train_cfg.max_epochs': max_epochs,
        'train_cfg.val_begin': max_epochs + 1,
    }
    total = cfg.train_cfg.max_epochs
    for key, scheduler in schedulers(cfg):
        if 'milestones' in scheduler:
            out[f'{key}.milestones'] = [
                max(round(m * max_epochs / total), 1)
                for m in scheduler.milestones
            ]
    return out


def coco_overrides(cfg: Config, data: Dict[str, str], classes: Sequence[str],
                   scale_factor: float) -> Overrides:
    """Data paths, classes and image scale of an mmdet COCO config.

    Args:
        cfg: The loaded config.
        data: What
            :func:`~mmc2f.toolkit.synthetic_data.make_coco_shapes` returns.
        classes: The dataset's category names.
        scale_factor: Multiplies every resize scale and crop size.
    """
    out: Overrides = {}
    for split, ann, img in (('train', 'train_ann', 'train_img'),
                            ('val', 'val_ann', 'val_img'),
                            ('test', 'val_ann', 'val_img')):
        key = f'{split}_dataloader.dataset'
        out.update({
            f'{key}.data_root': data['data_root'],
            f'{key}.ann_file': data[ann],
            f'{key}.data_prefix.img': data[img],
            f'{key}.metainfo.classes': tuple(classes),
        })
    out.update(scale_images(cfg, scale_factor))
    for split in ('val', 'test'):
        out[f'{split}_evaluator.ann_file'] = (
            f"{data['data_root']}/{data['val_ann']}")
    # A two-stage detector's box and mask heads (None in a box-only one),
    # or a one-stage / DETR-style detector's head.
    roi_head = cfg.model.get('roi_head') or {}
    heads = {f'model.roi_head.{name}': roi_head.get(name)
             for name in ('bbox_head', 'mask_head')} if roi_head else {
                 'model.bbox_head': cfg.model.bbox_head}
    for key, head in heads.items():
        if isinstance(head, (list, tuple)):  # cascade stages
            for i in range(len(head)):
                out[f'{key}.{i}.num_classes'] = len(classes)
        elif head is not None:
            out[f'{key}.num_classes'] = len(classes)
    return out


def ade_overrides(cfg: Config, data_root: str,
                  scale_factor: float) -> Overrides:
    """Data paths, crop size and image scale of an mmseg ADE20k config (its
    150 classes are kept: the generated labels use the first few)."""
    out: Overrides = {}
    for split in ('train', 'val', 'test'):
        out[f'{split}_dataloader.dataset.data_root'] = data_root
    out.update(scale_images(cfg, scale_factor))
    crop = _scaled([cfg.crop_size], scale_factor)[0]
    out['model.data_preprocessor.size'] = crop
    if cfg.model.test_cfg.get('mode') == 'slide':  # else whole images
        out['model.test_cfg.crop_size'] = crop
        out['model.test_cfg.stride'] = _scaled([cfg.model.test_cfg.stride],
                                               scale_factor)[0]
    return out
