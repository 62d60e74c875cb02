"""tools/check_config.py runs the checks of tools/train.py alone, and
--skip-checks turns them off there."""
import os
import os.path as osp
import runpy
import sys

import pytest
from mmengine.config import Config

from tests.test_e2e.helpers import REPO, imagenet_layout

TOOL = osp.join(REPO, 'tools/check_config.py')
IMAGENET = osp.join(REPO, 'configs/imagenet/conv2former-n_8xb128_in1k.py')


def _check(monkeypatch, *args: str) -> int:
    monkeypatch.setattr(sys, 'argv', [TOOL, *args])
    return runpy.run_path(TOOL)['main']()


def _options(root: str) -> list:
    return [f'{k}={v}' for k, v in imagenet_layout(root).items()]


def test_config_passes_every_check(monkeypatch, capsys, tmp_path):
    assert _check(monkeypatch, IMAGENET, '--cfg-options',
                  *_options(str(tmp_path))) == 0
    out = capsys.readouterr().out
    passed = [line.split(':')[0] for line in out.splitlines()
              if line.startswith(('config variables:', 'data files:',
                                  'data:', 'model:'))]
    assert passed == ['config variables', 'data files', 'data', 'model'], out


def test_mistake_exits_with_the_fix(monkeypatch, capsys, tmp_path):
    assert _check(monkeypatch, IMAGENET, '--cfg-options',
                  *_options(str(tmp_path)),
                  'model.neck.in_channels=768') == 1
    err = capsys.readouterr().err
    assert 'model.neck.in_channels=768' in err and 'Set ' in err


def test_data_of_one_run(monkeypatch, capsys, tmp_path):
    """--run test checks the test data alone: a machine that holds only the
    validation split tests; the training data it lacks is named for a
    training run."""
    options = _options(str(tmp_path))
    os.remove(tmp_path / 'meta' / 'train.txt')
    os.rmdir(tmp_path / 'train')
    assert _check(monkeypatch, IMAGENET, '--run', 'test', '--cfg-options',
                  *options) == 0
    assert _check(monkeypatch, IMAGENET, '--run', 'train', '--cfg-options',
                  *options) == 1
    assert (f'train_dataloader.dataset reads the folder {tmp_path}/train, '
            'which does not exist') in capsys.readouterr().err


def test_skip_checks_builds_what_the_checks_refuse(tmp_path):
    """The checks in build_runner, where tools/train.py and tools/test.py
    build (and where --skip-checks turns them off)."""
    from mmc2f.toolkit import cli
    cfg = Config.fromfile(IMAGENET)
    cfg.merge_from_dict({'model.backbone.init_cfg': None,
                         'model.neck.in_channels': 768,
                         'work_dir': str(tmp_path),
                         **imagenet_layout(str(tmp_path / 'data'))})
    with pytest.raises(ValueError, match='model.neck.in_channels=768'):
        cli.build_runner(cfg.copy())
    assert cli.build_runner(cfg, checks=False).model is not None


@pytest.mark.parametrize('tool', ['train', 'test'])
def test_skip_checks_reaches_the_tools(monkeypatch, tmp_path, tool):
    """tools/train.py and tools/test.py hand --skip-checks to build_runner
    (and without it, the checks run)."""
    from mmc2f.toolkit import cli
    seen = []

    class Runner:
        model = None

        def train(self):
            pass

        def test(self):
            pass

    def build_runner(cfg, checks=True, loops=('train', 'test')):
        seen.append((checks, loops))
        return Runner()

    monkeypatch.setattr(cli, 'build_runner', build_runner)
    monkeypatch.setattr('mmc2f.checkpoint.check_trained_checkpoint',
                        lambda model, path: {})
    path = osp.join(REPO, 'tools', f'{tool}.py')
    args = [IMAGENET] + (['x.pth'] if tool == 'test' else [])
    for flags in (['--skip-checks'], []):
        monkeypatch.setattr(sys, 'argv', [path, *args, '--work-dir',
                                          str(tmp_path), *flags])
        runpy.run_path(path)['main']()
    assert seen == [(False, (tool, )), (True, (tool, ))]
