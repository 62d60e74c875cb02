# Copyright (c) mmc2f contributors. All rights reserved.
"""The datasets a config's dataloaders read, found and built the way the
libraries build them, for the checks of each task."""
import importlib
import os.path as osp
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from mmengine.config import Config
from mmengine.fileio import list_from_file

_DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def leaf_datasets(
    cfg: Config,
    dataloaders: Sequence[str] = _DATALOADERS
) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """(its place in the config, its config) of each dataset the dataloaders
    read, inside wrappers (``dataset``) and concatenations (``datasets``)."""
    for name in dataloaders:
        loader = cfg.get(name)
        stack = [(f'{name}.dataset', loader.get('dataset'))] if loader else []
        while stack:
            where, dataset = stack.pop()
            if not isinstance(dataset, dict):
                continue
            if isinstance(dataset.get('datasets'), (list, tuple)):
                # Dotted indices, as --cfg-options takes them; in order.
                stack += reversed([(f'{where}.datasets.{i}', d)
                                   for i, d in enumerate(dataset['datasets'])])
            elif isinstance(dataset.get('dataset'), dict):
                stack.append((f'{where}.dataset', dataset['dataset']))
            else:
                yield where, dataset


def dataset_class(dataset: Dict[str, Any], registry: Any,
                  base: type) -> Optional[type]:
    """The dataset's class where it is a ``base``; None for other types, or
    for one the registry cannot import here (an optional package's)."""
    kind = dataset.get('type')
    if isinstance(kind, str):
        try:
            kind = registry.get(kind)
        except Exception:  # noqa: B902 the dataset reports it when built
            return None
    return kind if isinstance(kind, type) and issubclass(kind, base) else None


def type_name(node: Dict[str, Any]) -> str:
    """A config node's ``type`` as a name (lazy configs give the class)."""
    kind = node.get('type')
    return kind.__name__ if isinstance(kind, type) else str(kind)


def transforms_of(dataset: Dict[str, Any],
                  name: str) -> List[Tuple[int, Dict[str, Any]]]:
    """(index, config) of the dataset's pipeline transforms of type
    ``name`` (scoped or not)."""
    return [(i, t) for i, t in enumerate(dataset.get('pipeline') or [])
            if isinstance(t, dict) and type_name(t).endswith(name)]


def spread(items: List[Any], count: int) -> List[Any]:
    """At most ``count`` of the items, evenly spaced."""
    return items[::max(len(items) // count, 1)][:count]


def lazily_built(dataset: Dict[str, Any], registry: Any,
                 base: type) -> Optional[Any]:
    """The dataset built without reading its data (``lazy_init``, no
    pipeline): its paths, classes and label mapping as the library resolves
    them. None where it is not a ``base``, or cannot be built here (data an
    assertion wants, names its class lacks, a class file this machine cannot
    read): the dataset says why when it is built for real."""
    kind = dataset_class(dataset, registry, base)
    if kind is None:
        return None
    arguments = {k: v for k, v in dataset.items()
                 if k not in ('type', '_scope_')}
    try:
        return kind(**dict(arguments, pipeline=[], lazy_init=True))
    except Exception:  # noqa: B902 see above
        return None


def dataset_metainfo(cfg: Config) -> Dict[str, Any]:
    """The metainfo (``classes``, ``palette``, ...) of the config's test
    dataset as its library resolves it (the config's ``metainfo``, else its
    class's), read without its data; {} where it has none or cannot be
    built here."""
    from mmengine.dataset import BaseDataset
    registry = importlib.import_module(
        f'{cfg.default_scope}.registry').DATASETS
    for where, dataset in leaf_datasets(cfg):
        if where.startswith('test_dataloader'):
            built = lazily_built(dataset, registry, BaseDataset)
            return {} if built is None else dict(built.metainfo)
    return {}


def classes_source(dataset: Dict[str, Any], built: Any) -> str:
    """Where a built dataset's classes come from, for messages."""
    if (dataset.get('metainfo') or {}).get('classes') is not None:
        return 'its metainfo.classes'
    return f"{type(built).__name__}'s"


def read_classes(metainfo: Dict[str, Any], key: str) -> Optional[List[str]]:
    """``metainfo[key]`` as mmengine reads it: a sequence, or a file of one
    name per line; None where absent or not a file it can read here."""
    names = metainfo.get(key)
    if isinstance(names, str):
        return list_from_file(names) if osp.isfile(names) else None
    return None if names is None else list(names)
