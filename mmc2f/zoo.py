# Copyright (c) mmc2f contributors. All rights reserved.
"""The authors' released ImageNet checkpoints, as data.

One row per file that the authors' README (github.com/HVision-NKU/Conv2Former)
links. The figures of a file (parameters, FLOPs, top-1) and its config are
the paper's result it is, read from :mod:`mmc2f.paper`. The converter names
the configs a converted file loads into from this table; the ImageNet
metafile and the README's model-zoo table are checked against it by the
tests.
"""
from typing import List, NamedTuple, Optional, Sequence

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
