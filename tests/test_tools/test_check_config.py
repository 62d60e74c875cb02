"""tools/check_config.py runs the checks of tools/train.py alone, and
--skip-checks turns them off there."""
import os.path as osp
import runpy
import sys

import pytest
from mmengine.config import Config

from tests.test_e2e.helpers import REPO

TOOL = osp.join(REPO, 'tools/check_config.py')
IMAGENET = osp.join(REPO, 'configs/imagenet/conv2former-n_8xb128_in1k.py')


def _check(monkeypatch, *args: str) -> int:
    monkeypatch.setattr(sys, 'argv', [TOOL, *args])
    return runpy.run_path(TOOL)['main']()


def test_config_passes_every_check(monkeypatch, capsys):
    assert _check(monkeypatch, IMAGENET) == 0
    out = capsys.readouterr().out
    passed = [line.split(':')[0] for line in out.splitlines()
              if line.startswith(('config variables:', 'data:', 'model:'))]
    assert passed == ['config variables', 'data', 'model'], out


def test_mistake_exits_with_the_fix(monkeypatch, capsys):
    assert _check(monkeypatch, IMAGENET, '--cfg-options',
                  'model.neck.in_channels=768') == 1
    err = capsys.readouterr().err
    assert 'model.neck.in_channels=768' in err and 'Set ' in err


def test_skip_checks_builds_what_the_checks_refuse(tmp_path):
    from mmc2f.toolkit import cli
    cfg = Config.fromfile(IMAGENET)
    cfg.merge_from_dict({'model.backbone.init_cfg': None,
                         'model.neck.in_channels': 768,
                         'work_dir': str(tmp_path)})
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

    def build_runner(cfg, checks=True):
        seen.append(checks)
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
    assert seen == [False, True]
