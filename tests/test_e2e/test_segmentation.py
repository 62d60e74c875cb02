"""The paper's UperNet configs, trained and evaluated end to end (slide
inference) on a generated ADE20k-format set, through our tools and
MMSegmentation's own."""
import os.path as osp

import pytest

from mmc2f.toolkit.overrides import ade_overrides, to_cli
from mmc2f.toolkit.synthetic_data import make_ade_shapes
from tests.test_e2e.helpers import (load, run_tool, train_test_tools,
                                    written_images)

CONFIG = 'configs/upernet/upernet_conv2former-t_8xb2-amp-160k_ade20k-512x512.py'


@pytest.fixture(scope='module')
def ade(tmp_path_factory):
    return make_ade_shapes(str(tmp_path_factory.mktemp('ade')), num_train=4,
                           num_val=2, size=(128, 128))


def overrides(ade):
    # 512 crops become 128 (slide windows 128, stride 85); 150 classes kept.
    return to_cli(
        dict(ade_overrides(load(CONFIG), ade['data_root'], scale_factor=0.25),
             **{'model.backbone.init_cfg': None,
                'train_cfg.max_iters': 4,
                'train_cfg.val_interval': 4,
                'default_hooks.checkpoint.interval': 4}))


@pytest.mark.parametrize('tools', ['mmc2f', 'mmseg'])
def test_upernet_train_then_test(tmp_path, ade, tools):
    train, test = train_test_tools(tools)
    work_dir = str(tmp_path / 'work')
    run_tool(train, CONFIG, '--work-dir', work_dir, '--cfg-options',
             *overrides(ade))
    checkpoint = osp.join(work_dir, 'iter_4.pth')
    assert osp.isfile(checkpoint)

    show_dir = str(tmp_path / 'vis')
    # mmseg's own hook draws every 50th batch unless told otherwise.
    interval = [] if tools == 'mmc2f' else [
        'default_hooks.visualization.interval=1'
    ]
    output = run_tool(test, CONFIG, checkpoint, '--work-dir', work_dir,
                      '--show-dir', show_dir, '--cfg-options',
                      *overrides(ade), *interval)
    for metric in ('aAcc', 'mIoU', 'mAcc'):
        assert metric in output
    assert len(written_images(show_dir)) == 2
