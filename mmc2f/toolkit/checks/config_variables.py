# Copyright (c) mmc2f contributors. All rights reserved.
"""A config's ``data_root`` and ``classes`` variables against what its
dataloaders read.

A config variable is substituted where the file that uses it is read: a
child config or ``--cfg-options`` that sets ``data_root`` or ``classes``
anew changes the variable only, and the dataloaders go on reading the base
config's data, silently. That is an error here, naming the keys to set."""
import ast
import copy
import os.path as osp
from typing import Any, Dict, List, Optional, Set, Tuple

from mmengine.config import Config

from .datasets import leaf_datasets
from .error import ConfigCheckError


def _reads(variable: Any, value: Any) -> int:
    """How closely a dataset's ``value`` follows the config's ``variable``:
    0 not at all; for a root, the length of the variable it extends
    (``data_root + 'coco/'``), so the longer of two roots wins."""
    if isinstance(variable, str) and isinstance(value, str) and variable:
        root = osp.normpath(variable)
        return len(root) if osp.normpath(value) == root or \
            value.startswith(root + '/') else 0
    if isinstance(variable, (list, tuple)) and isinstance(
            value, (list, tuple)):
        return int(list(variable) == list(value))
    return int(variable is not None and variable == value)


# The variables that configs pass to their datasets: the dataset key that
# reads each, and what else the variable usually sets.
_VARIABLES = {
    'data_root': (('data_root', ), "the evaluators' ann_file"),
    'classes': (('metainfo', 'classes'), "the heads' num_classes"),
}


def _assigned(path: Optional[str]) -> Set[str]:
    """The names a Python config file assigns at its top level."""
    if not path or not path.endswith('.py') or not osp.isfile(path):
        return set()
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), path)
    return {target.id for node in tree.body
            if isinstance(node, (ast.Assign, ast.AnnAssign))
            for target in (node.targets if isinstance(node, ast.Assign)
                           else [node.target])
            if isinstance(target, ast.Name)}


def _base_value(path: str, variable: str) -> Any:
    """The variable's value in the ``_base_`` files of a Python config (at
    most one of them may set it), or None."""
    if not path.endswith('.py'):
        return None
    for base in Config._get_base_files(path):
        value = Config.fromfile(Config._get_cfg_path(base, path)[0]).get(
            variable)
        if value is not None:
            return value
    return None


def _readers(cfg: Config, key: Tuple[str, ...]) -> List[Tuple[str, Any]]:
    """(place, value) of ``key`` in each dataset that sets it."""
    found = []
    for where, dataset in leaf_datasets(cfg):
        node: Any = dataset
        for part in key:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            found.append((f'{where}.{".".join(key)}', node))
    return found


def check_config_variables(cfg: Config,
                           options: Optional[Dict[str, Any]] = None) -> None:
    """ValueError where ``data_root`` or ``classes`` was set anew, by the
    config file over the value of its ``_base_`` or by ``options``
    (``--cfg-options``, not yet merged into ``cfg``), and no dataset follows
    it while datasets still read the old value: the variable was set after
    the file that used it was read.

    A flat file (no ``_base_`` that has the variable: a work_dir's dumped
    config, a whole copy edited by hand) is read with its datasets at once,
    so its variable is no mistake whatever they read; nor is a new value
    where no dataset reads the old one any more. A child config that sets
    the datasets' keys and not the variable, options that set the datasets'
    keys, and a child whose variable reaches some of the datasets, pass.
    """
    merged = copy.deepcopy(cfg)
    merged.merge_from_dict(options or {})
    for variable, (key, also) in _VARIABLES.items():
        new = merged.get(variable)
        if not new:
            continue
        if variable in (options or {}):
            old = cfg.get(variable)
        elif variable in _assigned(cfg.filename):
            old = _base_value(cfg.filename, variable)
            if old is None:
                continue  # no base had it: the file's datasets read it
        else:
            continue
        if old is not None and _reads(old, new) and _reads(new, old):
            continue  # set again to the same value
        readers = _readers(merged, key)
        # Where some dataset follows the new value, others may keep the old
        # one by design (a child that evaluates elsewhere).
        if any(_reads(new, v) > _reads(old, v) for _, v in readers):
            continue
        stale = [(w, v) for w, v in readers
                 if old is None or _reads(old, v)]
        if stale:
            places = ', '.join(f'{w}={v!r}' for w, v in stale)
            raise ConfigCheckError(
                f'The config sets {variable}={new!r}, but the dataloaders '
                f'read {places}: a config variable is substituted when the '
                'file that uses it is read, so a new value in a child config '
                'or --cfg-options does not reach them. Set it where it is '
                'used (--cfg-options '
                f'{" ".join(f"{w}=..." for w, _ in stale)}, and {also}), or '
                'edit a copy of the whole config')
