"""A wheel works like the libraries': ``pip install .`` ships configs/ and
tools/ as ``mmc2f/.mim/``, and a config of the user's own, in a folder
outside the repository, inherits ours with the ``mmc2f::`` prefix."""
import os
import os.path as osp
import shutil
import subprocess
import sys
import sysconfig
import zipfile

from mmc2f.toolkit.synthetic_data import make_coco_shapes
from tests.test_e2e.helpers import REPO

USER_CONFIG = """_base_ = [
    'mmc2f::mask_rcnn/mask-rcnn_conv2former-t_fpn_amp-ms-crop-3x_coco.py']
model = dict(roi_head=dict(bbox_head=dict(num_classes=3),
                           mask_head=dict(num_classes=3)))
"""


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, '-m', 'pip', *args, '-q'], check=True)


def test_wheel_in_a_fresh_venv_reads_mmc2f_prefix(tmp_path):
    # Built from a copy: the build writes mmc2f/.mim and build/ beside it.
    source = tmp_path / 'source'
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        '.venv', '.git', 'work_dirs', 'data', 'build', 'dist', 'outputs',
        '__pycache__'))
    _pip('wheel', str(source), '--no-deps', '--no-build-isolation', '-w',
         str(tmp_path / 'dist'))
    wheel, = (tmp_path / 'dist').glob('mmc2f-*.whl')
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ('mmc2f/.mim/model-index.yml', 'mmc2f/.mim/tools/train.py',
                    'mmc2f/.mim/configs/mask_rcnn/metafile.yml',
                    'mmc2f/.mim/configs/upernet/'
                    'upernet_conv2former-t_8xb2-amp-160k_ade20k-512x512.py'):
        assert shipped in names, shipped

    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip',
                    str(venv)], check=True)
    python = str(venv / 'bin' / 'python')
    _pip('--python', python, 'install', '--no-deps', str(wheel))
    # The OpenMMLab stack comes from this environment; mmc2f from the wheel.
    site = subprocess.run(
        [python, '-c', 'import sysconfig; print(sysconfig.get_paths()'
         "['purelib'])"], capture_output=True, text=True,
        check=True).stdout.strip()
    with open(osp.join(site, 'stack.pth'), 'w') as f:
        f.write(sysconfig.get_paths()['purelib'] + '\n')

    user = tmp_path / 'user'
    user.mkdir()
    (user / 'my_config.py').write_text(USER_CONFIG)
    # COCO's annotation files where the config reads them (its data checked).
    coco = user / 'data' / 'coco' / 'annotations'
    make_coco_shapes(str(user / 'shapes'), num_train=1, num_val=1,
                     size=(32, 32))
    coco.mkdir(parents=True)
    for split in ('train', 'val'):
        shutil.copy(
            user / 'shapes' / 'annotations' / f'instances_{split}.json',
            coco / f'instances_{split}2017.json')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    result = subprocess.run(
        [python, osp.join(site, 'mmc2f', '.mim', 'tools', 'check_config.py'),
         'my_config.py'], cwd=user, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'model: the neck and heads' in result.stdout
    located = subprocess.run(
        [python, '-c', 'import mmc2f; print(mmc2f.__file__)'], cwd=user,
        env=env, capture_output=True, text=True, check=True).stdout
    assert located.startswith(site), located
