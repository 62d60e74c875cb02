"""Running the train/test tools (ours and the libraries' own) as a user does:
a subprocess with the real config and --cfg-options."""
import importlib.util
import os
import os.path as osp
import subprocess
import sys
from types import ModuleType
from typing import Dict, List, Tuple

import mmengine
from mmengine.config import Config

from mmc2f.toolkit.cli import library_file

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def library_tool(package: str, name: str) -> str:
    """A tool shipped inside an installed package, e.g. mmdet's train.py."""
    return library_file(package, 'tools', name)


def train_test_tools(owner: str) -> Tuple[str, str]:
    """train.py and test.py of mmc2f (``'mmc2f'``) or of a library."""
    if owner == 'mmc2f':
        return (osp.join(REPO, 'tools', 'train.py'),
                osp.join(REPO, 'tools', 'test.py'))
    return library_tool(owner, 'train.py'), library_tool(owner, 'test.py')


def run_tool(tool: str, *args: str, timeout: int = 900) -> str:
    """Run a tool script; its combined output, or a failure showing it."""
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='2')
    result = subprocess.run([sys.executable, tool, *args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f'{tool} failed:\n{output[-6000:]}'
    return output


def tool_module(path: str) -> ModuleType:
    """A tool script (e.g. tools/infer.py) as a module, to call its
    functions in this process."""
    spec = importlib.util.spec_from_file_location(
        osp.splitext(osp.basename(path))[0] + '_tool', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load(config: str) -> Config:
    return Config.fromfile(osp.join(REPO, config))


def written_images(folder: str) -> List[str]:
    return [
        f for f in mmengine.scandir(folder, ('.jpg', '.png'), recursive=True)
    ]


def imagenet_layout(root: str) -> Dict[str, str]:
    """ImageNet's layout under ``root`` (``meta/train.txt``, ``meta/val.txt``
    and their image folders, one labelled image each, no pixels read); the
    ``--cfg-options`` that point an ImageNet config's dataloaders at it."""
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    for split in ('train', 'val'):
        os.makedirs(osp.join(root, split), exist_ok=True)
        with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
            f.write('n01440764/0.JPEG 0\n')
    return {f'{loader}.dataset.data_root': root
            for loader in ('train_dataloader', 'val_dataloader',
                           'test_dataloader')}
