# Copyright (c) mmc2f contributors. All rights reserved.
import random
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook


class RNGStateHook(Hook):
    """Saves the random generators' states in each checkpoint and restores
    them on ``--resume``, so that a resumed run draws the same stochastic
    depth masks, RoI samples and main-process augmentations as a run that
    was never interrupted.

    mmengine re-seeds on resume, restarting every generator from the seed:
    without this hook, the iterations after a resume differ from those of
    an uninterrupted run even with ``randomness.deterministic=True``.
    Dataloader workers re-derive their seeds from the seed and replay the
    skipped batches, so their streams already match.
    """
    priority = 'VERY_LOW'
    KEY = 'rng_state'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = dict(
            python=random.getstate(),
            numpy=np.random.get_state(),
            torch=torch.get_rng_state(),
            cuda=torch.cuda.get_rng_state_all()
            if torch.cuda.is_available() else None)
        checkpoint.setdefault('meta', {})[self.KEY] = state

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
        random.setstate(state['python'])
        np.random.set_state(state['numpy'])
        # Loaded onto the training device; the setters take CPU tensors.
        torch.set_rng_state(state['torch'].cpu())
        if state['cuda'] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])
