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


def test_tta_on_a_config_without_it_says_which_configs_have_it(tmp_path):
    result = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/test.py'),
         'configs/mask_rcnn/'
         'mask-rcnn_conv2former-t_fpn_amp-ms-crop-3x_coco.py',
         str(tmp_path / 'epoch_36.pth'), '--tta'],
        cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.startswith('error: --tta needs tta_model and '
                                    'tta_pipeline in configs/mask_rcnn/')
    assert 'The UperNet configs have them' in result.stderr
    assert 'Traceback' not in result.stderr
