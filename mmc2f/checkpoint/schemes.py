# Copyright (c) mmc2f contributors. All rights reserved.
"""Every scheme of mmengine's ``CheckpointLoader`` through the safe unpickler.

mmengine 0.10.7 loads URLs (and ``torchvision://``, ``open-mmlab://`` and
``mmcls://``, which resolve to URLs) with
``torch.hub.load_state_dict_from_url``, which unpickles with
``weights_only=False``: the code in a downloaded pickle runs. ``pavi://``,
``s3://``, ``petrel://`` and the local files that ``open-mmlab://`` may name
go to a bare ``torch.load``. :func:`register_safe_loaders` registers each
scheme again: the same name resolution (mmengine's own tables), then
:func:`~mmc2f.checkpoint.safe_load.safe_torch_load`, with its messages and its
per-file opt-in (``MMC2F_TRUSTED_CHECKPOINTS`` lists the path or the URL).

Downloads are atomic and complete: a temporary file, renamed into torch's hub
cache only when all the bytes the server announced have arrived. Each URL has
its own folder there, so a file of the same name from another URL is never
taken for it.
"""
import difflib
import hashlib
import logging
import os.path as osp
from http.client import HTTPException
from tempfile import TemporaryDirectory
from typing import Any, Dict, Optional
from urllib.error import URLError
from urllib.parse import urlparse
from urllib.request import Request, urlopen

import torch
from mmengine.dist import get_dist_info
from mmengine.fileio import get_file_backend
from mmengine.logging import print_log

from .atomic import atomic_open
from .safe_load import (CheckpointLoadError, MapLocation, safe_torch_load,
                        safe_torch_load_bytes)

_READ_CHUNK = 1 << 20


def cached_path(url: str, model_dir: Optional[str] = None) -> str:
    """Where :func:`download_checkpoint` keeps ``url``'s file: its name, in
    a folder of ``model_dir`` named by the URL's hash."""
    if model_dir is None:
        model_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
    name = osp.basename(urlparse(url).path)
    if not name:
        raise CheckpointLoadError(
            f'Checkpoint URL {url} names no file (its path ends with "/")')
    folder = 'url-' + hashlib.sha256(url.encode()).hexdigest()[:16]
    return osp.join(model_dir, folder, name)


def download_checkpoint(url: str, model_dir: Optional[str] = None) -> str:
    """The local copy of ``url``, downloaded if absent.

    Args:
        url (str): An http(s) URL.
        model_dir (str, optional): Where to keep it (:func:`cached_path`).
            Defaults to torch's hub cache
            (``<torch.hub.get_dir()>/checkpoints``), as mmengine's.

    Returns:
        str: The path of the complete file.

    Raises:
        CheckpointLoadError: The download failed or ended early; nothing
            was saved.
    """
    cached = cached_path(url, model_dir)
    if osp.isfile(cached):
        return cached
    print_log(f'Downloading {url} to {cached}', logger='current')
    try:
        with urlopen(Request(url, headers={'User-Agent': 'mmc2f'})) as reply, \
                atomic_open(cached, then='load it again') as f:
            announced = reply.headers.get('Content-Length')
            received = 0
            while True:
                chunk = reply.read(_READ_CHUNK)
                if not chunk:
                    break
                f.write(chunk)
                received += len(chunk)
            # urllib returns a connection closed early as the end of the
            # data: only the announced length tells a partial download.
            if announced is not None and received != int(announced):
                raise CheckpointLoadError(
                    f'Download of checkpoint {url} ended after {received} of '
                    f'{announced} bytes; nothing was saved, try again')
    except (URLError, HTTPException, OSError) as e:
        raise CheckpointLoadError(
            f'Could not download checkpoint {url}: {e}; nothing was saved '
            f'(without a network, put the file at {cached})') from e
    return cached


def load_from_local(filename: str, map_location: MapLocation = None) -> Any:
    return safe_torch_load(osp.expanduser(filename), map_location)


def load_from_http(filename: str,
                   map_location: MapLocation = None,
                   model_dir: Optional[str] = None) -> Any:
    # As mmengine's: rank 0 downloads first, the others then find its copy.
    rank, world_size = get_dist_info()
    if rank == 0:
        download_checkpoint(filename, model_dir)
    if world_size > 1:
        torch.distributed.barrier()
    return safe_torch_load(
        download_checkpoint(filename, model_dir), map_location,
        source=filename)


def load_from_pavi(filename: str, map_location: MapLocation = None) -> Any:
    try:
        from pavi import modelcloud
    except ImportError:
        raise ImportError(
            f'Loading {filename} needs pavi: install it to load checkpoints '
            'from its modelcloud') from None
    model = modelcloud.get(filename[len('pavi://'):])
    with TemporaryDirectory() as tmp_dir:
        downloaded = osp.join(tmp_dir, model.name)
        model.download(downloaded)
        with open(downloaded, 'rb') as f:
            data = f.read()
    return safe_torch_load_bytes(data, filename, map_location)


def load_from_ceph(filename: str,
                   map_location: MapLocation = None,
                   backend: str = 'petrel') -> Any:
    file_backend = get_file_backend(
        filename, backend_args={'backend': backend})
    return safe_torch_load_bytes(
        file_backend.get(filename), filename, map_location)


def _resolve(table: Dict[str, str], name: str, filename: str) -> str:
    """``table[name]``, or an error naming the scheme's closest names."""
    if name in table:
        return table[name]
    close = difflib.get_close_matches(name, list(table), n=3)
    raise CheckpointLoadError(
        f'Unknown checkpoint {filename}: {name!r} is not a model name of '
        'this scheme' + (f'; did you mean {close}?' if close else ''))


def _deprecated_scheme(old: str, new: str) -> None:
    print_log(f'The checkpoint scheme "{old}" is deprecated, please use '
              f'"{new}" instead', logger='current', level=logging.WARNING)


def load_from_torchvision(filename: str,
                          map_location: MapLocation = None) -> Any:
    from mmengine.runner.checkpoint import get_torchvision_models
    scheme, name = filename.split('://', 1)
    if scheme == 'modelzoo':
        _deprecated_scheme('modelzoo://', 'torchvision://')
    url = _resolve(get_torchvision_models(), name, filename)
    return load_from_http(url, map_location)


def load_from_openmmlab(filename: str,
                        map_location: MapLocation = None) -> Any:
    from mmengine.runner.checkpoint import (_get_mmengine_home,
                                            get_deprecated_model_names,
                                            get_external_models)
    scheme, name = filename.split('://', 1)
    deprecated = get_deprecated_model_names()
    if name in deprecated:
        _deprecated_scheme(f'{scheme}://{name}',
                           f'{scheme}://{deprecated[name]}')
        name = deprecated[name]
    url = _resolve(get_external_models(), name, filename)
    if url.startswith(('http://', 'https://')):
        return load_from_http(url, map_location)
    # A file in mmengine's home, listed by the user's open_mmlab.json.
    return safe_torch_load(osp.join(_get_mmengine_home(), url), map_location)


def load_from_mmcls(filename: str, map_location: MapLocation = None) -> Any:
    from mmengine.runner.checkpoint import (_process_mmcls_checkpoint,
                                            get_mmcls_models)
    url = _resolve(get_mmcls_models(), filename[len('mmcls://'):], filename)
    return _process_mmcls_checkpoint(load_from_http(url, map_location))


# Each loader with the prefixes mmengine 0.10.7 registers it for.
SCHEMES = (
    ('', load_from_local),
    (('http://', 'https://'), load_from_http),
    ('pavi://', load_from_pavi),
    ((r'(\S+\:)?s3://', r'(\S+\:)?petrel://'), load_from_ceph),
    (('modelzoo://', 'torchvision://'), load_from_torchvision),
    (('open-mmlab://', 'openmmlab://'), load_from_openmmlab),
    ('mmcls://', load_from_mmcls),
)


def register_safe_loaders() -> None:
    """Serve every checkpoint scheme of mmengine's ``CheckpointLoader``
    with the safe unpickler. Only mmengine's checkpoint loading changes;
    ``torch.load`` itself keeps its defaults for all other code."""
    from mmengine.runner.checkpoint import CheckpointLoader
    for prefixes, loader in SCHEMES:
        CheckpointLoader.register_scheme(
            prefixes=prefixes, loader=loader, force=True)
