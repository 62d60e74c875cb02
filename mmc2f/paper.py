# Copyright (c) mmc2f contributors. All rights reserved.
"""The paper's numbers, as data: the one place mmc2f keeps them.

Hou, Lu, Cheng, Feng, *Conv2Former: A Simple Transformer-Style ConvNet for
Visual Recognition*, IEEE TPAMI 2024: the ImageNet-1k variants (Tables 1 to
3), ImageNet-22k pre-training (Table 4), the isotropic models (Table 8), COCO
(Table 9) and ADE20k (Table 10). Parameters in millions, FLOPs in G
(multiply-adds).

Read by ``tools/analysis/get_flops.py --paper`` (which measures our configs
against them) and by :mod:`mmc2f.zoo` (the figures of each released file);
the tests check the metafiles and the README's tables against them. Where a
count of the authors' published model is not the paper's figure, both are
kept, under separate names (``published_*``); ``docs/released_architecture.md``
says why they differ.
"""
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

_IMAGENET = 'configs/imagenet/'


class ImageNetResult(NamedTuple):
    """One ImageNet-1k top-1 result of the four-stage Conv2Former.

    Attributes:
        name: The paper's name of the model.
        arch: The :class:`~mmc2f.models.Conv2Former` preset.
        pretrain: ``'in1k'``, or ``'in21k'`` for ImageNet-22k pre-training
            followed by ImageNet-1k fine-tuning.
        resolution: Test resolution.
        params: Parameters with the 1000-class head, as the paper states
            them (Table 1's one-decimal figures for the 224 px models).
        flops: FLOPs at ``resolution``, as the paper's text states them.
        top1: ImageNet-1k top-1 accuracy (%).
        source: Where the paper gives the model.
        config: The ImageNet config under ``configs/`` that builds it, None
            where none does (no released file).
        published_params: Parameters of the authors' released model where
            they are not ``params`` (the ImageNet-22k B has kernel 7, the
            paper's 90M is the kernel-11 B's), else None.
        published_flops: FLOPs counted on the authors' published model at
            ``resolution``, where counted, else None.
    """
    name: str
    arch: str
    pretrain: str
    resolution: int
    params: float
    flops: float
    top1: float
    source: str
    config: Optional[str]
    published_params: Optional[float] = None
    published_flops: Optional[float] = None

    @property
    def counted_flops_differ(self) -> bool:
        """Whether the published model's count, rounded as the paper rounds,
        is not the paper's figure (N: 2.33G counted, 2.2G in the text)."""
        return (self.published_flops is not None
                and round(self.published_flops, 1) != self.flops)


IMAGENET: Sequence[ImageNetResult] = (
    ImageNetResult('Conv2Former-N', 'nano', 'in1k', 224, 15.0, 2.2, 81.5,
                   'Table 1 N', _IMAGENET + 'conv2former-n_8xb128_in1k.py',
                   published_flops=2.33),
    ImageNetResult('Conv2Former-T', 'tiny', 'in1k', 224, 26.7, 4.4, 83.2,
                   'Table 1 T', _IMAGENET + 'conv2former-t_8xb128_in1k.py',
                   published_flops=4.36),
    ImageNetResult('Conv2Former-S', 'small', 'in1k', 224, 50.0, 8.7, 84.1,
                   'Table 1 S', _IMAGENET + 'conv2former-s_8xb128_in1k.py',
                   published_flops=8.71),
    ImageNetResult('Conv2Former-B', 'base', 'in1k', 224, 90.0, 15.9, 84.4,
                   'Table 1 B', _IMAGENET + 'conv2former-b_8xb128_in1k.py',
                   published_flops=15.89),
    ImageNetResult('Conv2Former-S', 'small', 'in21k', 224, 50.0, 8.7, 84.9,
                   'Table 4', _IMAGENET + 'conv2former-s_8xb128_in1k.py'),
    ImageNetResult('Conv2Former-B', 'base', 'in21k', 224, 90.0, 15.9, 86.2,
                   'Table 4',
                   _IMAGENET + 'conv2former-b-k7_8xb128_in1k.py',
                   published_params=88.8),
    # Fine-tuned at 384 px; the authors released no file of it.
    ImageNetResult('Conv2Former-B', 'base', 'in21k', 384, 90.0, 46.7, 87.0,
                   'Table 4', None),
    ImageNetResult('Conv2Former-L', 'large', 'in21k', 224, 198.9, 36.0,
                   87.0, 'Table 1 L',
                   _IMAGENET + 'conv2former-l_8xb128_in1k.py',
                   published_flops=36.04),
    # Table 4 prints 105.9G; the authors' README, 106G.
    ImageNetResult('Conv2Former-L', 'large', 'in21k', 384, 198.9, 106.0,
                   87.7, 'Table 4',
                   _IMAGENET + 'conv2former-l_8xb128_in1k-384px.py'),
)


def find_imagenet(arch: str, pretrain: str,
                  resolution: int) -> ImageNetResult:
    """The ImageNet result of one preset, pre-training and resolution."""
    for result in IMAGENET:
        if (result.arch, result.pretrain, result.resolution) == (
                arch, pretrain, resolution):
            return result
    raise KeyError(f'the paper has no {arch} {pretrain} {resolution} px '
                   'result')


class IsotropicResult(NamedTuple):
    """One ImageNet-1k result of the isotropic Conv2Former (Table 8).

    Attributes:
        name: The paper's name of the model.
        arch: The :class:`~mmc2f.models.Conv2FormerIsotropic` preset.
        patch_embed: ``patch_embed_type``: ``'conv'`` (one 16x16 conv) or
            ``'conv3'`` (three convs).
        params: Parameters with a 1000-class linear classifier.
        flops: FLOPs at 224x224.
        top1: ImageNet-1k top-1 accuracy (%).
    """
    name: str
    arch: str
    patch_embed: str
    params: float
    flops: float
    top1: float


ISOTROPIC: Sequence[IsotropicResult] = (
    IsotropicResult('Conv2Former-IS', 'small', 'conv', 23, 4.3, 81.2),
    IsotropicResult('Conv2Former-IS', 'small', 'conv3', 23, 4.5, 82.0),
    IsotropicResult('Conv2Former-IB', 'base', 'conv', 86, 16.5, 82.7),
    IsotropicResult('Conv2Former-IB', 'base', 'conv3', 87, 17.3, 83.0),
)


class DownstreamResult(NamedTuple):
    """One COCO (Table 9) or ADE20k (Table 10) result.

    Attributes:
        config: The config: a path under ``configs/``, or
            ``'mmdet::...'`` / ``'mmseg::...'`` for one shipped in that
            package (the paper's ConvNeXt-T baselines, which check that our
            FLOPs count follows the paper's convention).
        method: ``'Mask R-CNN'``, ``'Cascade Mask R-CNN'`` or ``'UperNet'``.
        backbone: The paper's name of the backbone.
        params: Parameters (M), None where the paper gives none.
        flops: FLOPs (G) at ``shape``.
        shape: Input (H, W) of the FLOPs count: 800x1280 for detection
            (Swin's and ConvNeXt's convention), 512x2048 for segmentation,
            640x2560 for the 640-crop model.
        metrics: The accuracies, named as the metafiles name them.
        source: Where the paper gives it, and what checks the convention.
        pretrain: ``'in1k'``, or ``'in21k'`` for the ImageNet-22k
            pre-trained backbone.
        crop: Training crop of the segmentation models, else None.
        also: Further inputs (H, W) that ``get_flops --paper`` measures
            for comparison.
    """
    config: str
    method: str
    backbone: str
    params: Optional[float]
    flops: float
    shape: Tuple[int, int]
    metrics: Dict[str, float]
    source: str
    pretrain: str = 'in1k'
    crop: Optional[int] = None
    also: Sequence[Tuple[int, int]] = ()

    @property
    def ours(self) -> bool:
        """A Conv2Former config of this project (not a baseline)."""
        return '::' not in self.config


_DET = (800, 1280)
_SEG = (512, 2048)
_MASK_RCNN = ('configs/mask_rcnn/'
              'mask-rcnn_conv2former-{}_fpn_amp-ms-crop-3x_coco.py')
_CASCADE = ('configs/cascade_mask_rcnn/cascade-mask-rcnn_conv2former-{}_fpn_'
            '4conv1fc-giou_amp-ms-crop-3x_coco.py')
_UPERNET = ('configs/upernet/'
            'upernet_conv2former-{}_8xb2-amp-160k_ade20k-512x512.py')


def _det(config: str, method: str, backbone: str, flops: float, box: float,
         mask: float, source: str = 'Table 9') -> DownstreamResult:
    return DownstreamResult(config, method, backbone, None, flops, _DET,
                            {'box AP': box, 'mask AP': mask}, source)


def _seg(config: str, backbone: str, params: float, flops: float,
         miou: float, source: str = 'Table 10', **kwargs) -> DownstreamResult:
    kwargs.setdefault('shape', _SEG)
    kwargs.setdefault('crop', 512)
    return DownstreamResult(config, 'UperNet', backbone, params, flops,
                            metrics={'mIoU': miou}, source=source, **kwargs)


DOWNSTREAM: Sequence[DownstreamResult] = (
    _det(_MASK_RCNN.format('t'), 'Mask R-CNN', 'Conv2Former-T', 255, 48.0,
         43.0),
    _det(_CASCADE.format('t'), 'Cascade Mask R-CNN', 'Conv2Former-T', 734,
         51.4, 44.5),
    _det(_CASCADE.format('s'), 'Cascade Mask R-CNN', 'Conv2Former-S', 823,
         52.8, 45.7),
    _det(_CASCADE.format('b'), 'Cascade Mask R-CNN', 'Conv2Former-B', 968,
         52.8, 45.6),
    _seg(_UPERNET.format('t'), 'Conv2Former-T', 55, 931, 48.0),
    _seg(_UPERNET.format('s'), 'Conv2Former-S', 78, 1021, 50.3),
    _seg(_UPERNET.format('b'), 'Conv2Former-B', 119, 1171, 51.0),
    _seg('configs/upernet/'
         'upernet_conv2former-l_in21k-pre_8xb2-amp-160k_ade20k-640x640.py',
         'Conv2Former-L', 230, 2483, 54.3,
         source="Table 10; the 640-crop model at 2560x640 (ConvNeXt's "
         'convention for 640 crops) gives 2483G, 2048x512 does not',
         shape=(640, 2560), pretrain='in21k', crop=640, also=(_SEG, )),
    _det('mmdet::convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_'
         'coco.py', 'Mask R-CNN', 'ConvNeXt-T', 262, 46.2, 41.7,
         source='Table 9 ConvNeXt-T baseline'),
    _det('mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-'
         'giou_amp-ms-crop-3x_coco.py', 'Cascade Mask R-CNN', 'ConvNeXt-T',
         741, 50.4, 43.7, source='Table 9 ConvNeXt-T baseline'),
    _seg('mmseg::convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-'
         '512x512.py', 'ConvNeXt-T', 59, 940, 46.7,
         source='Table 10 ConvNeXt-T baseline'),
)
