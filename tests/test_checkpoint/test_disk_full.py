"""A full disk during a checkpoint save: the save fails with an error that
says so, the previous checkpoint stays intact (even with
``max_keep_ckpts=1``, where mmengine removes it before saving), no
temporary file is left, and a resume after freeing space continues from it.
The full disk is a file-size limit (``RLIMIT_FSIZE``) in a subprocess."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

import mmc2f  # noqa: F401  registers the safe hook and backend
from mmc2f.checkpoint import atomic_open, safe_torch_load
from mmc2f.engine.hooks.checkpoint_hook import _last_checkpoint_kept
from tests.test_checkpoint.test_safe_load import ToyModel, toy_runner
from tests.test_e2e.helpers import REPO

resource = pytest.importorskip('resource')  # POSIX only


class BigToyModel(ToyModel):
    """Checkpoints of 1 MB: a file-size limit can stop them and not the
    logs."""

    def __init__(self):
        super().__init__()
        self.register_buffer('padding', torch.zeros(250_000))


def keep_one(interval: int = 2) -> dict:
    return dict(checkpoint=dict(type='mmc2f.SafeCheckpointHook',
                                interval=interval,
                                by_epoch=False, max_keep_ckpts=1))


# Resumes the toy run of work_dir with a file-size limit: writes past it
# fail with EFBIG (SIGXFSZ ignored, as it would otherwise kill the process).
LIMITED_RESUME = '''
import resource, signal, sys
import mmc2f
from tests.test_checkpoint.test_safe_load import toy_runner
from tests.test_checkpoint.test_disk_full import BigToyModel, keep_one
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
toy_runner(sys.argv[1], 4, BigToyModel(), resume=True,
           default_hooks=keep_one()).train()
'''


def test_full_disk_during_save(tmp_path):
    work_dir = str(tmp_path / 'work')
    toy_runner(work_dir, 2, BigToyModel(), default_hooks=keep_one()).train()
    previous = osp.join(work_dir, 'iter_2.pth')
    with open(previous, 'rb') as f:
        previous_bytes = f.read()

    # Room for logs and configs, not for a checkpoint.
    limit = len(previous_bytes) // 2
    result = subprocess.run(
        [sys.executable, '-c', LIMITED_RESUME, work_dir, str(limit)],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
        capture_output=True, text=True, timeout=300)
    assert result.returncode != 0, 'the save did not fail'
    assert (f'OSError: [Errno 27] Could not write '
            f'{osp.join(work_dir, "iter_4.pth")}: no space left (File too '
            'large') in result.stderr, result.stderr[-3000:]
    assert 'the files already there are unchanged. Free space, then continue ' \
        'from the last checkpoint, which is intact, with tools/train.py ' \
        '--resume' in result.stderr

    # The previous checkpoint is intact and still the one to resume from;
    # nothing partial is left.
    with open(previous, 'rb') as f:
        assert f.read() == previous_bytes
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read() == previous
    assert [f for f in os.listdir(work_dir)
            if f.startswith(('iter_', '.tmp-'))] == ['iter_2.pth']

    # Space freed: the resume continues from iteration 2, and outdated
    # checkpoints are removed once the new ones are saved.
    runner = toy_runner(work_dir, 6, BigToyModel(), resume=True,
                        default_hooks=keep_one())
    runner.train()
    assert runner.iter == 6
    assert safe_torch_load(osp.join(work_dir, 'iter_6.pth'))['meta'][
        'iter'] == 6
    assert not osp.exists(previous)
    assert not osp.exists(osp.join(work_dir, 'iter_4.pth'))


def test_last_checkpoint_restored_when_its_rewrite_fails(tmp_path):
    """mmengine rewrites last_checkpoint in place; a full disk there would
    leave it empty and --resume with nothing to resume from."""
    path = tmp_path / 'last_checkpoint'
    path.write_text('/work/iter_2.pth')
    with pytest.raises(OSError, match='No space'):
        with _last_checkpoint_kept(str(tmp_path)):
            with open(path, 'w') as f:  # truncated, then the write fails
                raise OSError(28, 'No space left on device')
    assert path.read_text() == '/work/iter_2.pth'


def test_atomic_write_on_full_disk_names_the_file(tmp_path):
    target = tmp_path / 'epoch_1.pth'
    target.write_bytes(b'previous')
    with pytest.raises(OSError, match=r'Could not write .*epoch_1.pth: no '
                       r'space left \(No space left on device') as e:
        with atomic_open(str(target)) as f:
            f.write(b'part of it')
            raise OSError(28, 'No space left on device')  # the next write
    assert e.value.errno == 28
    assert target.read_bytes() == b'previous'
    assert os.listdir(tmp_path) == ['epoch_1.pth']
