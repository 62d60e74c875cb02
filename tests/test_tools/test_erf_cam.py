"""tools/analysis/erf.py and tools/analysis/vis_cam.py on tiny settings."""
import importlib.util
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ERF = osp.join(ROOT, 'tools/analysis/erf.py')
VIS_CAM = osp.join(ROOT, 'tools/analysis/vis_cam.py')
NANO_CONFIG = osp.join(ROOT, 'configs/imagenet/conv2former-n_8xb128_in1k.py')
ROW = re.compile(r'^\| (\d) \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+) '
                 r'\| ([\d.]+) \| ([\d.]+) \|$', re.M)


def run(*args):
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    result = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT,
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, (result.stdout[-2000:] +
                                    result.stderr[-3000:])
    return result


def load_erf_module():
    spec = importlib.util.spec_from_file_location('erf_tool', ERF)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_images(folder, n, size=64):
    rng = np.random.default_rng(0)
    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f'img{i}.png'
        Image.fromarray(rng.integers(0, 256, (size, size, 3),
                                     dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_get_rectangle_definition():
    erf = load_erf_module()
    delta = np.zeros((33, 33))
    delta[16, 16] = 1
    assert erf.get_rectangle(delta, 0.5) == (1, 1 / 33**2)
    uniform = np.ones((32, 32))
    # Smallest odd centred square holding more than half of 1024: 23^2=529.
    side, ratio = erf.get_rectangle(uniform, 0.5)
    assert side == 23 and ratio == pytest.approx(529 / 1024)
    # Not reached by any square inside the image: the whole image.
    assert erf.get_rectangle(uniform, 0.99) == (32, 1.0)
    table = erf.analyze_erf(uniform)
    assert table['side'][:2] == (23, 29)
    assert 23 <= table['side'][2] <= 32
    assert len(erf.MEAN_THRESHOLDS) == 9


@pytest.mark.parametrize('model, own_images', [('conv2former-n', False),
                                               ('convnext-t', True)])
def test_erf_tool(tmp_path, model, own_images):
    size = 128
    out = tmp_path / 'erf.png'
    args = [ERF, '--model', model, '--size', size, '--num-images', 2,
            '--out', out]
    if own_images:  # otherwise the sample photos of installed packages
        make_images(tmp_path / 'images', 2)
        args += ['--images', tmp_path / 'images']
    stdout = run(*args).stdout
    assert f'2 image(s) at {size}x{size}' in stdout, stdout
    assert 'side t=0.5 | side t=0.75 | side mean(0.5:0.9)' in stdout
    rows = ROW.findall(stdout)
    assert [int(r[0]) for r in rows] == [0, 1, 2, 3], stdout
    for row in rows:
        sides = [float(v) for v in row[1:4]]
        areas = [float(v) for v in row[4:7]]
        assert all(1 <= s <= size for s in sides), row
        assert sides[0] <= sides[1]  # t=0.5 needs no more than t=0.75
        assert all(0 < a <= 100 for a in areas), row
    # The ERF grows with depth.
    assert int(rows[0][1]) < int(rows[3][1])
    assert 'Saved 4 heatmap panels' in stdout
    with Image.open(out) as img:
        img.verify()
    with Image.open(out) as img:
        width, height = img.size
    assert width > 0 and height > 0
    assert width / height > 3  # four panels side by side


def test_vis_cam_tool(tmp_path):
    (image, ) = make_images(tmp_path, 1)
    out = tmp_path / 'cam.png'
    result = run(VIS_CAM, NANO_CONFIG, image, '--out', out)
    assert 'no --checkpoint' in result.stderr
    assert 'at backbone.stages.3' in result.stdout
    with Image.open(out) as img:
        assert img.size == (224, 224) and img.mode == 'RGB'
        overlay = np.asarray(img)
    assert overlay.std() > 0
