import os.path as osp

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


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


setup(
    name='mmc2f',
    version=read_version(),
    description='Conv2Former backbones for MMDetection, MMSegmentation and '
    'MMPretrain',
    long_description=open(osp.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    license='Apache License 2.0',
    packages=find_packages(exclude=('configs', 'tools', 'tests', 'docs')),
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
