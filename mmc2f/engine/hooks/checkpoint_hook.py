# Copyright (c) mmc2f contributors. All rights reserved.
import logging
import os.path as osp
from contextlib import contextmanager
from typing import Any, Callable, Iterator, List, Tuple

from mmengine.fileio import get_file_backend
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

from ...checkpoint import ATOMIC_BACKEND, atomic_open


class _DeferredRemovals:
    """A file backend whose ``remove`` and ``rmtree`` wait for
    :meth:`apply`; everything else goes to the wrapped backend."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self._pending: List[Tuple[Callable[[str], None], str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def remove(self, path: str) -> None:
        self._pending.append((self._backend.remove, path))

    def rmtree(self, path: str) -> None:
        self._pending.append((self._backend.rmtree, path))

    def apply(self, keep: set) -> None:
        for remove, path in self._pending:
            if path not in keep:
                remove(path)


class SafeCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` that writes local checkpoints atomically
    and removes outdated checkpoints only once the new one is saved.

    mmengine's local backend writes a checkpoint in place: a kill or a full
    disk during the save leaves a partial file, which ``--resume`` then
    picks up. Here a local checkpoint goes to a temporary file renamed over
    the target when complete (:class:`~mmc2f.checkpoint.AtomicLocalBackend`);
    other backends (``backend_args``, a remote ``out_dir``) are left as
    configured.

    mmengine 0.10.7 removes the oldest of ``max_keep_ckpts`` checkpoints (and
    the previous best one) *before* it writes the new one: a save that fails,
    on a full disk say, leaves one checkpoint fewer (none, with
    ``max_keep_ckpts=1``) and ``last_checkpoint`` naming a deleted file. Here
    the removals wait until the save has succeeded, and a failed save leaves
    ``last_checkpoint`` as it was. The price: the disk needs room for one
    checkpoint more while a new one is written.

    mmc2f's configs name it: ``default_hooks = dict(checkpoint=dict(
    type='mmc2f.SafeCheckpointHook'))``, which keeps the library's other
    settings of the hook.
    """

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if (self.file_client_args is None and self.backend_args is None
                and type(self.file_backend) is LocalBackend):
            # runner.save_checkpoint receives the same backend_args.
            self.backend_args = dict(backend=ATOMIC_BACKEND)
            self.file_backend = get_file_backend(
                self.out_dir, backend_args=self.backend_args)

    @contextmanager
    def _removals_after_success(self) -> Iterator[None]:
        backend = self.file_backend
        deferred = _DeferredRemovals(backend)
        self.file_backend = deferred
        try:
            yield
        finally:
            self.file_backend = backend
        # Never remove what this save has just written under the same name.
        keep = {self.last_ckpt, getattr(self, 'best_ckpt_path', None),
                *getattr(self, 'best_ckpt_path_dict', {}).values()}
        deferred.apply(keep)

    def _save_checkpoint_with_step(self, runner, step: int,
                                   meta: dict) -> None:
        with self._removals_after_success(), \
                _last_checkpoint_kept(runner.work_dir):
            super()._save_checkpoint_with_step(runner, step, meta)

    def _save_best_checkpoint(self, runner, metrics: dict) -> None:
        with self._removals_after_success():
            super()._save_best_checkpoint(runner, metrics)


@contextmanager
def _last_checkpoint_kept(work_dir: str) -> Iterator[None]:
    """mmengine rewrites ``work_dir/last_checkpoint`` in place: a write that
    fails truncates it, and ``--resume`` would find no checkpoint. Put the
    previous content back if the save fails after that."""
    path = osp.join(work_dir, 'last_checkpoint')
    previous = None
    if osp.isfile(path):
        with open(path) as f:
            previous = f.read()
    try:
        yield
    except BaseException:
        if previous is not None:
            _restore(path, previous)
        raise


def _restore(path: str, content: str) -> None:
    try:
        with open(path) as f:
            if f.read() == content:
                return
    except OSError:
        pass  # gone or unreadable: write it
    try:
        with atomic_open(path) as f:
            f.write(content.encode())
    except OSError as e:
        print_log(
            f'Could not restore {path} (it named {content!r}): {e}. Resume '
            f'with tools/train.py --resume {content}',
            logger='current', level=logging.WARNING)
