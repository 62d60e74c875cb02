# Copyright (c) mmc2f contributors. All rights reserved.
"""Checkpoint loading and writing: the safe unpickler for torch >= 2.6
(:mod:`.safe_load`) behind every scheme of mmengine's loader
(:mod:`.schemes`), the check that a file fits a model (:mod:`.fit`), and
atomic writes (:mod:`.atomic`)."""
from .atomic import ATOMIC_BACKEND, AtomicLocalBackend, atomic_open
from .fit import check_trained_checkpoint, load_pretrained
from .safe_load import (CheckpointLoadError, safe_torch_load,
                        safe_torch_load_bytes)
from .schemes import download_checkpoint, register_safe_loaders

__all__ = [
    'ATOMIC_BACKEND', 'AtomicLocalBackend', 'CheckpointLoadError',
    'atomic_open', 'check_trained_checkpoint', 'download_checkpoint',
    'load_pretrained', 'register_safe_loaders', 'safe_torch_load',
    'safe_torch_load_bytes'
]
