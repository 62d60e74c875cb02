# Copyright (c) mmc2f contributors. All rights reserved.
"""Safe checkpoint loading for torch >= 2.6, and atomic checkpoint writes.

torch now unpickles with ``weights_only=True`` by default, which refuses the
numpy and mmengine objects that mmengine's Runner writes into every checkpoint
(and the ``argparse.Namespace`` of timm's), while mmengine 0.10.7 calls
``torch.load`` without a choice. Turning ``weights_only`` off would let any
downloaded file run code. Instead, :func:`safe_torch_load` keeps the
weights-only unpickler and allows, for the duration of one load only, the
small set of data types such checkpoints hold. Nothing is allowlisted globally.

:func:`~mmc2f.utils.checkpoint_schemes.register_safe_loaders` makes every
scheme of mmengine's ``load_checkpoint`` (local paths, URLs and the schemes
that resolve to them; so ``init_cfg=dict(type='Pretrained')``, ``--resume``
and ``tools/test.py``) use it.
"""
import argparse
import codecs
import errno
import io
import logging
import os
import os.path as osp
import pickle
import re
import tempfile
import zipfile
from contextlib import contextmanager
from typing import (Any, BinaryIO, Callable, Dict, Iterable, Iterator, List,
                    Optional, Set, Tuple, Union)

import numpy as np
import torch
from mmengine.fileio import register_backend
from mmengine.fileio.backends import LocalBackend
from mmengine.logging import print_log

TRUST_ENV = 'MMC2F_TRUSTED_CHECKPOINTS'
# How a HistoryBuffer pickles its statistics methods: getattr(HistoryBuffer,
# name), the class's functions kept in each buffer's state.
_HISTORY_METHODS = frozenset({'min', 'max', 'mean', 'current'})
# A write that fails with one of these found no room: a full disk, a quota,
# a file-size limit.
_NO_SPACE = frozenset(
    getattr(errno, name) for name in ('ENOSPC', 'EFBIG', 'EDQUOT')
    if hasattr(errno, name))

MapLocation = Optional[Union[str, Callable, torch.device]]


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


def _restricted_bytes(*args: Any) -> bytes:
    """Stands in for ``builtins.bytes`` during unpickling. Pickle protocol 2
    writes an empty bytes object (the data of an empty numpy array, e.g. an
    empty HistoryBuffer's) as the call ``bytes()``; only that call is
    allowed, nothing that would convert or allocate from pickled
    arguments."""
    if args:
        raise pickle.UnpicklingError(
            'bytes() with arguments is not allowed while loading a checkpoint')
    return b''


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
    scalars, bytes (``_codecs.encode``, and ``bytes()`` for empty ones),
    ``argparse.Namespace`` and mmengine's ``HistoryBuffer`` with its
    statistics methods. None of them runs code."""
    from mmengine.logging import HistoryBuffer
    return _numpy_globals() + [
        codecs.encode,
        argparse.Namespace,
        HistoryBuffer,
        (_restricted_getattr, 'builtins.getattr'),
        (_restricted_bytes, 'builtins.bytes'),
    ]


# A URL entry: ``scheme://``, maybe after a cluster prefix (``cluster:s3://``).
_URL = r'(?:[\w-]+:)?[A-Za-z][\w+.-]*://'
_URL_START = re.compile(_URL)
# Where a URL entry ends: a separator before a path, another URL, an empty
# entry or the end (not one before a port, ``host:8080``).
_URL_END = re.compile(
    f'{re.escape(os.pathsep)}(?=[/~.]|{re.escape(os.pathsep)}|$|{_URL})')
_SEP = re.compile(re.escape(os.pathsep))


def trusted_entries(value: str) -> Tuple[Set[str], Set[str]]:
    """The URLs and the real paths that a ``MMC2F_TRUSTED_CHECKPOINTS``
    value lists, separated by ``os.pathsep`` as in ``PATH``.

    A URL holds the separator itself (``https://host:8080/m.pth``,
    ``cluster:s3://b/m.pth``): it runs to a separator followed by a path
    (``/``, ``~`` or ``.``), another URL, an empty entry or the end, and is
    trusted whole, never as a path or a part. A relative path right after a
    URL (``URL:weights/m.pth``) reads as part of it, so neither is trusted:
    write it ``./weights/m.pth``.
    """
    urls, paths = set(), set()
    while value:
        url = _URL_START.match(value)
        end = (_URL_END.search(value, url.end()) if url else
               _SEP.search(value))
        entry, value = ((value, '') if end is None else
                        (value[:end.start()], value[end.end():]))
        if url:
            urls.add(entry)
        elif entry:
            paths.add(osp.realpath(osp.expanduser(entry)))
    return urls, paths


def _is_trusted(filename: Optional[str], source: Optional[str]) -> bool:
    """Whether the user allowed this file's code to run: its path, or the
    URL it came from, is an entry of ``MMC2F_TRUSTED_CHECKPOINTS``."""
    urls, paths = trusted_entries(os.environ.get(TRUST_ENV, ''))
    return (source is not None and source in urls) or (
        filename is not None and osp.realpath(filename) in paths)


def safe_torch_load(filename: str,
                    map_location: MapLocation = 'cpu',
                    source: Optional[str] = None) -> Any:
    """``torch.load`` that never executes code from the file.

    Args:
        filename (str): Path of a local checkpoint.
        map_location: As for ``torch.load``. Defaults to ``'cpu'``.
        source (str, optional): The URL ``filename`` was downloaded from:
            named in errors, and an entry of ``MMC2F_TRUSTED_CHECKPOINTS``
            that trusts the file.

    Raises:
        FileNotFoundError: The file does not exist.
        CheckpointLoadError: The file is damaged (truncated, corrupt, not a
            checkpoint, a checksum that does not match), or its pickle
            references code; the message names the file, the problem and,
            for the latter, how to load it if the user trusts it.
    """
    if osp.isdir(filename):
        raise FileNotFoundError(f'Checkpoint {filename} is a folder: give '
                                'the checkpoint file in it')
    if not osp.isfile(filename):
        scheme = _URL_START.match(filename)
        raise FileNotFoundError(
            f'Checkpoint file {filename} does not exist' +
            (f' (as a URL, its scheme {scheme.group()} is not one that '
             'checkpoints load from, e.g. https://, s3://, open-mmlab://)'
             if scheme else ''))
    # Unreadable (permissions) is an OSError that names the file, not a
    # damaged file: raise it here, before any content error is caught.
    open(filename, 'rb').close()
    return _load(filename, map_location, _Origin(filename, source))


def safe_torch_load_bytes(data: bytes,
                          source: str,
                          map_location: MapLocation = 'cpu') -> Any:
    """:func:`safe_torch_load` of a checkpoint read into memory from
    ``source`` (a remote path, which errors name and which
    ``MMC2F_TRUSTED_CHECKPOINTS`` may list)."""
    return _load(io.BytesIO(data), map_location, _Origin(None, source))


class _Origin:
    """Where a checkpoint came from, as errors name it."""

    def __init__(self, filename: Optional[str], source: Optional[str]):
        self.filename, self.source = filename, source
        if source is None:
            self.name = str(filename)
        elif filename is None:
            self.name = source
        else:
            self.name = f'{source} (downloaded to {filename})'
        # What to list in MMC2F_TRUSTED_CHECKPOINTS.
        self.trust_key = source or str(filename)
        # How to get an undamaged copy.
        self.fix = (f'delete {filename} to download it again'
                    if source is not None and filename is not None else
                    'download or copy it again')


def _load(file: Union[str, BinaryIO], map_location: MapLocation,
          origin: _Origin) -> Any:
    trusted = _is_trusted(origin.filename, origin.source)
    try:
        _verify_checksums(file)
        if trusted:
            return torch.load(_rewound(file), map_location=map_location,
                              weights_only=False)
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            return torch.load(_rewound(file), map_location=map_location,
                              weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = None if trusted else _unsafe_globals(file, e)
        if unsafe is None:
            raise _damaged(origin, e) from None
        # The unpickler's own sentence, without torch's advice around it.
        reason = next((line.strip() for line in str(e).splitlines()
                       if 'GLOBAL' in line), str(e).split(
                           'WeightsUnpickler error:')[-1].split(
                               'Check the documentation')[0].strip())
        raise CheckpointLoadError(
            f'Refused to load checkpoint {origin.name}: its pickle references '
            f'{", ".join(unsafe) or "objects"} that could execute code when '
            f'loaded ({reason}). If you trust this file, allow it explicitly '
            f'with {TRUST_ENV}={origin.trust_key} (entries separated by '
            f'"{os.pathsep}")') from None
    except (MemoryError, torch.cuda.OutOfMemoryError):
        raise  # the file may be fine: the memory (of map_location) is short
    except Exception as e:
        # Damaged content fails anywhere in the zip reader or the unpickler,
        # with any error type (IndexError, KeyError, UnicodeDecodeError,
        # struct.error, ...): all of them mean the same to the user.
        raise _damaged(origin, e) from None


def _rewound(file: Union[str, BinaryIO]) -> Union[str, BinaryIO]:
    if not isinstance(file, str):
        file.seek(0)
    return file


def _verify_checksums(file: Union[str, BinaryIO]) -> None:
    """Check the CRC-32 of every record of a zip checkpoint.

    ``torch.load`` does not: a flipped bit in a tensor's bytes loads as a
    wrong weight, silently. Python's zip reader checks each record's CRC as
    it reads to the end; that is one extra read of the file.
    """
    if not zipfile.is_zipfile(_rewound(file)):
        return  # torch's legacy format, or damaged: torch.load reports it
    with zipfile.ZipFile(_rewound(file)) as archive:
        for info in archive.infolist():
            if info.CRC == 0 and info.file_size:
                # Saved with torch.serialization.set_crc32_options(False).
                continue
            with archive.open(info) as record:
                while record.read(1 << 24):
                    pass


def _unsafe_globals(file: Union[str, BinaryIO],
                    error: Exception) -> Optional[List[str]]:
    """Globals of a readable checkpoint beyond what we allow; None when the
    file is no readable torch checkpoint at all. A zip checkpoint is listed
    whole; for torch's legacy format, the unpickler's ``error`` names the
    first it met."""
    if zipfile.is_zipfile(_rewound(file)):
        try:
            found = torch.serialization.get_unsafe_globals_in_checkpoint(
                _rewound(file))
        except Exception:
            return None
    else:
        found = re.findall(r'GLOBAL ([\w.]+)', str(error))
        if not found:
            return None
    allowed = {
        g[1] if isinstance(g, tuple) else f'{g.__module__}.{g.__qualname__}'
        for g in checkpoint_safe_globals()
    }
    return [name for name in found if name not in allowed]


def _damaged(origin: _Origin, error: Exception) -> CheckpointLoadError:
    return CheckpointLoadError(
        f'Checkpoint file {origin.name} is truncated or corrupt and cannot be '
        f'read ({type(error).__name__}: {str(error)[:200]}); {origin.fix}')


# The process's umask (reading it means setting it: set it straight back).
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_open(
    filename: str,
    then: str = 'continue from the last checkpoint, which is intact, with '
    'tools/train.py --resume'
) -> Iterator[BinaryIO]:
    """Open ``filename`` for binary writing such that it appears complete or
    not at all: a temporary file in the same directory, fsynced, renamed over
    the target on success and removed on any error or interruption.

    Args:
        filename: The file to write.
        then: What to do once space is freed, for the error (default: a
            training checkpoint's).

    Raises:
        OSError: The disk is full, a quota or a file-size limit is reached
            (same errno); the message names the file and says that nothing
            was changed.
    """
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
    except OSError as e:
        if e.errno not in _NO_SPACE:
            raise
        raise OSError(
            e.errno,
            f'Could not write {filename}: no space left ({e.strerror}: the '
            'disk is full, or a quota or file-size limit is reached). Nothing '
            'was written: no partial file is left, and the files already '
            f'there are unchanged. Free space, then {then}') from e
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose writes (``put``, through which
    the Runner saves every checkpoint, and ``put_text``) are atomic: a kill
    or a full disk during the write leaves the previous file or none, never
    a partial one that ``--resume`` would pick up."""

    def put(self, obj: bytes, filepath: Union[str, 'os.PathLike']) -> None:
        with atomic_open(str(filepath)) as f:
            f.write(obj)

    def put_text(self,
                 obj: str,
                 filepath: Union[str, 'os.PathLike'],
                 encoding: str = 'utf-8') -> None:
        self.put(obj.encode(encoding), filepath)


def register_atomic_local_backend() -> None:
    """Make mmengine write local files (checkpoints) atomically."""
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')


def _weights_of(filename: str,
                map_location: MapLocation) -> Tuple[dict, dict]:
    """The weights of a checkpoint (its ``state_dict``, or the file itself)
    and its ``meta`` ({} where it has none), through every scheme's safe
    loader."""
    from mmengine.runner.checkpoint import CheckpointLoader
    checkpoint = CheckpointLoader.load_checkpoint(filename, map_location)
    state_dict = checkpoint.get('state_dict', checkpoint) \
        if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state_dict, dict):
        raise CheckpointLoadError(
            f'{filename} holds a {type(state_dict).__name__}, not weights')
    meta = checkpoint.get('meta') if state_dict is not checkpoint else None
    return state_dict, meta if isinstance(meta, dict) else {}


def shape_differences(
        shapes: Dict[str, Optional[torch.Size]],
        state_dict: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    """The keys of ``shapes`` that ``state_dict`` lacks, and ``'key: file S
    vs model S'`` for each it holds in another shape (a None shape takes
    any)."""
    missing = [k for k in shapes if k not in state_dict]
    mismatched = [
        f'{k}: file {tuple(getattr(state_dict[k], "shape", ()))} vs model '
        f'{tuple(shape)}' for k, shape in shapes.items()
        if shape is not None and k in state_dict
        and getattr(state_dict[k], 'shape', None) != shape
    ]
    return missing, mismatched


def describe_differences(shapes: Dict[str, Optional[torch.Size]],
                         state_dict: Dict[str, Any]) -> str:
    """What :func:`shape_differences` finds, in words ('' for nothing)."""
    missing, mismatched = shape_differences(shapes, state_dict)
    return '; '.join(
        ([f'{len(missing)} of the {len(shapes)} tensors are missing (e.g. '
          f'{missing[:3]})'] if missing else []) +
        ([f'{len(mismatched)} differ in shape (e.g. {mismatched[:3]})']
         if mismatched else []))


def check_trained_checkpoint(model: torch.nn.Module, filename: str) -> dict:
    """Raise CheckpointLoadError unless ``filename`` holds every tensor of
    ``model`` in its shape; else return the checkpoint's ``meta`` ({} where
    it has none: its ``dataset_meta`` names the classes), so that callers
    need not load the file again.

    Testing and inference load with mmengine's ``strict=False``, which only
    logs what it could not load: another config's checkpoint, or a released
    file not yet converted, would give the predictions of random weights.
    A wrapped model (distributed, test-time augmentation) is checked
    without its wrapper, as mmengine loads it.
    """
    while isinstance(getattr(model, 'module', None), torch.nn.Module):
        model = model.module
    weights, meta = _weights_of(filename, 'cpu')
    # mmengine's loader drops the prefix of a file saved from a wrapper.
    state_dict = {re.sub(r'^module\.', '', k): v for k, v in weights.items()}
    own = {
        k: v.shape
        for k, v in model.state_dict().items()
        if not k.endswith('num_batches_tracked')
    }
    problems = describe_differences(own, state_dict)
    if problems:
        raise CheckpointLoadError(
            f'{filename} is not a checkpoint of this {type(model).__name__}: '
            f'{problems}. Give the checkpoint that tools/train.py '
            'wrote for this config (for an ImageNet config, a released file '
            'converted by tools/model_converters/conv2former_to_mmc2f.py)')
    return meta


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
    if not _URL_START.match(filename) and not osp.exists(
            osp.expanduser(filename)):
        # The first run of a config whose ImageNet file is not there yet.
        raise FileNotFoundError(
            f'The pretrained backbone file {filename} does not exist: '
            'download the released ImageNet file of this arch (README: Model '
            'zoo) and convert it with '
            f'tools/model_converters/conv2former_to_mmc2f.py to {filename}, '
            'or train from scratch with --cfg-options '
            'model.backbone.init_cfg=None')
    state_dict, _ = _weights_of(filename, map_location)
    if prefix and not prefix.endswith('.'):
        prefix += '.'  # as mmengine's Pretrained init accepts 'backbone'
    # A whole model's file (a detector's, or an ImageNet classifier's) holds
    # the other parts too; loading its backbone is a normal use.
    others: Dict[str, int] = {}
    if prefix:
        found = {k[len(prefix):]: v for k, v in state_dict.items()
                 if k.startswith(prefix)}
        if not found:
            raise CheckpointLoadError(
                f'{filename} has no key starting with {prefix!r} (its keys '
                f'start {sorted(state_dict)[:3]}); convert released weights '
                'with tools/model_converters/conv2former_to_mmc2f.py, or set '
                'the init_cfg prefix to match the file')
        for key in state_dict:
            if not key.startswith(prefix):
                part = key.split('.', 1)[0]
                others[part] = others.get(part, 0) + 1
        state_dict = found
    own = module.state_dict()
    _, mismatched = shape_differences({k: v.shape
                                       for k, v in own.items()}, state_dict)
    if mismatched:
        raise CheckpointLoadError(
            f'{filename} is for another architecture than this '
            f'{type(module).__name__}; {len(mismatched)} tensors differ in '
            f'shape, e.g. {mismatched[:3]}')
    if not own.keys() & state_dict.keys():
        hint = _prefix_of(state_dict.keys(), own.keys())
        raise CheckpointLoadError(
            f'{filename} has no weight of this {type(module).__name__}: none '
            f'of its keys (e.g. {sorted(state_dict)[:3]}) is a parameter '
            f'name of the model (e.g. {sorted(own)[:3]})' +
            (f'; they are there under {hint!r}: set the init_cfg prefix to '
             f'{(prefix or "") + hint!r}' if hint else ''))
    missing, unexpected = module.load_state_dict(state_dict, strict=False)
    print_log(
        f'Loaded {len(own) - len(missing)}/{len(own)} tensors of '
        f'{type(module).__name__} from {filename}' +
        (f' (not loaded: the tensors outside {prefix!r}, {others})'
         if others else ''), logger='current')
    if missing or unexpected:
        print_log(
            f'Partial load from {filename}: missing in the file (kept at '
            f'their initialisation): {missing}; in the file but not in the '
            f'model (ignored): {unexpected}',
            logger='current',
            level=logging.WARNING)


def _prefix_of(keys: Iterable[str], names: Iterable[str]) -> Optional[str]:
    """The prefix under which ``keys`` hold some of ``names``
    (``'backbone.'`` for a detector's file and a backbone's names)."""
    names = set(names)
    for key in keys:
        parts = key.split('.')
        for i in range(1, len(parts)):
            if '.'.join(parts[i:]) in names:
                return '.'.join(parts[:i]) + '.'
    return None
