import pytest

from mmc2f.toolkit.overrides import epoch_schedule
from tests.test_e2e.helpers import load


@pytest.mark.parametrize('config', [
    'configs/mask_rcnn/mask-rcnn_conv2former-t_fpn_amp-ms-crop-3x_coco.py',
    'configs/cascade_mask_rcnn/'
    'cascade-mask-rcnn_conv2former-s_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py',
])
def test_epoch_schedule_keeps_step_fractions(config):
    cfg = load(config)
    # The 3x schedule: steps at epochs 27 and 33 of 36.
    assert cfg.train_cfg.max_epochs == 36
    index = next(i for i, s in enumerate(cfg.param_scheduler)
                 if s.type == 'MultiStepLR')
    key = f'param_scheduler.{index}.milestones'
    out = epoch_schedule(cfg, 24)
    assert out[key] == [18, 22]
    assert out['train_cfg.max_epochs'] == 24
    assert out['train_cfg.val_begin'] == 25
    # Never a step at epoch 0, however short the run.
    assert epoch_schedule(cfg, 1)[key] == [1, 1]
