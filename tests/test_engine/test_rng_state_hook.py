import itertools
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from mmengine.runner import Runner

from mmc2f.engine.hooks import RNGStateHook


def fake_runner(resume: bool) -> SimpleNamespace:
    return SimpleNamespace(_resume=resume, train_loop=None,
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


class NoisyModel(BaseModel):
    """Dropout: the training draws of the main process."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)
        # The same start in every run.
        nn.init.constant_(self.linear.weight, 0.1)
        nn.init.zeros_(self.linear.bias)
        self.dropout = nn.Dropout(0.5)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.linear(self.dropout(inputs))
        if mode == 'loss':
            return dict(loss=(out - labels).square().mean())
        return [dict(out=o) for o in out]


class NoisyDataset(torch.utils.data.Dataset):
    """A random augmentation from each generator, drawn by whichever
    process loads the data."""
    metainfo: dict = {}

    def __len__(self):
        return 6

    def __getitem__(self, i):
        noise = torch.rand(4) + np.random.rand() + random.random()
        return dict(inputs=torch.full((4, ), i / 6) + noise,
                    labels=torch.ones(1))


class CountMetric(BaseMetric):

    def process(self, data_batch, data_samples):
        self.results.append(len(data_samples))

    def compute_metrics(self, results):
        return dict(count=sum(results))


class LossLog(Hook):

    def __init__(self):
        self.losses = {}

    def after_train_iter(self, runner, batch_idx, data_batch, outputs=None):
        self.losses[runner.iter + 1] = outputs['loss'].item()


_RUNS = itertools.count()


def noisy_run(work_dir, max_iters, num_workers, **kwargs):
    log = LossLog()
    loader = dict(dataset=NoisyDataset(), batch_size=2,
                  num_workers=num_workers,
                  sampler=dict(type='DefaultSampler', shuffle=True),
                  collate_fn=dict(type='default_collate'))
    Runner(
        model=NoisyModel(), work_dir=work_dir, train_dataloader=loader,
        val_dataloader=dict(loader, sampler=dict(type='DefaultSampler',
                                                 shuffle=False)),
        val_evaluator=[CountMetric()], val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        # Validation and checkpoints at the same iterations, as in the
        # shipped configs.
        train_cfg=dict(by_epoch=False, max_iters=max_iters, val_interval=4),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                           interval=4, by_epoch=False)),
        custom_hooks=[RNGStateHook(), log], randomness=dict(seed=0),
        # mmengine names its logger and visualizer by the start second: a
        # run started in the same second as the last would write into its
        # work dir (an earlier test's is removed once that test passes).
        experiment_name=f'noisy_{next(_RUNS)}', **kwargs).train()
    return log.losses


@pytest.mark.parametrize('num_workers', [0, 1])
def test_resume_repeats_the_uninterrupted_run(tmp_path, num_workers):
    """The resumed run skips 8 batches over two epoch boundaries (3 batches
    an epoch): it fetches them again, in this process with num_workers=0,
    and starts two dataloader iterators; the uninterrupted run validated at
    the checkpoint instead."""
    reference = noisy_run(str(tmp_path / 'reference'), 10, num_workers)
    work_dir = str(tmp_path / 'resumed')
    noisy_run(work_dir, 8, num_workers)
    resumed = noisy_run(work_dir, 10, num_workers, resume=True)
    assert sorted(resumed) == [9, 10]
    for it in resumed:
        assert resumed[it] == reference[it], it
