# Copyright (c) mmc2f contributors. All rights reserved.
"""A two-stage detector's test-time forward in ONNX's standard ops.

It computes what MMDetection 3.3's ``predict`` computes with
``rescale=False`` (boxes and masks in the input tensor's pixels), for an RPN
and a ``StandardRoIHead`` or ``CascadeRoIHead`` with box and mask heads, and
returns MMDeploy's end2end outputs. It calls the detector's own modules and
MMDetection's functions; only the control flow that a trace would freeze
(per-level RoI assignment, score filters, NMS) is written anew, as tensor ops
whose sizes follow the data:

* RoIAlign exports as opset 16's ``RoiAlign`` (``half_pixel`` is what mmcv's
  ``aligned=True`` computes); mmcv 2.1's own symbolic writes opset 10's,
  whose ``Squeeze`` is invalid from opset 13;
* NMS exports as ``NonMaxSuppression``: the RPN's per-level NMS with
  mmcv's ``batched_nms`` offsets, the R-CNN's per class;
* masks are pasted by separable bilinear interpolation (two batched
  matmuls), what ``grid_sample`` computes in ``_do_paste_mask`` without its
  ``[K, H, W, 2]`` grid.
"""
from contextlib import contextmanager
from typing import Iterator, Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.ops.roi_align import RoIAlignFunction
from torch import Tensor

from .errors import ExportError


def _roi_align_symbolic(g, features, rois, output_size, spatial_scale,
                        sampling_ratio, pool_mode, aligned):
    batch_indices = g.op(
        'Cast',
        g.op('Gather', rois, g.op('Constant', value_t=torch.tensor(0)),
             axis_i=1),
        to_i=7)  # INT64
    boxes = g.op('Gather', rois,
                 g.op('Constant', value_t=torch.tensor([1, 2, 3, 4])),
                 axis_i=1)
    return g.op(
        'RoiAlign', features, boxes, batch_indices,
        output_height_i=output_size[0], output_width_i=output_size[1],
        spatial_scale_f=spatial_scale,
        sampling_ratio_i=max(0, sampling_ratio), mode_s=pool_mode,
        coordinate_transformation_mode_s='half_pixel'
        if aligned else 'output_half_pixel')


@contextmanager
def standard_roi_align() -> Iterator[None]:
    """mmcv's RoIAlign exports as opset 16's ``RoiAlign`` while this is
    active (see the module's docstring)."""
    original = RoIAlignFunction.__dict__['symbolic']
    RoIAlignFunction.symbolic = staticmethod(_roi_align_symbolic)
    try:
        yield
    finally:
        RoIAlignFunction.symbolic = original


class _NMS(torch.autograd.Function):
    """ONNX's ``NonMaxSuppression`` on boxes ``[B, N, 4]`` and scores
    ``[B, N]``, each row on its own: ``(row, index)`` of the kept boxes,
    row by row in descending score. Scores must exceed ``score_thr``; at
    most ``max_num`` per row. Eagerly (while tracing), mmcv's NMS."""

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, iou_thr: float,
                score_thr: float, max_num: int) -> Tensor:
        from mmcv.ops import nms
        kept = []
        for row, (b, s) in enumerate(zip(boxes, scores)):
            index = torch.nonzero(s > score_thr).view(-1)
            _, keep = nms(b[index], s[index], iou_thr)
            keep = index[keep[:max_num]]
            kept.append(torch.stack([torch.full_like(keep, row), keep], 1))
        return torch.cat(kept)

    @staticmethod
    def symbolic(g, boxes, scores, iou_thr, score_thr, max_num):
        scores = g.op('Unsqueeze', scores,
                      g.op('Constant', value_t=torch.tensor([1])))
        selected = g.op(
            'NonMaxSuppression', boxes, scores,
            g.op('Constant', value_t=torch.tensor([max_num])),
            g.op('Constant', value_t=torch.tensor([iou_thr])),
            g.op('Constant', value_t=torch.tensor([score_thr])))
        # (batch, class, box): class is always 0 here.
        return g.op('Gather', selected,
                    g.op('Constant', value_t=torch.tensor([0, 2])), axis_i=1)


def _topk_count(length: Tensor, k: int) -> Tensor:
    """``min(length, k)`` as a tensor, so that the graph's TopK follows the
    data; all of them for ``k <= 0``."""
    return length if k <= 0 else torch.clamp(length, max=k)


def _length(x: Tensor) -> Tensor:
    return torch._shape_as_tensor(x)[0]


def _check_nms(nms_cfg: dict, where: str) -> None:
    if nms_cfg.get('type', 'nms') != 'nms':
        raise ExportError(
            where, f"its NMS is {nms_cfg['type']!r}: only 'nms' exports to "
            "ONNX's NonMaxSuppression. Set it to dict(type='nms', "
            'iou_threshold=...) with --cfg-options')


class End2EndDetector(nn.Module):
    """The detector's forward for one image ``[1, 3, H, W]``: ``dets``
    ``[1, K, 5]`` (x1, y1, x2, y2, score), ``labels`` ``[1, K]`` and, with a
    mask head, ``masks`` ``[1, K, H, W]`` (bool, ``mask_thr_binary``)."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector
        self.check(detector)
        roi_head = detector.roi_head
        self.cascade = hasattr(roi_head, 'num_stages')
        listed = (lambda m: list(m)) if self.cascade else (lambda m: [m])
        self.bbox_extractors = listed(roi_head.bbox_roi_extractor)
        self.bbox_heads = listed(roi_head.bbox_head)
        self.with_mask = roi_head.with_mask
        if self.with_mask:
            self.mask_extractors = listed(roi_head.mask_roi_extractor)
            self.mask_heads = listed(roi_head.mask_head)
        self.rpn_cfg = detector.test_cfg.rpn
        self.rcnn_cfg = detector.test_cfg.rcnn

    @staticmethod
    def check(detector: nn.Module) -> None:
        """ExportError naming the module that this export does not cover."""
        from mmdet.models.dense_heads import RPNHead
        from mmdet.models.roi_heads import (CascadeRoIHead, FCNMaskHead,
                                            StandardRoIHead)
        from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
        from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
        name = type(detector).__name__
        if not (isinstance(getattr(detector, 'rpn_head', None), RPNHead)
                and type(detector.roi_head) in (StandardRoIHead,
                                                CascadeRoIHead)):
            raise ExportError(
                name, 'the export covers two-stage detectors (an RPNHead '
                'and a StandardRoIHead or CascadeRoIHead: Faster/Mask '
                'R-CNN, Cascade (Mask) R-CNN); its post-processing would '
                'need an ONNX version of its own')
        roi_head = detector.roi_head
        if roi_head.with_shared_head:
            raise ExportError(f'{name}.roi_head.shared_head',
                              'shared heads are not exported')
        modules = [('rpn_head.bbox_coder', detector.rpn_head.bbox_coder)]
        for key in ('bbox_head', 'bbox_roi_extractor', 'mask_head',
                    'mask_roi_extractor'):
            module = getattr(roi_head, key, None)
            for i, m in enumerate(module if isinstance(module, nn.ModuleList)
                                  else [module] if module else []):
                modules.append((f'roi_head.{key}[{i}]', m))
                if key == 'bbox_head':
                    modules.append((f'roi_head.{key}[{i}].bbox_coder',
                                    m.bbox_coder))
        for where, module in modules:
            reason = None
            if where.endswith('bbox_coder'):
                if not isinstance(module, DeltaXYWHBBoxCoder):
                    reason = 'only DeltaXYWHBBoxCoder is exported'
            elif 'extractor' in where:
                if not isinstance(module, SingleRoIExtractor):
                    reason = 'only SingleRoIExtractor is exported'
            elif 'bbox_head' in where and (module.custom_cls_channels
                                           or module.custom_activation):
                reason = 'custom classification activations are not exported'
            elif 'mask_head' in where and not isinstance(module, FCNMaskHead):
                reason = 'only FCNMaskHead (and its subclasses) is exported'
            if reason:
                raise ExportError(f'{name}.{where} ({type(module).__name__})',
                                  reason)
        _check_nms(detector.test_cfg.rpn.nms, f'{name}.test_cfg.rpn')
        _check_nms(detector.test_cfg.rcnn.nms, f'{name}.test_cfg.rcnn')

    def forward(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        # Tensors, not ints: the graph's sizes follow its input's.
        size = torch._shape_as_tensor(inputs)[2:]
        image_hw = size.to(inputs.dtype)
        feats = self.detector.extract_feat(inputs)
        rois = self.proposals(feats, image_hw)
        cls_score, boxes = self.refine(feats, rois, image_hw)
        dets, labels = self.multiclass_nms(cls_score, boxes)
        outputs = (dets[None], labels[None])
        if self.with_mask:
            outputs += (self.masks(feats, dets[:, :4], labels, size)[None], )
        return outputs

    @staticmethod
    def decode(coder: nn.Module, priors: Tensor, deltas: Tensor,
               image_hw: Tensor) -> Tensor:
        """``coder.decode(priors, deltas, max_shape=image)`` with the bound
        a tensor (the coder takes Python ints, fixed in a trace)."""
        from mmdet.models.task_modules.coders.delta_xywh_bbox_coder import \
            delta2bbox
        boxes = delta2bbox(priors, deltas, coder.means, coder.stds, None,
                           clip_border=False,
                           add_ctr_clamp=coder.add_ctr_clamp,
                           ctr_clamp=coder.ctr_clamp)
        if not coder.clip_border:
            return boxes
        shape = boxes.shape
        bound = image_hw.flip(0).repeat(2)  # (w, h, w, h)
        boxes = torch.min(boxes.reshape(-1, 4).clamp(min=0), bound)
        return boxes.reshape(shape)

    def proposals(self, feats: Sequence[Tensor], image_hw: Tensor) -> Tensor:
        """RPNHead.predict_by_feat for one image: RoIs ``[R, 5]``."""
        head, cfg = self.detector.rpn_head, self.rpn_cfg
        cls_scores, bbox_preds = head(feats)
        priors = head.prior_generator.grid_priors(
            [s.shape[-2:] for s in cls_scores], dtype=feats[0].dtype,
            device=feats[0].device)
        boxes, scores, levels = [], [], []
        for level, (score, delta, prior) in enumerate(
                zip(cls_scores, bbox_preds, priors)):
            score = score[0].permute(1, 2, 0)
            score = (score.reshape(-1).sigmoid() if head.use_sigmoid_cls
                     else score.reshape(-1, 2).softmax(1)[:, 0])
            score, index = score.topk(
                _topk_count(_length(score), cfg.get('nms_pre', -1)))
            delta = delta[0].permute(1, 2, 0).reshape(-1, 4)
            boxes.append(self.decode(head.bbox_coder, prior[index],
                                     delta[index], image_hw))
            scores.append(score)
            levels.append(torch.full_like(score, level))
        boxes, scores, levels = (torch.cat(boxes), torch.cat(scores),
                                 torch.cat(levels))
        min_size = cfg.get('min_bbox_size', -1)
        if min_size >= 0:
            size = boxes[:, 2:] - boxes[:, :2]
            valid = torch.nonzero((size > min_size).all(1)).view(-1)
            boxes, scores, levels = boxes[valid], scores[valid], levels[valid]
        # mmcv's batched_nms: one NMS, the levels' boxes moved apart.
        offsets = levels * (boxes.max() + 1)
        keep = _NMS.apply((boxes + offsets[:, None])[None], scores[None],
                          cfg.nms.iou_threshold, -1.0,
                          cfg.max_per_img)[:, 1]
        boxes = boxes[keep]
        return torch.cat([torch.zeros_like(boxes[:, :1]), boxes], 1)

    @staticmethod
    def roi_features(extractor: nn.Module, feats: Sequence[Tensor],
                     rois: Tensor) -> Tensor:
        """SingleRoIExtractor.forward, each level's RoIs gathered and the
        results put back in the RoIs' order: sizes follow the data, where
        the trace would fix its skip of empty levels and the shapes of its
        writes into a preallocated tensor."""
        feats = feats[:extractor.num_inputs]
        levels = extractor.map_roi_levels(rois, len(feats))
        indices, outs = [], []
        for level, (layer, feat) in enumerate(zip(extractor.roi_layers,
                                                  feats)):
            index = torch.nonzero(levels == level).view(-1)
            indices.append(index)
            outs.append(layer(feat, rois[index]))
        return torch.cat(outs)[torch.argsort(torch.cat(indices))]

    def refine(self, feats: Sequence[Tensor], rois: Tensor,
               image_hw: Tensor) -> Tuple[Tensor, Tensor]:
        """The R-CNN stages (CascadeRoIHead._refine_roi): the class logits
        (averaged over the stages) and the last stage's boxes per class
        ``[R, C * 4]``."""
        logits = []
        for stage, (extractor, head) in enumerate(
                zip(self.bbox_extractors, self.bbox_heads)):
            cls_score, bbox_pred = head(
                self.roi_features(extractor, feats, rois))
            logits.append(cls_score)
            if stage < len(self.bbox_heads) - 1:
                # BBoxHead.regress_by_class
                if not head.reg_class_agnostic:
                    label = cls_score[:, :-1].argmax(1, keepdim=True) * 4
                    bbox_pred = bbox_pred.gather(
                        1, label + torch.arange(4, device=label.device))
                rois = torch.cat([rois[:, :1], self.decode(
                    head.bbox_coder, rois[:, 1:], bbox_pred, image_hw)], 1)
        cls_score = sum(logits) / float(len(logits))
        return cls_score, self.decode(self.bbox_heads[-1].bbox_coder,
                                      rois[:, 1:], bbox_pred, image_hw)

    def multiclass_nms(self, cls_score: Tensor,
                       boxes: Tensor) -> Tuple[Tensor, Tensor]:
        """BBoxHead.predict_by_feat's ``multiclass_nms``: ``[K, 5]`` boxes
        and scores, ``[K]`` labels, in descending score."""
        cfg = self.rcnn_cfg
        scores = cls_score.softmax(-1)[:, :-1]
        num_classes = scores.shape[1]
        boxes = boxes.view(-1, boxes.shape[1] // 4, 4).expand(
            -1, num_classes, -1)
        # One NMS per class: the classes as ONNX's batches.
        selected = _NMS.apply(boxes.transpose(0, 1), scores.t(),
                              cfg.nms.iou_threshold, float(cfg.score_thr),
                              cfg.max_per_img)
        # (RoI, class) pairs as flat indices: one-dimensional gathers,
        # whatever their count.
        labels = selected[:, 0]
        flat = selected[:, 1] * num_classes + labels
        scores = scores.reshape(-1)[flat]
        scores, order = scores.topk(
            _topk_count(_length(scores), cfg.max_per_img))
        boxes = boxes.reshape(-1, 4)[flat[order]]
        return torch.cat([boxes, scores[:, None]], 1), labels[order]

    def masks(self, feats: Sequence[Tensor], boxes: Tensor, labels: Tensor,
              size: Tensor) -> Tensor:
        """FCNMaskHead.predict_by_feat without rescaling: the mask of each
        box's class (the cascade's stages averaged), pasted, thresholded."""
        rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], 1)
        probs = [
            head(self.roi_features(extractor, feats, rois)).sigmoid()
            for extractor, head in zip(self.mask_extractors, self.mask_heads)
        ]
        probs = probs[0] if len(probs) == 1 else torch.stack(probs).mean(0)
        channel = (torch.zeros_like(labels)
                   if self.mask_heads[-1].class_agnostic else labels)
        probs = probs.gather(1, channel.view(-1, 1, 1, 1).expand(
            -1, 1, *probs.shape[2:]))[:, 0]
        pasted = paste_masks(probs, boxes, size[0], size[1])
        return pasted >= self.rcnn_cfg.mask_thr_binary


def _paste_weights(start: Tensor, end: Tensor, size: Tensor,
                   cells: int) -> Tensor:
    """``[K, size, cells]``: the bilinear weight of each of a mask's
    ``cells`` rows (or columns) at each image pixel, as ``grid_sample``
    (zero padding, ``align_corners=False``) weighs them in
    ``_do_paste_mask``."""
    pixels = torch.arange(size, device=start.device).to(start.dtype) + 0.5
    grid = (pixels - start[:, None]) / (end - start)[:, None] * 2 - 1
    grid = torch.where(torch.isinf(grid), torch.zeros_like(grid), grid)
    position = ((grid + 1) * cells - 1) / 2
    cell = torch.arange(cells, device=start.device).to(start.dtype)
    return (1 - (position[:, :, None] - cell).abs()).clamp(min=0)


def paste_masks(masks: Tensor, boxes: Tensor, height: Tensor,
                width: Tensor) -> Tensor:
    """``_do_paste_mask(masks, boxes, height, width, skip_empty=False)``
    for masks ``[K, h, w]``: ``[K, height, width]``."""
    x0, y0, x1, y1 = boxes.unbind(1)
    rows = _paste_weights(y0, y1, height, masks.shape[1])
    cols = _paste_weights(x0, x1, width, masks.shape[2])
    return rows @ masks @ cols.transpose(1, 2)
