# Copyright (c) mmc2f contributors. All rights reserved.
"""Checkpoint files written so that they appear complete or not at all."""
import errno
import os
import os.path as osp
import tempfile
from contextlib import contextmanager
from typing import BinaryIO, Iterator, Union

from mmengine.fileio.backends import LocalBackend

# The name under which mmc2f.registry registers AtomicLocalBackend with
# mmengine; SafeCheckpointHook writes local checkpoints through it.
ATOMIC_BACKEND = 'mmc2f_atomic_local'
# A write that fails with one of these found no room: a full disk, a quota,
# a file-size limit.
_NO_SPACE = frozenset(
    getattr(errno, name) for name in ('ENOSPC', 'EFBIG', 'EDQUOT')
    if hasattr(errno, name))

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
