# Copyright (c) mmc2f contributors. All rights reserved.
"""The model of a config with its checkpoint, and an image as the data
preprocessor's output: what is exported and what both runtimes get."""
import importlib
from typing import Any, Dict, Optional, Tuple

import torch.nn as nn
from mmengine.config import Config

Shape = Tuple[int, int]


def build_model(cfg: Config) -> nn.Module:
    """The config's model, its weights not loaded yet."""
    # mmc2f registers its safe checkpoint loaders and its modules.
    import mmc2f  # noqa: F401
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.default_scope)
    registry = importlib.import_module(f'{cfg.default_scope}.registry')
    model_cfg = cfg.model.copy()
    # As the Runner does: mmpretrain's configs keep it beside the model.
    if 'data_preprocessor' in cfg and 'data_preprocessor' not in model_cfg:
        model_cfg.data_preprocessor = cfg.data_preprocessor
    return revert_sync_batchnorm(registry.MODELS.build(model_cfg))


def load_weights(model: nn.Module, checkpoint: str) -> nn.Module:
    """``model`` in eval mode with the checkpoint's weights.

    Raises:
        CheckpointLoadError: the checkpoint does not fit the model (what
            tools/test.py says).
    """
    from mmengine.runner import load_checkpoint

    from mmc2f.checkpoint import check_trained_checkpoint
    check_trained_checkpoint(model, checkpoint)
    load_checkpoint(model, checkpoint, map_location='cpu', logger='silent')
    return model.eval()


def test_pipeline(cfg: Config, shape: Optional[Shape]) -> list:
    """The config's test pipeline without its annotations; with ``shape``
    (H, W), the image is resized to it instead of the config's resizing
    and cropping."""
    steps = [step for step in cfg.test_dataloader.dataset.pipeline
             if 'Annotations' not in step['type']]
    if shape is None:
        return steps
    resize = dict(type='Resize', scale=(shape[1], shape[0]),
                  keep_ratio=False)
    return [steps[0], resize, steps[-1]]


def preprocess(cfg: Config, model: nn.Module, image: str,
               shape: Optional[Shape] = None) -> Dict[str, Any]:
    """``image`` through the test pipeline (see :func:`test_pipeline`) and
    the model's data preprocessor: ``inputs`` ``[1, 3, H, W]`` and
    ``data_samples``. Their metainfo says that the input is the whole
    image, unscaled: the PyTorch model then predicts in the input's pixels,
    as the export does."""
    from mmcv.transforms import Compose
    data = Compose(test_pipeline(cfg, shape))(dict(img_path=image))
    data = model.data_preprocessor(
        dict(inputs=[data['inputs']], data_samples=[data['data_samples']]),
        False)
    height, width = data['inputs'].shape[2:]
    for sample in data['data_samples']:
        sample.set_metainfo(dict(img_shape=(height, width),
                                 ori_shape=(height, width),
                                 scale_factor=(1.0, 1.0)))
    return data
