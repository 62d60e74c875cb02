from .checkpoint import (CheckpointLoadError, atomic_open,
                         check_trained_checkpoint, load_pretrained,
                         register_atomic_local_backend, safe_torch_load,
                         safe_torch_load_bytes)
from .checkpoint_schemes import download_checkpoint, register_safe_loaders
from .data_check import (check_classification_classes,
                         check_config_variables, check_detection_classes,
                         check_segmentation_labels, dataset_metainfo)
from .model_check import check_feature_channels

__all__ = [
    'CheckpointLoadError', 'atomic_open', 'check_classification_classes',
    'check_config_variables', 'check_detection_classes',
    'check_feature_channels', 'check_segmentation_labels',
    'check_trained_checkpoint', 'dataset_metainfo', 'download_checkpoint',
    'load_pretrained', 'register_atomic_local_backend',
    'register_safe_loaders', 'safe_torch_load', 'safe_torch_load_bytes'
]
