# Copyright (c) mmc2f contributors. All rights reserved.
"""The end2end modules that are exported: the whole model from the data
preprocessor's output (``input``, ``[N, 3, H, W]``) to MMDeploy's end2end
outputs, per task:

* detection: ``dets`` ``[1, K, 5]`` (x1, y1, x2, y2 in input pixels,
  score), ``labels`` ``[1, K]`` (int64) and, with a mask head, ``masks``
  ``[1, K, H, W]`` (bool); one image;
* segmentation: ``output`` ``[N, 1, H, W]``, the class of each pixel;
* classification: ``output`` ``[N, num_classes]``, the scores (softmax, or
  sigmoid for a multi-label head).
"""
from contextlib import contextmanager
from functools import partial
from typing import Dict, Iterator, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.utils import _pair

from .detection import End2EndDetector
from .errors import ExportError


def _pool_matrix(size: Tensor, bins: int, dtype: torch.dtype) -> Tensor:
    """``[bins, size]``: row ``i`` averages adaptive pooling's bin ``i``,
    ``[floor(i * size / bins), ceil((i + 1) * size / bins))``."""
    index = torch.arange(bins)
    start = torch.div(index * size, bins, rounding_mode='floor')
    end = torch.div((index + 1) * size + bins - 1, bins,
                    rounding_mode='floor')
    position = torch.arange(size)
    inside = (position >= start[:, None]) & (position < end[:, None])
    return inside.to(dtype) / (end - start)[:, None].to(dtype)


def matmul_adaptive_avg_pool2d(x: Tensor, output_size: Tuple[int,
                                                             int]) -> Tensor:
    """``F.adaptive_avg_pool2d(x, output_size)`` as two matmuls."""
    height, width = torch._shape_as_tensor(x)[2:]
    bins_h, bins_w = _pair(output_size)
    return (_pool_matrix(height, bins_h, x.dtype) @ x
            @ _pool_matrix(width, bins_w, x.dtype).t())


@contextmanager
def matmul_adaptive_pooling(model: nn.Module) -> Iterator[None]:
    """While active, the ``nn.AdaptiveAvgPool2d`` modules to sizes other
    than 1x1 compute as two matmuls whose matrices follow the input's size:
    torch exports them only for static input sizes that the output size
    divides (UperNet's pyramid pooling has 1, 2, 3 and 6 bins)."""
    swapped = [
        m for m in model.modules() if isinstance(m, nn.AdaptiveAvgPool2d)
        and _pair(m.output_size) != (1, 1)
    ]
    for module in swapped:
        if None in _pair(module.output_size):
            raise ExportError(f'{type(module).__name__}', 'an output size '
                              'of None (the input\'s) is not exported')
        module.forward = partial(matmul_adaptive_avg_pool2d,
                                 output_size=module.output_size)
    try:
        yield
    finally:
        for module in swapped:
            del module.forward


class End2EndSegmentor(nn.Module):
    """An EncoderDecoder's whole-image inference: the decode head's logits
    resized to the input, then the label per pixel."""

    def __init__(self, segmentor: nn.Module) -> None:
        super().__init__()
        if isinstance(segmentor.decode_head, nn.ModuleList):
            raise ExportError(
                f'{type(segmentor).__name__}.decode_head',
                'cascaded decode heads (CascadeEncoderDecoder) are not '
                'exported')
        self.segmentor = segmentor

    def forward(self, inputs: Tensor) -> Tensor:
        # EncoderDecoder.encode_decode, the size the input's (a tensor in a
        # trace, not the int that batch_img_metas would fix).
        head = self.segmentor.decode_head
        logits = head(self.segmentor.extract_feat(inputs))
        logits = F.interpolate(logits, size=inputs.shape[2:], mode='bilinear',
                               align_corners=head.align_corners)
        if head.out_channels == 1:
            return (logits.sigmoid() > head.threshold).long()
        return logits.argmax(1, keepdim=True)


class End2EndClassifier(nn.Module):
    """An ImageClassifier's scores: its head's activation of the logits."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        from mmpretrain.models.heads import ClsHead, MultiLabelClsHead
        head = classifier.head
        if not isinstance(head, (ClsHead, MultiLabelClsHead)):
            raise ExportError(
                f'{type(classifier).__name__}.head ({type(head).__name__})',
                'only ClsHead and MultiLabelClsHead heads (and their '
                'subclasses) have scores that are exported')
        self.classifier = classifier
        self.multi_label = isinstance(head, MultiLabelClsHead)

    def forward(self, inputs: Tensor) -> Tensor:
        logits = self.classifier.head(self.classifier.extract_feat(inputs))
        return logits.sigmoid() if self.multi_label else logits.softmax(1)


# Per default_scope: the model type that is exported, its end2end module,
# and the output names.
TASKS: Dict[str, Tuple[str, type, List[str]]] = {
    'mmdet': ('TwoStageDetector', End2EndDetector,
              ['dets', 'labels', 'masks']),
    'mmseg': ('EncoderDecoder', End2EndSegmentor, ['output']),
    'mmpretrain': ('ImageClassifier', End2EndClassifier, ['output']),
}


def end2end_model(model: nn.Module, scope: str) -> nn.Module:
    """The module to export for ``model`` of a ``scope`` config; an
    ExportError naming what cannot be exported."""
    base, wrapper, _ = TASKS[scope]
    if base not in [c.__name__ for c in type(model).__mro__]:
        raise ExportError(
            type(model).__name__,
            f'the {scope} export covers {base} models (their test-time '
            'post-processing is written in ONNX ops); this model would need '
            'its own')
    return wrapper(model).eval()


def output_names(module: nn.Module, scope: str) -> List[str]:
    names = TASKS[scope][2]
    if isinstance(module, End2EndDetector) and not module.with_mask:
        return names[:2]
    return names


def dynamic_axes(names: List[str], scope: str,
                 dynamic: bool) -> Dict[str, Dict[int, str]]:
    """The axes that vary: the detections' count always; with ``dynamic``,
    the input's height and width (and batch, except for detection, which
    runs one image)."""
    axes: Dict[str, Dict[int, str]] = {name: {} for name in names}
    if scope == 'mmdet':
        for name in names:
            axes[name][1] = 'num_dets'
    if dynamic:
        image = {2: 'height', 3: 'width'}
        batch = {} if scope == 'mmdet' else {0: 'batch'}
        axes['input'] = {**batch, **image}
        for name in names:
            axes[name].update(batch)
        if 'masks' in names or scope == 'mmseg':
            axes[names[-1]].update(image)
    return {name: axis for name, axis in axes.items() if axis}
