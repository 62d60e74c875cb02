# Copyright (c) mmc2f contributors. All rights reserved.
"""The model of an mmc2f / mmdet / mmseg / mmpretrain config, built to be
measured (``tools/analysis/get_flops.py``, the benchmark's ``--config``):
no checkpoint, eval mode, no SyncBatchNorm."""
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm

from .cli import config_scope


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """The config with its overrides, the backbone's checkpoint dropped."""
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    config_scope(cfg, path)
    cfg.model.backbone.init_cfg = None  # no checkpoint to load
    return cfg


def build_model(cfg: Config) -> torch.nn.Module:
    """The config's model in eval mode (mmseg's without its auxiliary head,
    as mmseg's own get_flops.py counts it)."""
    scope = cfg.default_scope
    if scope == 'mmdet':
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
    elif scope == 'mmseg':
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
    else:
        from mmpretrain.registry import MODELS
        from mmpretrain.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    model = MODELS.build(cfg.model)
    if scope == 'mmseg' and getattr(model, 'auxiliary_head', None) is not None:
        model.auxiliary_head = None  # as mmseg's get_flops.py
    return revert_sync_batchnorm(model).eval()
