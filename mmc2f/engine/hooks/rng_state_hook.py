# Copyright (c) mmc2f contributors. All rights reserved.
import random
from typing import Any, Iterator, Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.runner import IterBasedTrainLoop


def _get_states() -> dict:
    return dict(
        python=random.getstate(),
        numpy=np.random.get_state(),
        torch=torch.get_rng_state(),
        cuda=torch.cuda.get_rng_state_all()
        if torch.cuda.is_available() else None)


def _set_states(state: dict) -> None:
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    # Loaded onto the training device; the setters take CPU tensors.
    torch.set_rng_state(state['torch'].cpu())
    if state['cuda'] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])


class _RestoreAfterSkip:
    """Stands in for an ``IterBasedTrainLoop``'s dataloader iterator while
    the loop skips the batches trained before the checkpoint: once the last
    of them is drawn, it sets the saved generator states and gives the loop
    its iterator back."""

    def __init__(self, loop: IterBasedTrainLoop, skipped: int,
                 state: dict) -> None:
        self._loop, self._iterator = loop, loop.dataloader_iterator
        self._left, self._state = skipped, state

    def __iter__(self) -> Iterator:
        return self

    def __next__(self) -> Any:
        batch = next(self._iterator)
        self._left -= 1
        if self._left == 0:
            _set_states(self._state)
            self._loop.dataloader_iterator = self._iterator
        return batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._iterator, name)


class RNGStateHook(Hook):
    """Saves the random generators' states in each checkpoint and restores
    them on ``--resume``, so that a resumed run draws the same stochastic
    depth masks, RoI samples and augmentations as a run that was never
    interrupted.

    mmengine re-seeds on resume, restarting every generator from the seed:
    without this hook, the iterations after a resume differ from those of
    an uninterrupted run even with ``randomness.deterministic=True``.
    Two more things draw from the generators between the checkpoint and the
    next iteration in one run but not in the other; the hook makes up for
    them:

    - an iteration-based loop fetches again the batches it skips on resume;
      with ``num_workers=0`` their augmentations, and each new epoch's
      dataloader iterator (unless its workers persist), draw in this
      process. The states are set after the skip.
    - validation (at checkpoint iterations in most configs) runs before the
      next iteration in the uninterrupted run only; each new dataloader
      iterator draws a seed. The states are saved before validation and set
      back after it, so the training draws never depend on it.

    Dataloader workers re-derive their seeds from the seed and replay the
    skipped batches, so their streams match already.
    """
    priority = 'VERY_LOW'
    KEY = 'rng_state'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault('meta', {})[self.KEY] = _get_states()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Only a resumed training continues the random streams (not
        # ``load_from``, not testing). The states are applied in
        # ``before_train``: after this hook, mmengine re-seeds whenever the
        # checkpoint's seed differs from the config's (always, for a config
        # without ``randomness.seed``), which would overwrite them.
        if not runner._resume:
            return
        self._state: Optional[dict] = checkpoint.get('meta', {}).get(self.KEY)
        if self._state is None:
            runner.logger.warning(
                'The checkpoint has no random-generator state (written '
                'without RNGStateHook): the resumed run will not repeat the '
                'random draws of an uninterrupted one.')

    def before_train(self, runner) -> None:
        state, self._state = getattr(self, '_state', None), None
        if state is None:
            return
        loop = runner.train_loop
        # mmengine's own run() skips exactly loop.iter batches after
        # before_train; another run() may not.
        if isinstance(loop, IterBasedTrainLoop) and loop.iter > 0 and \
                type(loop).run is IterBasedTrainLoop.run:
            loop.dataloader_iterator = _RestoreAfterSkip(
                loop, loop.iter, state)
        else:
            _set_states(state)

    def before_val(self, runner) -> None:
        self._before_val = _get_states()

    def after_val(self, runner) -> None:
        state, self._before_val = getattr(self, '_before_val', None), None
        if state is not None:
            _set_states(state)
