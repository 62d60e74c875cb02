"""tools/analysis/train_check.py: the paper's configs trained briefly on
generated data and tested, through our tools and the libraries' own."""
import json
import math
import os
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config

from mmc2f.toolkit import train_check
from mmc2f.toolkit.train_check import (CheckResult, format_results, main,
                                       read_train_log, resolve_config,
                                       schedule_overrides)
from tests.test_e2e.helpers import REPO

MASK_RCNN = ('configs/mask_rcnn/'
             'mask-rcnn_conv2former-t_fpn_amp-ms-crop-3x_coco.py')
UPERNET = ('configs/upernet/'
           'upernet_conv2former-t_8xb2-amp-160k_ade20k-512x512.py')


def test_schedules():
    det = schedule_overrides(Config.fromfile(osp.join(REPO, MASK_RCNN)),
                             iters=300, iters_per_epoch=20)
    # 15 epochs of 20; the 3x schedule's steps (27, 33 of 36) at 11 and 14.
    assert det['train_cfg.max_epochs'] == 15
    assert det['param_scheduler.1.milestones'] == [11, 14]
    assert det['param_scheduler.0.end'] == 30  # warm-up: the first tenth
    assert det['train_cfg.val_begin'] == 16  # no validation
    assert det['default_hooks.checkpoint.interval'] == 15  # the last only
    seg = schedule_overrides(Config.fromfile(osp.join(REPO, UPERNET)),
                             iters=300, iters_per_epoch=20)
    assert seg['train_cfg.max_iters'] == 300
    assert (seg['param_scheduler.0.end'], seg['param_scheduler.1.begin'],
            seg['param_scheduler.1.end']) == (30, 30, 300)
    assert seg['train_cfg.val_begin'] == 301
    assert seg['log_processor.window_size'] == 15


def test_library_configs_resolve():
    path = resolve_config('mmdet::convnext/'
                          'mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py')
    assert osp.isfile(path) and '.mim' in path
    with pytest.raises(FileNotFoundError, match='mmseg::nope.py'):
        resolve_config('mmseg::nope.py')


def test_log_reading_and_verdict(tmp_path):
    """What mmengine writes, read back; the verdict on losses."""
    run = tmp_path / '20261125_120000' / 'vis_data'
    run.mkdir(parents=True)
    rows = [dict(lr=1e-4, data_time=0.01, loss=loss, time=t, iter=i,
                 memory=mem, step=i)
            for i, loss, t, mem in ((10, 3.0, 2.0, 900), (20, 2.5, 0.5, 1000),
                                    (30, 2.0, 0.4, 1000), (40, 1.0, 0.6, 980))]
    (run / 'scalars.json').write_text(
        '\n'.join(map(json.dumps, rows)) + '\n')
    result = CheckResult('cfg', 'mmc2f', batch_size=2)
    read_train_log(result, str(tmp_path))
    assert result.losses == [3.0, 2.5, 2.0, 1.0] and result.iters == 40
    assert result.s_per_iter == 0.5  # median without the first interval
    assert result.peak_mib == 1000 and result.mib_per_image == 500
    assert result.falls and not result.passed  # not tested yet
    result.metrics = {'mIoU': 50.0}
    assert result.passed
    assert 'yes' in format_results([result])
    result.losses[2] = float('nan')
    assert not result.falls and 'NOT FINITE' in format_results([result])


def test_bad_arguments():
    with pytest.raises(SystemExit):
        main([UPERNET, '--iters', '0'])


@pytest.mark.slow  # the same training as tests/test_e2e/test_detection.py
def test_paper_config_trains_and_tests(tmp_path):
    """Mask R-CNN (with an N backbone, for time) through our tools, at an
    eighth of the real image sizes (a 2-core machine), on a generated set.
    Four iterations need not lower the loss: the exit status must say what
    the json says. (The libraries' own tools and torchrun run our configs in
    tests/test_e2e and tests/test_tools/test_dist_train.py; their commands
    here are checked below.)"""
    work_dir = tmp_path / 'check'
    tool = osp.join(REPO, 'tools', 'analysis', 'train_check.py')
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='2')
    run = subprocess.run(
        [sys.executable, tool, MASK_RCNN, '--iters', '4', '--num-train', '4',
         '--num-val', '2', '--scale', '0.125', '--work-dir', str(work_dir),
         '--cfg-options', 'model.backbone.arch=nano',
         'model.neck.in_channels=[64,128,256,512]'],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    (result, ) = json.loads((work_dir / 'train_check.json').read_text())
    assert run.returncode == (0 if result['passed'] else 1), \
        run.stdout + run.stderr[-3000:]
    assert result['config'] in run.stdout and not result['error']
    assert result['iters'] == 4 and len(result['losses']) == 4
    assert all(map(math.isfinite, result['losses']))
    assert result['tools'] == 'mmc2f'
    det_dir = work_dir / (osp.splitext(osp.basename(MASK_RCNN))[0] +
                          '_mmc2f')
    assert (det_dir / 'last_checkpoint').is_file()
    assert 'coco/segm_mAP' in (det_dir / 'test.log').read_text()
    # The set was generated at an eighth of 800x1333.
    assert sorted(p.name for p in (work_dir / 'data').iterdir()) == [
        'mmdet_4+2_100x167']


@pytest.mark.parametrize('gpus', [0, 2])
def test_library_tools_commands(gpus):
    """--tools library runs the tools the library's package ships."""
    from mmc2f.toolkit.cli import library_file
    # (Not imported by name: pytest would collect test_command.)
    train = train_check.train_command('library', 'mmseg', gpus, 'c.py')
    test = train_check.test_command('library', 'mmseg', gpus, 'c.py', 'w.pth')
    name = 'dist_{}.sh' if gpus else '{}.py'
    for command, step in ((train, 'train'), (test, 'test')):
        script = library_file('mmseg', 'tools', name.format(step))
        assert osp.isfile(script) and script in command
        assert command[-1] == (str(gpus) if gpus else
                               ('w.pth' if step == 'test' else 'c.py'))
