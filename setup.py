import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))
# What a wheel ships beside the package, where mim and mmengine's
# 'mmc2f::' config prefix look for them (as MMDetection's setup.py does).
MIM_FILES = ('configs', 'tools', 'model-index.yml')


def read_requirements(name: str) -> list:
    """Requirement lines of ``requirements/<name>.txt`` (comments dropped)."""
    with open(osp.join(HERE, 'requirements', f'{name}.txt')) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line]


def read_version() -> str:
    scope: dict = {}
    with open(osp.join(HERE, 'mmc2f', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def add_mim_extension() -> None:
    """Copy ``configs/``, ``tools/`` and ``model-index.yml`` into
    ``mmc2f/.mim/`` when a wheel is built or the package installed (not
    for an editable install, which reads them where they are)."""
    if not {'bdist_wheel', 'build', 'install', 'sdist'} & set(sys.argv):
        return
    mim = osp.join(HERE, 'mmc2f', '.mim')
    shutil.rmtree(mim, ignore_errors=True)
    os.makedirs(mim)
    for name in MIM_FILES:
        src = osp.join(HERE, name)
        if osp.isdir(src):
            shutil.copytree(src, osp.join(mim, name),
                            ignore=shutil.ignore_patterns('__pycache__'))
        else:
            shutil.copyfile(src, osp.join(mim, name))


add_mim_extension()
setup(
    name='mmc2f',
    version=read_version(),
    description='Conv2Former backbones for MMDetection, MMSegmentation and '
    'MMPretrain',
    long_description=open(osp.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    license='Apache License 2.0',
    packages=find_packages(exclude=('configs', 'tools', 'tests', 'docs')),
    package_data={'mmc2f': ['.mim/model-index.yml', '.mim/configs/**/*',
                            '.mim/tools/**/*']},
    python_requires='>=3.8',
    install_requires=read_requirements('runtime'),
    extras_require={
        'mim': read_requirements('mminstall'),
        'tests': read_requirements('tests'),
        'optional': read_requirements('optional'),
        'all': read_requirements('mminstall') + read_requirements('tests') +
        read_requirements('optional'),
    },
    zip_safe=False,
)
