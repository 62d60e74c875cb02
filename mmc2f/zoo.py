# Copyright (c) mmc2f contributors. All rights reserved.
"""The model zoo as data: the authors' released ImageNet checkpoints, and
what ``tools/analysis/get_flops.py`` counts for each of our configs.

One row of :data:`RELEASED` per file that the authors' README
(github.com/HVision-NKU/Conv2Former) links. The figures of a file
(parameters, FLOPs, top-1) and its config are the paper's result it is, read
from :mod:`mmc2f.paper`. The converter names the configs a converted file
loads into from this table. The metafiles and the README tables are
generated from this module and :mod:`mmc2f.paper` by
``tools/misc/generate_model_index.py``.
"""
from typing import Dict, List, NamedTuple, Optional, Sequence

from .models.backbones.conv2former import ARCH_SETTINGS
from .paper import find_imagenet

AUTHORS_CODE = 'https://github.com/HVision-NKU/Conv2Former'


class ReleasedCheckpoint(NamedTuple):
    """One released ImageNet file.

    Attributes:
        name: Its model name here, mmpretrain's way for third-party weights.
        released_as: The authors' model function that builds it
            (``--model`` of their ``validate.py``).
        arch: The :class:`~mmc2f.models.Conv2Former` preset.
        kernel_size: Kernel of the modulation's depthwise conv.
        pretrain: ``'in1k'``, or ``'in21k'`` for ImageNet-22k pre-training
            followed by ImageNet-1k fine-tuning.
        resolution: Test resolution.
        params: Parameters (M), with the 1000-class head, as the paper
            states them (:attr:`mmc2f.paper.ImageNetResult.params`).
        flops: Multiply-adds (G) at ``resolution``, as the paper states
            them.
        top1: ImageNet-1k top-1 accuracy (%), as the paper states it.
        url: Where the authors host the file (Baidu Netdisk, the password
            in ``pwd``).
        config: The ImageNet config, under ``configs/imagenet/``, that the
            converted file loads into.
    """
    name: str
    released_as: str
    arch: str
    kernel_size: int
    pretrain: str
    resolution: int
    params: float
    flops: float
    top1: float
    url: str
    config: str

    @property
    def converted_path(self) -> str:
        """Where the downstream configs expect the converted file."""
        size = self.name.split('_')[0]
        pre = '_in21k-pre' if self.pretrain == 'in21k' else ''
        px = '' if self.resolution == 224 else f'-{self.resolution}px'
        return f'checkpoints/{size}{pre}_in1k{px}_mmc2f.pth'

    @property
    def title(self) -> str:
        pre = ('ImageNet-22k pre-trained, 1k fine-tuned'
               if self.pretrain == 'in21k' else 'ImageNet-1k')
        return (f'Conv2Former-{self.arch[0].upper()} ({pre}, '
                f'{self.resolution} px)')


_BAIDU = 'https://pan.baidu.com/s/'


def _released(name: str, released_as: str, arch: str, kernel_size: int,
              pretrain: str, resolution: int,
              url: str) -> ReleasedCheckpoint:
    """A released file with the figures and config of its paper result."""
    result = find_imagenet(arch, pretrain, resolution)
    return ReleasedCheckpoint(name, released_as, arch, kernel_size, pretrain,
                              resolution, result.params, result.flops,
                              result.top1, _BAIDU + url, result.config)


# name, released_as, arch, kernel, pretrain, resolution, url
RELEASED: Sequence[ReleasedCheckpoint] = (
    _released('conv2former-n_3rdparty_8xb128_in1k', 'conv2former_n', 'nano',
              7, 'in1k', 224, '1sgO-UhF27UQrGtfKJzck3A?pwd=6ku9'),
    _released('conv2former-t_3rdparty_8xb128_in1k', 'conv2former_t', 'tiny',
              11, 'in1k', 224, '1Rfsi5p5usr3UE46jigtlcg?pwd=gwq4'),
    _released('conv2former-s_3rdparty_8xb128_in1k', 'conv2former_s', 'small',
              11, 'in1k', 224, '16Lu1LcQkOoSQXnZVGxGPxg?pwd=6z6m'),
    _released('conv2former-b_3rdparty_8xb128_in1k', 'conv2former_b', 'base',
              11, 'in1k', 224, '1q5V1J3jzAoKQis-hx6rTVg?pwd=bdgj'),
    _released('conv2former-s_in21k-pre-3rdparty_8xb128_in1k', 'conv2former_s',
              'small', 11, 'in21k', 224, '1uMBF5xSvdWa5TCjQ_jlK4g?pwd=1iij'),
    _released('conv2former-b-k7_in21k-pre-3rdparty_8xb128_in1k',
              'conv2former_b_22k', 'base', 7, 'in21k', 224,
              '1rkt3NhYQhPPOD5kj67uZCw?pwd=gbj9'),
    _released('conv2former-l_in21k-pre-3rdparty_8xb128_in1k', 'conv2former_l',
              'large', 11, 'in21k', 224, '1_YYQ_rY9QRkq-m2lv23GPg?pwd=44os'),
    _released('conv2former-l_in21k-pre-3rdparty_8xb128_in1k-384px',
              'conv2former_l', 'large', 11, 'in21k', 384,
              '1vyBaA4UGUX_qlS-ugxpTSQ?pwd=gu0m'),
)


def find_preset(channels: Sequence[int],
                depths: Sequence[int]) -> Optional[str]:
    """The preset with these channels and depths, whatever its kernel."""
    for name, preset in ARCH_SETTINGS.items():
        if (list(preset['channels']) == list(channels)
                and list(preset['depths']) == list(depths)):
            return name
    return None


def find_released(channels: Sequence[int], depths: Sequence[int],
                  kernel_size: int) -> List[ReleasedCheckpoint]:
    """The released files whose architecture is the given one (two files
    share an architecture when they differ only in training data or test
    resolution)."""
    preset = find_preset(channels, depths)
    return [ckpt for ckpt in RELEASED
            if ckpt.arch == preset and ckpt.kernel_size == kernel_size]


class Counted(NamedTuple):
    """Parameters (M) and FLOPs (G) of one of our models, as
    ``tools/analysis/get_flops.py`` counts them (``--paper`` at the paper's
    input sizes; the tests recount them).

    Attributes:
        params: Parameters (M); None where the table shows FLOPs only.
        flops: Multiply-adds (G).
        note: What the figure needs said beside it.
    """
    params: Optional[float]
    flops: float
    note: str = ''


# The paper's results measured on our configs, by the config (an isotropic
# model, which has no config, by 'isotropic/<arch>/<patch_embed>').
COUNTED: Dict[str, Counted] = {
    'configs/imagenet/conv2former-n_8xb128_in1k.py': Counted(14.99, 2.34),
    'configs/imagenet/conv2former-t_8xb128_in1k.py': Counted(26.70, 4.38),
    'configs/imagenet/conv2former-s_8xb128_in1k.py': Counted(50.03, 8.75),
    'configs/imagenet/conv2former-b_8xb128_in1k.py': Counted(90.03, 15.94),
    'configs/imagenet/conv2former-b-k7_8xb128_in1k.py': Counted(
        88.78, 15.62, '(kernel 7)'),
    'configs/imagenet/conv2former-l_8xb128_in1k.py': Counted(198.89, 36.12),
    'configs/imagenet/conv2former-l_8xb128_in1k-384px.py': Counted(
        198.89, 106.14, '(`--shape 384`)'),
    'isotropic/small/conv': Counted(22.92, 4.42),
    'isotropic/small/conv3': Counted(23.13, 4.56),
    'isotropic/base/conv': Counted(84.26, 16.37),
    'isotropic/base/conv3': Counted(85.53, 16.99),
    'configs/mask_rcnn/mask-rcnn_conv2former-t_fpn_amp-ms-crop-3x_coco.py':
    Counted(None, 259),
    'configs/cascade_mask_rcnn/cascade-mask-rcnn_conv2former-t_fpn_4conv1fc-'
    'giou_amp-ms-crop-3x_coco.py': Counted(None, 738),
    'configs/cascade_mask_rcnn/cascade-mask-rcnn_conv2former-s_fpn_4conv1fc-'
    'giou_amp-ms-crop-3x_coco.py': Counted(None, 827),
    'configs/cascade_mask_rcnn/cascade-mask-rcnn_conv2former-b_fpn_4conv1fc-'
    'giou_amp-ms-crop-3x_coco.py': Counted(None, 974),
    'configs/upernet/upernet_conv2former-t_8xb2-amp-160k_ade20k-512x512.py':
    Counted(54.8, 935),
    'configs/upernet/upernet_conv2former-s_8xb2-amp-160k_ade20k-512x512.py':
    Counted(78.2, 1026),
    'configs/upernet/upernet_conv2former-b_8xb2-amp-160k_ade20k-512x512.py':
    Counted(119.3, 1178),
    'configs/upernet/upernet_conv2former-l_in21k-pre_8xb2-amp-160k_ade20k-'
    '640x640.py': Counted(229.6, 2504),
}


class BeyondThePaper(NamedTuple):
    """A config for a head the paper does not have: no paper number to
    compare with, and not yet trained on the real data.

    Attributes:
        config: The config under ``configs/``.
        head: The head and its data, as the tables say it.
        schedule: ``('Epochs', 36)`` or ``('Iterations', 160000)``.
        params: Parameters, as ``get_flops.py`` counts them.
        flops: FLOPs at 1280x800 (COCO) or 2048x512 (ADE20k).
        library: The library's count for the same head with a Swin-T or
            ConvNeXt-T backbone, where it ships one.
        collection: Its metafile collection; None for a fine-tuning
            template (no metafile row: it trains on your classes).
    """
    config: str
    head: str
    schedule: tuple
    params: int
    flops: int
    library: str
    collection: Optional[str]


_COCO_SWIN_DINO = (
    "Swin-T (mmdet ships no Swin-T or ConvNeXt-T DINO: its R-50 config with "
    "mmdet's Swin-T swapped in as ours swaps Conv2Former in): 48.2M / 289G; "
    "R-50 (mmdet's config): 47.7M / 280G")

BEYOND_THE_PAPER: Sequence[BeyondThePaper] = (
    BeyondThePaper(
        'configs/cascade_rcnn/cascade-rcnn_conv2former-t_fpn_4conv1fc-giou_'
        'amp-ms-crop-3x_coco.py', 'box-only Cascade R-CNN, COCO 3x',
        ('Epochs', 36), 74764350, 578578544640,
        "ConvNeXt-T (mmdet's Cascade Mask R-CNN config without its mask "
        'branch): 78.0M / 582G', 'Cascade R-CNN'),
    BeyondThePaper(
        'configs/faster_rcnn/finetune/faster-rcnn_conv2former-t_fpn_amp-ms-'
        'crop-1x_custom-coco.py',
        'box-only Faster R-CNN, fine-tuning on 3 classes', ('Epochs', 12),
        41821083, 205603952640,
        "ConvNeXt-T (mmdet's Mask R-CNN config without its mask branch, 80 "
        'classes): 45.5M / 209G', None),
    BeyondThePaper('configs/dino/dino-4scale_conv2former-t_8xb2-12e_coco.py',
                   'DINO 4-scale, COCO 12 epochs', ('Epochs', 12), 44820536,
                   281713249280, _COCO_SWIN_DINO, 'DINO'),
    BeyondThePaper('configs/dino/dino-4scale_conv2former-b_8xb2-12e_coco.py',
                   'DINO 4-scale, COCO 12 epochs', ('Epochs', 12), 108435740,
                   517815848960, 'as for T', 'DINO'),
    BeyondThePaper(
        'configs/mask2former/mask2former_conv2former-t_8xb2-160k_ade20k-'
        '512x512.py', 'Mask2Former, ADE20k 160k, 512 crops',
        ('Iterations', 160000), 44504019, 260793117632,
        "Swin-T (mmseg's config): 47.4M / 270G; mmseg's own `get_flops.py` "
        'refuses Mask2Former, ours counts the head given the image\'s sample',
        'Mask2Former'),
)
