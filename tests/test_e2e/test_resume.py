"""A training run killed with SIGKILL resumes with ``--resume`` at the right
iteration, with the same learning rates and, with deterministic settings,
the same losses as a run that was never interrupted."""
import glob
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest

from mmc2f.checkpoint import safe_torch_load
from mmc2f.toolkit.overrides import SMALL_UPERNET, ade_overrides, to_cli
from mmc2f.toolkit.synthetic_data import make_ade_shapes
from tests.test_e2e.helpers import REPO, load, run_tool

CONFIG = 'configs/upernet/upernet_conv2former-t_8xb2-amp-160k_ade20k-512x512.py'
TRAIN = osp.join(REPO, 'tools/train.py')


def logged(work_dir: str) -> dict:
    """iteration -> (loss, lr) from the scalar log of the newest run in a
    work dir (not mixed with a killed run's lines for the same iterations:
    the timestamped run folders sort by time)."""
    out = {}
    newest = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                       'scalars.json')))[-1]
    with open(newest) as f:
        for line in f:
            record = json.loads(line)
            if 'loss' in record:
                out[record['iter']] = (record['loss'], record['lr'])
    return out


def last_checkpoint_iter(work_dir: str) -> int:
    try:
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            name = osp.basename(f.read().strip())
    except FileNotFoundError:
        return 0
    return int(name[len('iter_'):-len('.pth')]) if name else 0


@pytest.fixture(scope='module')
def options(tmp_path_factory):
    root = make_ade_shapes(str(tmp_path_factory.mktemp('ade')), num_train=8,
                           num_val=1, size=(64, 64))['data_root']
    return dict(
        ade_overrides(load(CONFIG), root, scale_factor=0.125),
        **SMALL_UPERNET, **{
            'model.backbone.init_cfg': None,
            # Stochastic depth stays on: the resumed run must redraw the
            # same masks.
            'randomness.seed': 0,
            'randomness.deterministic': True,
            'train_dataloader.batch_size': 2,
            'train_dataloader.num_workers': 1,
            'train_cfg.val_interval': 1000,
            'default_hooks.logger.interval': 1,
            'default_hooks.checkpoint.interval': 2,
        })


# With a dataloader worker: its random state comes from the checkpoint too.
# (num_workers=0, where the skipped batches' augmentations are drawn again
# in the main process, is resumed in-process by
# tests/test_engine/test_rng_state_hook.py.)
def test_sigkill_then_resume_repeats_the_uninterrupted_run(tmp_path, options):
    options = dict(options, **{'train_dataloader.num_workers': 1,
                               'train_dataloader.persistent_workers': True})
    reference_dir = str(tmp_path / 'reference')
    run_tool(TRAIN, CONFIG, '--work-dir', reference_dir, '--cfg-options',
             *to_cli(dict(options, **{'train_cfg.max_iters': 12})))
    reference = logged(reference_dir)
    assert sorted(reference) == list(range(1, 13))

    # The same run, killed without warning once a checkpoint at iteration
    # >= 4 is complete (the poly schedule runs to 160k iterations whatever
    # max_iters is, so the longer max_iters changes nothing before the kill).
    work_dir = str(tmp_path / 'killed')
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='2')
    proc = subprocess.Popen(
        [sys.executable, TRAIN, CONFIG, '--work-dir', work_dir,
         '--cfg-options', *to_cli(dict(options,
                                       **{'train_cfg.max_iters': 1000}))],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while last_checkpoint_iter(work_dir) < 4 and proc.poll() is None:
        assert time.time() < deadline, 'no checkpoint within 10 minutes'
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed_from = last_checkpoint_iter(work_dir)
    assert 4 <= resumed_from <= 10
    # Every checkpoint on disk is complete (atomic writes).
    for path in glob.glob(osp.join(work_dir, '*.pth')):
        safe_torch_load(path)

    output = run_tool(
        TRAIN, CONFIG, '--work-dir', work_dir, '--resume', '--cfg-options',
        *to_cli(dict(options, **{'train_cfg.max_iters': resumed_from + 2})))
    assert f'resumed epoch: 0, iter: {resumed_from}' in output
    resumed = logged(work_dir)
    assert sorted(resumed) == [resumed_from + 1, resumed_from + 2]
    for it in (resumed_from + 1, resumed_from + 2):
        loss, lr = resumed[it]
        assert lr == reference[it][1]
        assert loss == pytest.approx(reference[it][0], rel=1e-6, abs=1e-7)
