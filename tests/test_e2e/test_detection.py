"""The paper's detection configs, trained and evaluated end to end on a
generated COCO-format set, through our tools and MMDetection's own."""
import os.path as osp

import pytest

from mmc2f.toolkit.synthetic_data import make_coco_shapes
from mmc2f.toolkit.overrides import coco_overrides, to_cli
from mmc2f.toolkit.synthetic_data import SHAPES
from tests.test_e2e.helpers import (load, run_tool, train_test_tools,
                                    written_images)

CONFIG = 'configs/mask_rcnn/mask-rcnn_conv2former-t_fpn_amp-ms-crop-3x_coco.py'


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    return make_coco_shapes(str(tmp_path_factory.mktemp('coco')),
                            num_train=4, num_val=2, size=(128, 128))


def overrides(coco, config=CONFIG):
    # No released checkpoint here: the backbone starts from its own init.
    return to_cli(
        dict(coco_overrides(load(config), coco, SHAPES, scale_factor=0.2),
             **{'model.backbone.init_cfg': None,
                'train_cfg.max_epochs': 1,
                'train_dataloader.batch_size': 2}))


@pytest.mark.parametrize('tools', ['mmc2f', 'mmdet'])
def test_mask_rcnn_train_then_test(tmp_path, coco, tools):
    train, test = train_test_tools(tools)
    work_dir = str(tmp_path / 'work')
    run_tool(train, CONFIG, '--work-dir', work_dir, '--cfg-options',
             *overrides(coco))
    checkpoint = osp.join(work_dir, 'epoch_1.pth')
    assert osp.isfile(checkpoint)

    # Tested as a user re-tests a run: with the config that mmengine dumped
    # into the work_dir, whose data_root='data/coco/' the datasets no longer
    # read (the options moved them; our tools refused it before).
    dumped = osp.join(work_dir, osp.basename(CONFIG))
    show_dir = str(tmp_path / 'vis')
    output = run_tool(test, dumped, checkpoint, '--work-dir', work_dir,
                      '--show-dir', show_dir, '--out',
                      str(tmp_path / 'results.pkl'))
    # pycocotools' summary for both tasks.
    assert 'coco/bbox_mAP' in output and 'coco/segm_mAP' in output
    assert 'Average Precision  (AP) @[ IoU=0.50:0.95' in output
    assert osp.isfile(tmp_path / 'results.pkl')
    assert len(written_images(show_dir)) == 2
