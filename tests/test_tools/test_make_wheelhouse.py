"""tools/make_wheelhouse.sh: a folder from which an offline machine installs
what tools/setup_env.sh needs (this test downloads from the package index,
as the tool does; the installs from the folder run with the index off)."""
import os
import os.path as osp
import subprocess
import sys

from tests.test_e2e.helpers import REPO
from tests.test_tools.test_setup_env import offline_env

TOOL = osp.join(REPO, 'tools', 'make_wheelhouse.sh')
HERE = f'{sys.version_info.major}.{sys.version_info.minor}'


def make(*args: str) -> subprocess.CompletedProcess:
    # This python: a pip, and setuptools for the source-only builds.
    return subprocess.run(['bash', TOOL, *args], cwd=REPO, text=True,
                          capture_output=True, timeout=600,
                          env=dict(os.environ, PYTHON=sys.executable))


def test_selected_pins_install_offline(tmp_path):
    house = tmp_path / 'house'
    # addict: a wheel on the index; grad-cam: source only there; pycocotools:
    # compiled, for this CPython.
    run = make(str(house), '--python', HERE, 'addict', 'Grad_CAM',
               'pycocotools')
    assert run.returncode == 0, run.stdout + run.stderr
    files = sorted(os.listdir(house))
    assert [f.split('-')[0] for f in files] == [
        'addict', 'grad_cam', 'mmcv', 'pycocotools']
    assert 'grad-cam==1.5.7 (built here: pure Python)' in run.stdout
    assert 'mmcv-2.1.0.tar.gz' in files

    # What setup_env.sh does with it, offline: the mmcv source, fetched as
    # it fetches it, and the wheels installed.
    env = offline_env(PIP_FIND_LINKS=str(house))
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check']
    fetched = subprocess.run(
        pip + ['download', '-q', '--no-deps', '--no-binary', ':all:',
               '--no-build-isolation', 'mmcv==2.1.0', '-d',
               str(tmp_path / 'src')], env=env, capture_output=True,
        text=True)
    assert fetched.returncode == 0, fetched.stderr
    installed = subprocess.run(
        pip + ['install', '-q', '--no-deps', '--target',
               str(tmp_path / 'site'), 'addict', 'grad-cam', 'pycocotools'],
        env=env, capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    assert {'addict', 'pytorch_grad_cam', 'pycocotools'} <= set(
        os.listdir(tmp_path / 'site'))


def test_refusals(tmp_path):
    run = make(str(tmp_path / 'h'), 'torch')
    assert run.returncode == 1
    assert 'not pinned in requirements/build.txt or lock.txt: torch' in \
        run.stderr
    run = make(str(tmp_path / 'h'), '--python', '12')
    assert run.returncode == 1 and 'such as 3.12' in run.stderr
    run = make('--python', '3.12')
    assert run.returncode == 1 and 'usage:' in run.stderr
