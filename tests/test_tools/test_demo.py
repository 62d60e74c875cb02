"""tools/demo.py's arguments are checked before anything trains: a
segmentation run no longer than its warm-up failed only after the detector
had trained for minutes."""
import os.path as osp
import subprocess
import sys

import pytest

from tests.test_e2e.helpers import REPO


@pytest.mark.parametrize('args, message', [
    (['--seg-iters', '4'], '--seg-iters must exceed the 20-iteration warm-up'),
    (['--det-epochs', '0'], '--det-epochs must be at least 1'),
    (['--num-val', '0'], '--num-val must be at least 1'),
])
def test_arguments_refused_before_any_work(tmp_path, args, message):
    out = tmp_path / 'demo'
    result = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/demo.py'), '--out-dir',
         str(out), *args], cwd=REPO, capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 2
    assert message in result.stderr
    assert not out.exists()
