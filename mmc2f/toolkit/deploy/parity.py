# Copyright (c) mmc2f contributors. All rights reserved.
"""ONNX Runtime against PyTorch on the same preprocessed input: the
PyTorch model's predictions in the end2end outputs' form, the comparison
per task, and the latencies."""
import statistics
import time
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

# A PyTorch box is matched by an ONNX box of its label with at least this
# IoU.
MATCH_IOU = 0.99


def reference(model: nn.Module, data: Dict[str, Any],
              scope: str) -> List[np.ndarray]:
    """The PyTorch model's predictions (its ``predict``, eager, without
    rescaling) as the end2end outputs (see :mod:`.end2end`)."""
    with torch.inference_mode():
        if scope == 'mmdet':
            pred = model.predict(data['inputs'], data['data_samples'],
                                 rescale=False)[0].pred_instances
            outputs = [torch.cat([pred.bboxes, pred.scores[:, None]], 1),
                       pred.labels]
            if 'masks' in pred:
                outputs.append(pred.masks)
            return [o[None].numpy() for o in outputs]
        samples = model.predict(data['inputs'], data['data_samples'])
    if scope == 'mmseg':
        return [torch.stack([s.pred_sem_seg.data for s in samples]).numpy()]
    return [torch.stack([s.pred_score for s in samples]).numpy()]


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from mmdet.structures.bbox import bbox_overlaps
    return bbox_overlaps(torch.from_numpy(a), torch.from_numpy(b)).numpy()


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def compare_detections(ref: Sequence[np.ndarray],
                       out: Sequence[np.ndarray]) -> Dict[str, Any]:
    """Each PyTorch box, in descending score, is matched by the unmatched
    ONNX box of its label with the highest IoU, if at least
    :data:`MATCH_IOU`. ``matched_boxes``: the share matched;
    ``max_score_diff`` and ``mask_iou_min`` over the matched pairs."""
    ref_dets, ref_labels = ref[0][0], ref[1][0]
    dets, labels = out[0][0], out[1][0]
    iou = _box_iou(ref_dets[:, :4], dets[:, :4])
    iou[ref_labels[:, None] != labels[None]] = 0
    pairs = []
    for i in range(len(ref_dets)):
        if iou.shape[1] and iou[i].max() >= MATCH_IOU:
            j = int(iou[i].argmax())
            pairs.append((i, j))
            iou[:, j] = 0
    result = dict(
        pytorch_boxes=len(ref_dets), onnxruntime_boxes=len(dets),
        matched_boxes=(len(pairs) / len(ref_dets) if len(ref_dets) else
                       float(not len(dets))),
        max_score_diff=max([abs(float(ref_dets[i, 4] - dets[j, 4]))
                            for i, j in pairs], default=0.0))
    if len(ref) > 2:
        result['mask_iou_min'] = min(
            [_mask_iou(ref[2][0, i], out[2][0, j]) for i, j in pairs],
            default=1.0)
    return result


def compare(scope: str, ref: Sequence[np.ndarray],
            out: Sequence[np.ndarray]) -> Dict[str, Any]:
    """The task's parity fields (see the module's docstring)."""
    if scope == 'mmdet':
        return compare_detections(ref, out)
    if scope == 'mmseg':
        return dict(pixel_agreement=float((ref[0] == out[0]).mean()))
    from mmc2f.toolkit.released_reference import max_rel_error
    return dict(max_rel_err=max_rel_error(torch.from_numpy(out[0]),
                                          torch.from_numpy(ref[0])))


def timed_runs(runs: Dict[str, Callable[[], Any]], repeat: int
               ) -> Tuple[Dict[str, Any], Dict[str, float]]:
    """``repeat`` calls of each of ``runs``: the first call's result and the
    median time, in milliseconds, per name. The calls alternate, so that a
    load that comes and goes (a shared machine) weighs on all alike."""
    first: Dict[str, Any] = {}
    times: Dict[str, List[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            start = time.perf_counter()
            result = run()
            times[name].append((time.perf_counter() - start) * 1e3)
            first.setdefault(name, result)
    return first, {name: statistics.median(t) for name, t in times.items()}
