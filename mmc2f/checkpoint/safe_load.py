# Copyright (c) mmc2f contributors. All rights reserved.
"""Safe checkpoint loading for torch >= 2.6.

torch now unpickles with ``weights_only=True`` by default, which refuses the
numpy and mmengine objects that mmengine's Runner writes into every checkpoint
(and the ``argparse.Namespace`` of timm's), while mmengine 0.10.7 calls
``torch.load`` without a choice. Turning ``weights_only`` off would let any
downloaded file run code. Instead, :func:`safe_torch_load` keeps the
weights-only unpickler and allows, for the duration of one load only, the
small set of data types such checkpoints hold. Nothing is allowlisted globally.

:func:`~mmc2f.checkpoint.schemes.register_safe_loaders` makes every
scheme of mmengine's ``load_checkpoint`` (local paths, URLs and the schemes
that resolve to them; so ``init_cfg=dict(type='Pretrained')``, ``--resume``
and ``tools/test.py``) use it.
"""
import argparse
import codecs
import io
import os
import os.path as osp
import pickle
import re
import zipfile
from typing import (Any, BinaryIO, Callable, List, Optional, Set, Tuple,
                    Union)

import numpy as np
import torch

TRUST_ENV = 'MMC2F_TRUSTED_CHECKPOINTS'
# How a HistoryBuffer pickles its statistics methods: getattr(HistoryBuffer,
# name), the class's functions kept in each buffer's state.
_HISTORY_METHODS = frozenset({'min', 'max', 'mean', 'current'})

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
