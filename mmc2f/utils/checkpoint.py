# Copyright (c) mmc2f contributors. All rights reserved.
"""Safe checkpoint loading for torch >= 2.6.

torch now unpickles with ``weights_only=True`` by default, which refuses the
numpy and mmengine objects that mmengine's Runner writes into every checkpoint
(and the ``argparse.Namespace`` of timm's), while mmengine 0.10.7 calls
``torch.load`` without a choice. Turning ``weights_only`` off would let any
downloaded file run code. Instead, :func:`safe_torch_load` keeps the
weights-only unpickler and allows, for the duration of one load only, the
small set of data types such checkpoints hold. Nothing is allowlisted globally.

``register_safe_local_loader()`` makes mmengine's ``load_checkpoint`` (and so
``init_cfg=dict(type='Pretrained')``, ``--resume`` and ``tools/test.py``) use
it for local files.
"""
import argparse
import codecs
import logging
import os
import os.path as osp
import pickle
import tempfile
import zipfile
from contextlib import contextmanager
from typing import (Any, BinaryIO, Callable, Iterator, List, Optional, Tuple,
                    Union)

import numpy as np
import torch
from mmengine.fileio import register_backend
from mmengine.fileio.backends import LocalBackend
from mmengine.logging import print_log

TRUST_ENV = 'MMC2F_TRUSTED_CHECKPOINTS'
# How a HistoryBuffer pickles its statistics methods: getattr(HistoryBuffer,
# name), the class's functions kept in each buffer's state.
_HISTORY_METHODS = frozenset({'min', 'max', 'mean', 'current'})


class CheckpointLoadError(RuntimeError):
    """A checkpoint file could not be loaded; the message names the file."""


def _restricted_getattr(obj: Any, name: str) -> Any:
    """Stands in for ``builtins.getattr`` during unpickling: only the
    statistics methods of mmengine's HistoryBuffer may be looked up, so a
    pickle cannot reach arbitrary attributes through getattr."""
    from mmengine.logging import HistoryBuffer
    if obj is HistoryBuffer and name in _HISTORY_METHODS:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'getattr({type(obj).__name__}, {name!r}) is not allowed while '
        'loading a checkpoint')


def _numpy_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    """numpy's array and scalar reconstructors under both module names
    (numpy 1 pickles ``numpy.core``, numpy 2 ``numpy._core``)."""
    try:
        multiarray = np._core.multiarray
    except AttributeError:  # numpy < 2
        multiarray = np.core.multiarray
    allowed: List[Union[Callable, Tuple[Callable, str]]] = [
        np.ndarray, np.dtype
    ]
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        allowed.append((multiarray._reconstruct, f'{module}._reconstruct'))
        allowed.append((multiarray.scalar, f'{module}.scalar'))
    # numpy >= 1.25 gives each dtype its own class (numpy.dtypes.Float32DType).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        allowed.extend(
            cls for cls in vars(dtypes).values()
            if isinstance(cls, type) and issubclass(cls, np.dtype))
    return allowed


def checkpoint_safe_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    """The data types that Runner and timm checkpoints hold: numpy arrays and
    scalars, bytes (``_codecs.encode``), ``argparse.Namespace`` and mmengine's
    ``HistoryBuffer`` with its statistics methods. None of them runs code."""
    from mmengine.logging import HistoryBuffer
    return _numpy_globals() + [
        codecs.encode,
        argparse.Namespace,
        HistoryBuffer,
        (_restricted_getattr, 'builtins.getattr'),
    ]


def _is_trusted(filename: str) -> bool:
    trusted = os.environ.get(TRUST_ENV, '')
    paths = {osp.realpath(p) for p in trusted.split(os.pathsep) if p}
    return osp.realpath(filename) in paths


def safe_torch_load(filename: str,
                    map_location: Optional[Union[str, Callable,
                                                 torch.device]] = 'cpu') -> Any:
    """``torch.load`` that never executes code from the file.

    Args:
        filename (str): Path of a local checkpoint.
        map_location: As for ``torch.load``. Defaults to ``'cpu'``.

    Raises:
        FileNotFoundError: The file does not exist.
        CheckpointLoadError: The file is truncated or corrupt, or its pickle
            references code; the message names the file, the problem and,
            for the latter, how to load it if the user trusts it.
    """
    if not osp.isfile(filename):
        raise FileNotFoundError(f'Checkpoint file {filename} does not exist')
    if _is_trusted(filename):
        return torch.load(filename, map_location=map_location,
                          weights_only=False)
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            return torch.load(filename, map_location=map_location,
                              weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = _unsafe_globals(filename)
        if unsafe is None:
            raise _corrupt(filename, e) from None
        reason = str(e).split('WeightsUnpickler error:')[-1].split(
            'Check the documentation')[0].strip()
        raise CheckpointLoadError(
            f'Refused to load checkpoint {filename}: its pickle references '
            f'{", ".join(unsafe) or "objects"} that could execute code when '
            f'loaded ({reason}). If you trust this file, allow it explicitly '
            f'with {TRUST_ENV}={filename} (paths separated by "{os.pathsep}")'
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as e:
        raise _corrupt(filename, e) from None


def _unsafe_globals(filename: str) -> Optional[List[str]]:
    """Globals of a readable checkpoint beyond what we allow; None when the
    file is no readable torch checkpoint at all."""
    if not zipfile.is_zipfile(filename):
        return None
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(filename)
    except Exception:
        return None
    allowed = {
        g[1] if isinstance(g, tuple) else f'{g.__module__}.{g.__qualname__}'
        for g in checkpoint_safe_globals()
    }
    return [name for name in found if name not in allowed]


def _corrupt(filename: str, error: Exception) -> CheckpointLoadError:
    return CheckpointLoadError(
        f'Checkpoint file {filename} is truncated or corrupt and cannot be '
        f'read ({type(error).__name__}: {str(error)[:200]}); download or copy '
        'it again')


def _load_from_local(filename: str, map_location=None) -> Any:
    return safe_torch_load(osp.expanduser(filename), map_location)


# The process's umask (reading it means setting it: set it straight back).
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_open(filename: str) -> Iterator[BinaryIO]:
    """Open ``filename`` for binary writing such that it appears complete or
    not at all: a temporary file in the same directory, fsynced, renamed over
    the target on success and removed on any error or interruption."""
    directory = osp.dirname(osp.abspath(filename))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-')
    try:
        with os.fdopen(fd, 'wb') as f:
            yield f
            f.flush()
            # mkstemp creates 0600; give the permissions open() would.
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)
            os.fsync(f.fileno())
        os.replace(tmp, filename)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose ``put`` (through which the Runner
    saves every checkpoint) is atomic: a kill during the write leaves the
    previous file or none, never a partial one that ``--resume`` would pick
    up."""

    def put(self, obj: bytes, filepath: Union[str, 'os.PathLike']) -> None:
        with atomic_open(str(filepath)) as f:
            f.write(obj)


def register_atomic_local_backend() -> None:
    """Make mmengine write local files (checkpoints) atomically."""
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')


def register_safe_local_loader() -> None:
    """Serve mmengine's local-file checkpoint scheme with
    :func:`safe_torch_load`. Only mmengine's loading of local paths changes;
    ``torch.load`` itself keeps its defaults for all other code."""
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', force=True)(_load_from_local)


def load_pretrained(module: torch.nn.Module,
                    filename: str,
                    prefix: Optional[str] = None,
                    map_location: str = 'cpu') -> None:
    """Load a backbone's pretrained weights, refusing a load that would
    silently leave it random.

    Unlike mmengine's ``Pretrained`` init (which warns and goes on), a file
    with no key for this module, or with tensors of other shapes (another
    arch), raises; a partial load logs every missing and unexpected key.

    Args:
        module: The backbone.
        filename: Checkpoint path or URL.
        prefix: Keep only keys under this prefix (e.g. ``'backbone.'``),
            with the prefix removed.
        map_location: As for ``torch.load``.
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    checkpoint = CheckpointLoader.load_checkpoint(filename, map_location)
    state_dict = checkpoint.get('state_dict', checkpoint) \
        if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state_dict, dict):
        raise CheckpointLoadError(
            f'{filename} holds a {type(state_dict).__name__}, not weights')
    if prefix and not prefix.endswith('.'):
        prefix += '.'  # as mmengine's Pretrained init accepts 'backbone'
    if prefix:
        found = {k[len(prefix):]: v for k, v in state_dict.items()
                 if k.startswith(prefix)}
        if not found:
            raise CheckpointLoadError(
                f'{filename} has no key starting with {prefix!r} (its keys '
                f'start {sorted(state_dict)[:3]}); convert released weights '
                'with tools/model_converters/conv2former_to_mmc2f.py, or set '
                'the init_cfg prefix to match the file')
        state_dict = found
    own = module.state_dict()
    mismatched = [
        f'{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}'
        for k, v in state_dict.items() if k in own and v.shape != own[k].shape
    ]
    if mismatched:
        raise CheckpointLoadError(
            f'{filename} is for another architecture than this '
            f'{type(module).__name__}; {len(mismatched)} tensors differ in '
            f'shape, e.g. {mismatched[:3]}')
    if not own.keys() & state_dict.keys():
        raise CheckpointLoadError(
            f'{filename} has no weight of this {type(module).__name__}: none '
            f'of its keys (e.g. {sorted(state_dict)[:3]}) is a parameter '
            f'name of the model (e.g. {sorted(own)[:3]})')
    missing, unexpected = module.load_state_dict(state_dict, strict=False)
    print_log(
        f'Loaded {len(own) - len(missing)}/{len(own)} tensors of '
        f'{type(module).__name__} from {filename}', logger='current')
    if missing or unexpected:
        print_log(
            f'Partial load from {filename}: missing in the file (kept at '
            f'their initialisation): {missing}; in the file but not in the '
            f'model (ignored): {unexpected}',
            logger='current',
            level=logging.WARNING)
