"""What ``import mmc2f`` changes in mmengine, and what it leaves alone: one
patch (every checkpoint scheme loads safely, the ``mmc2f::`` config prefix),
an opt-out, and none of the tools' code imported."""
import subprocess
import sys

from tests.test_e2e.helpers import REPO

PROBE = '''
import sys
from mmengine.config.utils import MODULE2PACKAGE
from mmengine.fileio.backends import LocalBackend
from mmengine.fileio.backends import backends, prefix_to_backends
from mmengine.registry import HOOKS
from mmengine.runner.checkpoint import CheckpointLoader
import mmc2f
loader = CheckpointLoader._get_checkpoint_loader
print(loader('/a/b.pth').__module__)
print(loader('https://a/b.pth').__module__)
print(backends['local'] is prefix_to_backends[''] is LocalBackend)
print(HOOKS.get('CheckpointHook').__module__)
print('mmc2f' in MODULE2PACKAGE)
print(sorted({m.split('.')[1] for m in sys.modules
              if m.startswith('mmc2f.')}))
'''


def _probe(**env) -> list:
    result = subprocess.run([sys.executable, '-c', PROBE], cwd=REPO,
                            env={**__import__('os').environ, **env},
                            capture_output=True, text=True, check=True)
    return result.stdout.split('\n')


def test_import_patches_checkpoint_loading_and_config_prefix_only():
    loader, url_loader, local, hook, prefix, packages = _probe()[:6]
    assert loader == url_loader == 'mmc2f.checkpoint.schemes'
    # mmengine's local backend and CheckpointHook stay mmengine's.
    assert local == 'True'
    assert hook == 'mmengine.hooks.checkpoint_hook'
    assert prefix == 'True'  # 'mmc2f::' (tests/test_packaging.py)
    assert 'toolkit' not in packages and 'models' in packages, packages


def test_opt_out_leaves_mmengine_alone():
    loader, _, _, _, prefix = _probe(MMC2F_NO_MMENGINE_PATCH='1')[:5]
    assert loader == 'mmengine.runner.checkpoint' and prefix == 'False'
