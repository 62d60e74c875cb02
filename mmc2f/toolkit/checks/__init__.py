# Copyright (c) mmc2f contributors. All rights reserved.
"""The checks ``tools/train.py``, ``tools/test.py`` and
``tools/check_config.py`` run on a config before any work starts, each
raising :class:`ConfigCheckError` (a ``ValueError``) that names the key,
what it says, and the fix:

* :func:`check_config_variables`: ``data_root`` / ``classes`` set anew where
  the datasets do not read them;
* :func:`check_data_files`: the local data files and folders that a run
  opens first exist;
* :func:`check_data`: per task, the classes against the data and the heads
  (:mod:`.detection`, :mod:`.classification`, :mod:`.segmentation`);
* :func:`check_feature_channels`: a neck or head against the backbone's
  feature maps (needs the built model).
"""
from mmengine.config import Config

from .classification import check_classification_classes
from .config_variables import check_config_variables
from .data_files import check_data_files
from .datasets import dataset_metainfo
from .detection import check_detection_classes
from .error import ConfigCheckError
from .feature_channels import check_feature_channels
from .segmentation import check_segmentation_labels


def check_data(cfg: Config) -> None:
    """The task's data checks; each passes configs of the other tasks."""
    check_detection_classes(cfg)
    check_classification_classes(cfg)
    check_segmentation_labels(cfg)


__all__ = [
    'ConfigCheckError', 'check_classification_classes',
    'check_config_variables', 'check_data', 'check_data_files',
    'check_detection_classes',
    'check_feature_channels', 'check_segmentation_labels', 'dataset_metainfo'
]
