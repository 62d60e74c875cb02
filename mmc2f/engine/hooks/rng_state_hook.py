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
        state: Optional[dict] = checkpoint.get('meta', {}).get(self.KEY)
        if state is None:
            runner.logger.warning(
                'The checkpoint has no random-generator state (written '
                'without RNGStateHook): the resumed run will not repeat the '
                'random draws of an uninterrupted one.')
            return
        random.setstate(state['python'])
        np.random.set_state(state['numpy'])
        torch.set_rng_state(state['torch'])
        if state['cuda'] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state['cuda'])
