import os.path as osp
import subprocess
import sys

from tests.test_e2e.helpers import REPO


def test_config_without_library_scope_is_refused(tmp_path):
    config = tmp_path / 'plain.py'
    config.write_text("model = dict(type='Conv2Former')\n")
    result = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/train.py'), str(config)],
        capture_output=True, text=True)
    assert result.returncode != 0
    assert "default_scope=None" in result.stderr
    assert "mmdet::_base_/default_runtime.py" in result.stderr
