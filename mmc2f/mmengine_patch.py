# Copyright (c) mmc2f contributors. All rights reserved.
"""The one place where importing mmc2f changes mmengine for the process."""
import os

OPT_OUT_ENV = 'MMC2F_NO_MMENGINE_PATCH'


def patch_mmengine() -> bool:
    """Make mmengine 0.10.7 load checkpoints safely under torch >= 2.6, and
    read ``mmc2f::`` config paths.

    ``import mmc2f`` calls this once. The changes, and why:

    * **Every scheme of mmengine's** ``CheckpointLoader`` (local paths,
      ``http(s)://``, ``torchvision://``, ``open-mmlab://``, ``mmcls://``,
      ``pavi://``, ``s3://``) loads through
      :func:`~mmc2f.checkpoint.safe_torch_load`
      (:func:`~mmc2f.checkpoint.register_safe_loaders`). mmengine calls
      ``torch.load`` without ``weights_only``: under torch >= 2.6 it cannot
      read the checkpoints its own Runner writes (numpy arrays, its
      ``HistoryBuffer``), so ``--resume``, ``load_from``, ``tools/test.py``
      and ``init_cfg=dict(type='Pretrained')`` all fail, in the libraries'
      tools as in ours. And it unpickles downloads with
      ``weights_only=False``, which runs any code a downloaded file holds.
      The safe loader keeps the weights-only unpickler and allows, for one
      load at a time, the data types such checkpoints hold.
    * **The config prefix** ``mmc2f::`` (``_base_ =
      ['mmc2f::mask_rcnn/mask-rcnn_conv2former-t_fpn_amp-ms-crop-3x_coco.py']``
      in a config of your own) reads the configs that a wheel of mmc2f ships
      in ``mmc2f/.mim/configs``, as ``mmdet::`` reads MMDetection's. mmengine
      knows only the prefixes of its own list of packages, and parses a
      config's ``_base_`` before its ``custom_imports``: the prefix works
      where mmc2f is imported first, in mmc2f's tools and
      ``mim train mmc2f``, not in the libraries' own tools.

    Nothing else changes: ``torch.load`` keeps its defaults for other code,
    and mmc2f's own additions (atomic checkpoint writes, removing outdated
    checkpoints only after a successful save) are the
    ``mmc2f.SafeCheckpointHook`` that mmc2f's configs name.

    Opt out with the environment variable ``MMC2F_NO_MMENGINE_PATCH=1``
    before the import: mmengine is then left as it is (and, under torch >=
    2.6, cannot load Runner checkpoints).

    Returns:
        Whether mmengine was patched.
    """
    if os.environ.get(OPT_OUT_ENV, '0') not in ('', '0'):
        return False
    from mmengine.config.utils import MODULE2PACKAGE

    from .checkpoint import register_safe_loaders
    register_safe_loaders()
    MODULE2PACKAGE.setdefault('mmc2f', 'mmc2f')
    return True
