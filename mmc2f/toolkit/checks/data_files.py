# Copyright (c) mmc2f contributors. All rights reserved.
"""The data files a run opens before its first iteration, where they are
local paths: each dataset's annotation file, the folder a dataset without
one lists (ADE20k's images, ImageNet's class folders), and an evaluator's
annotation file (a COCO or LVIS metric's).

Each is missing in a user's first run of a paper config (the data not yet
downloaded, or elsewhere than ``data_root`` says); the libraries then stop
with a ``FileNotFoundError`` traceback from deep inside their dataset code.
Here the message names the key, the path as resolved, the folder it is
relative to, and the keys that move it.

Only the dataloaders the run builds are checked (``train`` and, where the
config validates, ``val``; or ``test``), so a run never stops for data it
does not read. Paths with a scheme (``s3://``) or read through another
``backend_args`` than the local disk are left to their backend.
"""
import importlib
import os
import os.path as osp
from typing import (Any, Dict, Iterator, List, NamedTuple, Optional, Sequence,
                    Tuple)

from mmengine.config import Config
from mmengine.fileio import join_path
from mmengine.utils import is_abs

from .datasets import dataset_class, lazily_built, leaf_datasets
from .error import ConfigCheckError

# The dataloaders (and the evaluators that go with them) that a Runner loop
# builds before its first iteration.
_LOOP_DATALOADERS = {
    'train': ('train_dataloader', 'val_dataloader'),
    'test': ('test_dataloader', ),
}


def _run_dataloaders(cfg: Config, loops: Sequence[str]) -> List[str]:
    """The dataloaders that the ``loops`` ('train', 'test') build: the
    validation one only where the config validates (``val_cfg``)."""
    names = [n for loop in loops for n in _LOOP_DATALOADERS[loop]]
    if cfg.get('val_cfg') is None:
        names = [n for n in names if n != 'val_dataloader']
    return [n for n in names if cfg.get(n)]


def _is_local(path: str, backend_args: Optional[Dict[str, Any]]) -> bool:
    return '://' not in path and (not backend_args or backend_args.get(
        'backend', 'local') == 'local')


# The dataset classes that list their image folder when they have no
# annotation file, as (package, class name): importing the other libraries
# here would make a detection run need them.
_FOLDER_DATASETS = {('mmseg', 'BaseSegDataset'),
                    ('mmpretrain', 'CustomDataset')}


def _lists_its_folder(kind: type) -> bool:
    return any((c.__module__.split('.')[0], c.__name__) in _FOLDER_DATASETS
               for c in kind.__mro__)


def _resolved_paths(dataset: Dict[str, Any],
                    built: Any) -> Tuple[Optional[str], Optional[str]]:
    """(annotation file, image folder) as the dataset reads them: those of
    the dataset built without its data (joined with data_root, ImageNet's
    split resolved), else the config's joined as mmengine joins them (a
    dataset whose constructor wants its data, such as VOC's assertion)."""
    if built is not None:
        prefix = getattr(built, 'data_prefix', None) or {}
        return getattr(built, 'ann_file', None), prefix.get('img_path')
    root = dataset.get('data_root') or ''

    def joined(path: Any) -> Any:
        return join_path(root, path) if isinstance(path, str) and path and \
            root and not is_abs(path) else path

    prefix = dataset.get('data_prefix')
    return joined(dataset.get('ann_file')), joined(
        prefix.get('img_path') if isinstance(prefix, dict) else None)


class _Read(NamedTuple):
    """A local file or folder that a dataset or an evaluator reads."""
    where: str  # the dataset's or evaluator's key
    path: str  # as the library resolves it
    kind: str  # 'file' or 'folder'
    fix: str  # the option that moves it


def _under(path: str, roots: List[str]) -> str:
    """An evaluator's file as a fix writes it: under DIR where it lies under
    a dataset's data_root (COCO's annotations), else DIR/FILE."""
    for root in roots:
        if path.startswith(root.rstrip('/') + '/'):
            return osp.join('DIR', path[len(root.rstrip('/')) + 1:])
    return 'DIR/FILE'


def _read_paths(cfg: Config, dataloaders: List[str]) -> Iterator[_Read]:
    """The local data that the dataloaders and their evaluators open when
    they are built."""
    from mmengine.dataset import BaseDataset
    registry = importlib.import_module(
        f'{cfg.default_scope}.registry').DATASETS
    roots = []
    for where, dataset in leaf_datasets(cfg, dataloaders):
        kind = dataset_class(dataset, registry, BaseDataset)
        if kind is None:
            continue
        if isinstance(dataset.get('data_root'), str) and dataset['data_root']:
            roots.append(dataset['data_root'])
        ann_file, folder = _resolved_paths(
            dataset, lazily_built(dataset, registry, BaseDataset))
        backend_args = dataset.get('backend_args')
        # data_root moves the paths that the config gives relative to it.
        if isinstance(ann_file, str) and ann_file:
            if _is_local(ann_file, backend_args):
                moved_by = 'ann_file=DIR/FILE' if is_abs(
                    dataset.get('ann_file') or '') else 'data_root=DIR/'
                yield _Read(where, ann_file, 'file', f'{where}.{moved_by}')
            continue
        # No annotation file: MMSegmentation's and MMPretrain's folder
        # datasets list their image folder (others, such as CIFAR, may
        # download theirs).
        if _lists_its_folder(kind) and isinstance(
                folder, str) and folder and _is_local(folder, backend_args):
            prefix = dataset.get('data_prefix')
            own, key = (prefix.get('img_path'), 'data_prefix.img_path') \
                if isinstance(prefix, dict) else (prefix, 'data_prefix')
            yield _Read(where, folder, 'folder', f'{where}.{key}=DIR/'
                        if is_abs(own or '') else f'{where}.data_root=DIR/')
    for name in dataloaders:
        key = name.replace('dataloader', 'evaluator')
        evaluators = cfg.get(key)
        places = [(key, evaluators)] if isinstance(evaluators, dict) else [
            (f'{key}.{i}', e) for i, e in enumerate(evaluators or [])]
        for where, evaluator in places:
            ann_file = evaluator.get('ann_file') if isinstance(
                evaluator, dict) else None
            if isinstance(ann_file, str) and ann_file and _is_local(
                    ann_file, evaluator.get('backend_args')):
                yield _Read(where, ann_file, 'file',
                            f'{where}.ann_file={_under(ann_file, roots)}')


def check_data_files(cfg: Config, loops: Sequence[str]) -> None:
    """ConfigCheckError where a local annotation file or listed folder that
    the ``loops`` ('train', 'test') read does not exist."""
    reads = list(_read_paths(cfg, _run_dataloaders(cfg, loops)))
    for read in reads:
        # A folder given as ann_file is the dataset's to judge.
        if osp.exists(read.path) if read.kind == 'file' else osp.isdir(
                read.path):
            continue
        relative = '' if osp.isabs(read.path) else \
            f' (relative to the working directory, {os.getcwd()})'
        raise ConfigCheckError(
            f'{read.where} reads the {read.kind} {read.path}, which does not '
            f'exist{relative}. Put the data there, or point the config at '
            'them with the same keys in a config that inherits it or with '
            '--cfg-options '
            f'{" ".join(dict.fromkeys(r.fix for r in reads))}')
