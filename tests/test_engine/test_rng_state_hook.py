import random
from types import SimpleNamespace

import numpy as np
import torch
from mmengine.logging import MMLogger

from mmc2f.engine.hooks import RNGStateHook


def fake_runner(resume: bool) -> SimpleNamespace:
    return SimpleNamespace(_resume=resume,
                           logger=MMLogger.get_instance('rng_state_hook'))


def draws():
    return random.random(), np.random.rand(), torch.rand(1).item()


def test_states_survive_mmengines_reseed_on_resume():
    hook, checkpoint = RNGStateHook(), {}
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    hook.before_save_checkpoint(None, checkpoint)
    expected = draws()
    runner = fake_runner(resume=True)
    hook.after_load_checkpoint(runner, checkpoint)
    # What Runner.resume does next when the seeds differ.
    torch.manual_seed(2), np.random.seed(2), random.seed(2)
    hook.before_train(runner)
    assert draws() == expected


def test_load_from_and_testing_leave_the_generators_alone():
    hook, checkpoint = RNGStateHook(), {}
    torch.manual_seed(1)
    hook.before_save_checkpoint(None, checkpoint)
    runner = fake_runner(resume=False)
    hook.after_load_checkpoint(runner, checkpoint)
    torch.manual_seed(2)
    expected = torch.rand(1)
    torch.manual_seed(2)
    hook.before_train(runner)
    assert torch.equal(torch.rand(1), expected)
