"""tools/setup_env.sh and ``pip install -e .`` in an environment that already
has torch, a working mmcv 2.1.0 and the OpenMMLab libraries.

That environment is faked cheaply: a new virtual environment whose
site-packages holds only a .pth file adding the test run's own
site-packages (its packages and .pth files, this repository's editable
install included). pip installs into the new one and never removes what
lies outside it, and runs with no index: anything it would have to fetch
fails the test instead of being downloaded.
"""
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import sysconfig

import pytest
import torch
from torch.utils import cpp_extension

from tests.test_e2e.helpers import REPO

SETUP = osp.join(REPO, 'tools/setup_env.sh')


def make_env(root) -> str:
    """A virtual environment that sees the current one's packages; the path
    of its site-packages."""
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', root],
                   check=True)
    site = subprocess.run(
        [osp.join(root, 'bin', 'python'), '-c',
         "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip()
    with open(osp.join(site, 'mmc2f_test_stack.pth'), 'w') as f:
        f.write('import site; site.addsitedir('
                f"{sysconfig.get_paths()['purelib']!r})\n")
    return site


def offline_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ('VIRTUAL_ENV', 'CONDA_PREFIX') and
           not k.startswith('PIP_')}
    return dict(env, PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX='1', **extra)


def run_setup(tmp_path, venv, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        ['bash', SETUP], cwd=REPO, capture_output=True, text=True,
        timeout=600, env=offline_env(MMC2F_VENV=str(venv),
                                     MMC2F_CACHE=str(tmp_path / 'cache'),
                                     **env))


def assert_stopped_offline(log: str) -> None:
    """An mmcv build, offline, stops at its first download: its build tools
    where the environment lacks them, else the mmcv source."""
    assert ('pip could not install setuptools<82 wheel ninja' in log or
            'could not download the mmcv 2.1.0 source' in log), log[-4000:]


def installed_here(venv, site) -> list:
    """Distributions installed in the new environment itself."""
    out = subprocess.run(
        [osp.join(venv, 'bin', 'python'), '-m', 'pip', 'list', '--path', site,
         '--format', 'json'], check=True, capture_output=True, text=True,
        env=offline_env()).stdout
    return sorted(d['name'] for d in json.loads(out))


def test_setup_keeps_a_working_mmcv_and_installs_only_mmc2f(tmp_path):
    venv = tmp_path / 'env'
    site = make_env(venv)
    result = run_setup(tmp_path, venv)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    # No build key of ours lies in this environment: the mmcv is kept
    # because its ops run.
    assert 'keeping the installed mmcv 2.1.0: its ops run with torch' in log
    assert 'compiling mmcv' not in log
    assert not (tmp_path / 'cache').exists()
    assert 'ready' in log
    assert installed_here(venv, site) == ['mmc2f']


BROKEN_OPS = """raise ImportError('/x/mmcv/_ext.cpython-311-x86_64-linux-gnu.so: \
undefined symbol: _ZN3c1015SmallVectorBase')"""


@pytest.mark.parametrize('version, ops, reason', [
    ('2.1.0', BROKEN_OPS,
     'mmcv 2.1.0 is installed but its compiled ops do not work with torch '),
    ('2.2.0', 'from .roi_align import RoIAlign',
     'mmcv 2.2.0 is installed; mmdet 3.3 needs mmcv < 2.2.0'),
    # A crash in compiled code prints no reason of its own.
    ('2.1.0', 'import os, signal; os.kill(os.getpid(), signal.SIGSEGV)',
     "the check of mmcv's ops died of SIGSEGV (exit status 139), a crash in "
     'compiled code'),
])
def test_setup_rebuilds_an_mmcv_that_does_not_work(tmp_path, version, ops,
                                                   reason):
    venv = tmp_path / 'env'
    site = make_env(venv)
    # An mmcv in the new environment shadows the working one.
    os.makedirs(osp.join(site, 'mmcv', 'ops'))
    with open(osp.join(site, 'mmcv', '__init__.py'), 'w') as f:
        f.write(f'__version__ = {version!r}\n')
    with open(osp.join(site, 'mmcv', 'ops', '__init__.py'), 'w') as f:
        f.write(ops + '\n')
    result = run_setup(tmp_path, venv)
    log = result.stdout + result.stderr
    # It sets out to build one; offline, a download stops it.
    assert result.returncode != 0
    assert f'installing mmcv 2.1.0 with ops: {reason}' in log, log[-4000:]
    assert_stopped_offline(log)


def test_force_cuda_without_nvcc_is_refused(tmp_path):
    venv = tmp_path / 'env'
    make_env(venv)
    # torch's extension builder takes CUDA_HOME first.
    result = run_setup(tmp_path, venv, FORCE_CUDA='1',
                       CUDA_HOME=str(tmp_path / 'no-toolkit'))
    assert result.returncode != 0
    assert 'FORCE_CUDA=1 asks for mmcv CUDA ops' in result.stderr
    assert f"no nvcc in CUDA_HOME ({tmp_path / 'no-toolkit'})" in \
        result.stderr
    assert 'Traceback' not in result.stderr


def _fake_distribution(site, name: str, version: str, module: str) -> None:
    """A distribution installed in ``site``: its module and its metadata."""
    info = osp.join(site, f'{name}-{version}.dist-info')
    os.makedirs(info)
    with open(osp.join(info, 'METADATA'), 'w') as f:
        f.write(f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n')
    with open(osp.join(info, 'RECORD'), 'w') as f:
        f.write(f'{module},,\n{name}-{version}.dist-info/METADATA,,\n'
                f'{name}-{version}.dist-info/RECORD,,\n')
    with open(osp.join(site, module), 'w') as f:
        f.write(f'__version__ = {version!r}\n')


def test_transformers_5_is_refused(tmp_path):
    """mmpretrain 1.2.0 cannot be imported beside transformers >= 5: in the
    environment itself, refused up front, with the fixes."""
    venv = tmp_path / 'env'
    _fake_distribution(make_env(venv), 'transformers', '5.0.0',
                       'transformers.py')
    result = run_setup(tmp_path, venv)
    assert result.returncode != 0
    assert 'transformers 5.0.0 is installed, and mmpretrain 1.2.0 cannot' in \
        result.stderr, result.stderr[-3000:]
    assert "pip install 'transformers<5'" in result.stderr
    assert (f"MMC2F_VENV=NEW_FOLDER PYTHON={venv / 'bin' / 'python'} bash "
            'tools/setup_env.sh') in result.stderr
    assert 'installing mmcv' not in result.stdout


def test_a_python_with_torch_and_transformers_5_lends_the_rest(tmp_path):
    """The GPU image's case: a Python with torch (and no network) and
    transformers 5. The environment the script makes sees its packages, as
    --system-site-packages would, but not its transformers; pip in it never
    deletes the base's files."""
    base = tmp_path / 'base'
    site = make_env(base)  # torch, mmcv, the libraries: the test's stack
    _fake_distribution(site, 'transformers', '5.0.0', 'transformers.py')
    _fake_distribution(site, 'baseprobe', '1.0', 'baseprobe.py')
    venv = tmp_path / 'env'
    # Named relative to the working directory (the repository's).
    result = run_setup(tmp_path, osp.relpath(venv, REPO),
                       PYTHON=str(base / 'bin' / 'python'))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert (f"{base / 'bin' / 'python'} has transformers 5.0.0, which the "
            'OpenMMLab stack cannot be imported beside') in log, log[-4000:]
    assert 'mmc2f 0.' in log and 'ready' in log
    python = str(venv / 'bin' / 'python')
    seen = subprocess.run(
        [python, '-c', 'import importlib.metadata as m, importlib.util as u; '
         "print(m.version('baseprobe'), u.find_spec('transformers'))"],
        cwd='/', capture_output=True, text=True, check=True).stdout.split()
    assert seen == ['1.0', 'None']
    # Its pip is the base's, run by its own Python.
    assert subprocess.run([str(venv / 'bin' / 'pip'), '-V'],
                          capture_output=True, text=True,
                          check=True).stdout.rstrip().endswith(
        '(python {}.{})'.format(*sys.version_info[:2]))
    uninstall = subprocess.run(
        [python, '-m', 'pip', 'uninstall', '-y', 'baseprobe'],
        capture_output=True, text=True, env=offline_env())
    assert 'outside environment' in uninstall.stdout + uninstall.stderr
    assert osp.isfile(osp.join(site, 'baseprobe.py'))


@pytest.mark.skipif(torch.version.cuda is None,
                    reason='needs a CUDA build of torch')
def test_a_toolkit_without_headers_is_refused(tmp_path):
    """An nvcc without CUDA's headers beside it (torch's guess from an nvcc
    wrapper on the PATH) is refused before a build that would fail late."""
    venv = tmp_path / 'env'
    make_env(venv)
    toolkit = tmp_path / 'toolkit'
    os.makedirs(toolkit / 'bin')
    (toolkit / 'bin' / 'nvcc').write_text('')
    result = run_setup(tmp_path, venv, FORCE_CUDA='1', CUDA_HOME=str(toolkit),
                       TORCH_CUDA_ARCH_LIST='9.0')
    assert result.returncode != 0
    assert (f'CUDA_HOME ({toolkit}) has nvcc but not the CUDA headers'
            in result.stderr), result.stderr[-3000:]
    assert 'Traceback' not in result.stderr


@pytest.mark.skipif(
    torch.version.cuda is None or not osp.isfile(osp.join(
        cpp_extension.CUDA_HOME or '', 'bin', 'nvcc')),
    reason='needs nvcc and a CUDA build of torch')
def test_force_cuda_rebuilds_an_mmcv_without_cuda_ops(tmp_path):
    """No GPU here: FORCE_CUDA=1 still wants CUDA ops, which the working
    CPU-only mmcv lacks; it sets out to build them (offline: stopped), for
    the architectures it must be given (plain ones)."""
    venv = tmp_path / 'env'
    make_env(venv)
    result = run_setup(tmp_path, venv, FORCE_CUDA='1')
    assert result.returncode != 0
    assert 'FORCE_CUDA=1 without a visible GPU needs the GPUs to compile ' \
        'for: set TORCH_CUDA_ARCH_LIST' in result.stderr
    # The GPU image's list: its architecture-specific target is built plain.
    result = run_setup(tmp_path, venv, FORCE_CUDA='1',
                       TORCH_CUDA_ARCH_LIST='9.0a')
    log = result.stdout + result.stderr
    assert result.returncode != 0
    assert ("building mmcv's CUDA ops for 9.0 rather than "
            "TORCH_CUDA_ARCH_LIST's 9.0a") in result.stderr
    assert ('installing mmcv 2.1.0 with ops: mmcv 2.1.0 is installed without '
            'the CUDA ops this machine can build') in log, log[-4000:]
    assert_stopped_offline(log)


@pytest.mark.parametrize('target', ['.', '.[mim]'])
def test_pip_install_e_adds_only_mmc2f(tmp_path, target):
    venv = tmp_path / 'env'
    make_env(venv)
    result = subprocess.run(
        [osp.join(venv, 'bin', 'python'), '-m', 'pip', 'install', '-q',
         '--dry-run', '--report', '-', '--no-build-isolation', '-e', target],
        cwd=REPO, capture_output=True, text=True, env=offline_env())
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert [i['metadata']['name'] for i in report['install']] == ['mmc2f']


def python_3_10():
    """A Python 3.10 that runs (on PATH or pyenv's), or None."""
    for exe in [shutil.which('python3.10')] + sorted(
            glob.glob(osp.expanduser('~/.pyenv/versions/3.10*/bin/python3'))):
        if exe and subprocess.run([exe, '-c', ''],
                                  capture_output=True).returncode == 0:
            return exe
    return None


@pytest.mark.skipif(python_3_10() is None, reason='no Python 3.10 here')
def test_setup_refuses_an_untested_python_and_says_what_to_do(tmp_path):
    venv = tmp_path / 'env'
    subprocess.run([python_3_10(), '-m', 'venv', '--without-pip', venv],
                   check=True)
    result = run_setup(tmp_path, venv)
    assert result.returncode != 0
    assert 'Python >= 3.11 is required' in result.stderr
    assert 'PYTHON=python3.11 bash' in result.stderr
    assert 'Traceback' not in result.stderr
