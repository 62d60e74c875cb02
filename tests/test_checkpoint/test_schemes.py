"""Checkpoints from URLs and mmengine's other schemes go through the safe
unpickler: a code-running pickle is refused (its code does not run), a good
file loads, a partial download is never kept. Served over HTTP (and HTTPS,
with a self-signed certificate) on the loopback address."""
import http.server
import os
import os.path as osp
import shutil
import ssl
import subprocess
import sys
import threading
import types
from typing import Dict, Iterator, Tuple

import pytest
import torch
from mmengine.runner import load_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

import mmc2f  # noqa: F401  registers the safe loaders
from mmc2f.checkpoint import CheckpointLoadError
from mmc2f.checkpoint import schemes as checkpoint_schemes
from mmc2f.checkpoint.safe_load import TRUST_ENV
from tests.test_checkpoint.test_safe_load import (SMALL, Exploit, ToyModel,
                                                  _pretrained_backbone,
                                                  _save_backbone_checkpoint)


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``routes``: path -> (body, announced length)."""
    routes: Dict[str, Tuple[bytes, int]] = {}

    def do_GET(self):
        if self.path not in self.routes:
            self.send_error(404)
            return
        body, length = self.routes[self.path]
        self.send_response(200)
        self.send_header('Content-Length', str(length))
        self.end_headers()
        self.wfile.write(body)  # fewer bytes than announced: a cut download

    def log_message(self, *args):
        pass


def serve(tls_context=None) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    if tls_context is not None:
        server.socket = tls_context.wrap_socket(server.socket,
                                                server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheme = 'https' if tls_context else 'http'
    yield f'{scheme}://127.0.0.1:{server.server_address[1]}'
    server.shutdown()
    server.server_close()


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A good backbone checkpoint, a code-running one and a cut download
    on the server; downloads go to a fresh torch hub cache."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.delenv(TRUST_ENV, raising=False)
    good = str(tmp_path / 'good.pth')
    source = _save_backbone_checkpoint(good, SMALL)
    marker = str(tmp_path / 'pwned')
    evil = str(tmp_path / 'evil.pth')
    torch.save(dict(state_dict={'w': torch.ones(1)}, x=Exploit(marker)),
               evil)
    good_bytes, evil_bytes = open(good, 'rb').read(), open(evil, 'rb').read()
    monkeypatch.setattr(Handler, 'routes', {
        '/good-1234abcd.pth': (good_bytes, len(good_bytes)),
        '/evil.pth': (evil_bytes, len(evil_bytes)),
        '/cut.pth': (good_bytes[:len(good_bytes) // 2], len(good_bytes)),
    })
    return types.SimpleNamespace(source=source, marker=marker, evil=evil,
                                 cache=str(tmp_path / 'torch_home' / 'hub' /
                                           'checkpoints'))


@pytest.fixture
def http_url() -> Iterator[str]:
    yield from serve()


def cached(files, url: str) -> list:
    """The files of ``url``'s folder in the download cache."""
    folder = osp.dirname(checkpoint_schemes.cached_path(url, files.cache))
    return os.listdir(folder) if osp.isdir(folder) else []


def assert_refused(url: str, files, shown: str = None) -> None:
    with pytest.raises(CheckpointLoadError) as e:
        load_checkpoint(ToyModel(), url)
    message = str(e.value)
    assert 'Refused to load checkpoint' in message, message
    assert (shown or url) in message and TRUST_ENV in message
    assert 'posix.makedirs' in message or 'os.makedirs' in message
    assert not osp.exists(files.marker)  # the code did not run


def assert_loads_backbone(url: str, files) -> None:
    backbone = _pretrained_backbone(url)
    backbone.init_weights()
    for key, value in files.source.state_dict().items():
        assert torch.equal(backbone.state_dict()[key], value), key


def test_http_good_file_loads_and_code_is_refused(files, http_url,
                                                   monkeypatch):
    assert_loads_backbone(f'{http_url}/good-1234abcd.pth', files)
    assert cached(files, f'{http_url}/good-1234abcd.pth') == [
        'good-1234abcd.pth']
    url = f'{http_url}/evil.pth'
    assert_refused(url, files)
    # The opt-in is per file, by its URL (whose ':' is no separator here) or
    # by its cached copy.
    monkeypatch.setenv(TRUST_ENV, f'/elsewhere.pth:{url}')
    load_checkpoint(ToyModel(), url)
    assert osp.exists(files.marker)
    os.rmdir(files.marker)
    monkeypatch.setenv(TRUST_ENV,
                       checkpoint_schemes.cached_path(url, files.cache))
    load_checkpoint(ToyModel(), url)
    assert osp.exists(files.marker)


def test_a_same_named_file_of_another_url_is_never_used(files, http_url,
                                                        monkeypatch):
    """Downloads are cached per URL: a trusted URL never gets the cached
    file of another URL with the same name, nor an untrusted one a good
    file's copy."""
    routes = dict(Handler.routes)
    routes['/v1/model.pth'] = routes['/good-1234abcd.pth']
    routes['/v2/model.pth'] = routes['/evil.pth']
    monkeypatch.setattr(Handler, 'routes', routes)
    assert_loads_backbone(f'{http_url}/v1/model.pth', files)
    assert_refused(f'{http_url}/v2/model.pth', files)
    assert_loads_backbone(f'{http_url}/v1/model.pth', files)
    assert cached(files, f'{http_url}/v2/model.pth') == ['model.pth']


@pytest.mark.parametrize('value, urls, paths', [
    # A URL is trusted whole, never as the local paths its parts would name.
    ('https://example.com/model.pth', ['https://example.com/model.pth'], []),
    ('/a.pth:https://host:8080/m.pth:/b.pth', ['https://host:8080/m.pth'],
     ['/a.pth', '/b.pth']),
    ('cluster1:s3://bucket/m.pth', ['cluster1:s3://bucket/m.pth'], []),
    ('http://h/m.pth:http://h/n.pth', ['http://h/m.pth', 'http://h/n.pth'],
     []),
    # After a URL, a relative path is ambiguous: it trusts nothing more.
    ('https://h/m.pth:weights/a.pth', ['https://h/m.pth:weights/a.pth'], []),
    # export MMC2F_TRUSTED_CHECKPOINTS="$URL:$MMC2F_TRUSTED_CHECKPOINTS"
    ('https://h/m.pth:', ['https://h/m.pth'], []),
    ('https://h/m.pth::/b.pth', ['https://h/m.pth'], ['/b.pth']),
    ('/a.pth::./b.pth', [], ['/a.pth', osp.realpath('b.pth')]),
])
def test_trusted_entries(value, urls, paths):
    from mmc2f.checkpoint.safe_load import trusted_entries
    assert trusted_entries(value) == (set(urls), set(paths))


def test_partial_download_is_never_used(files, http_url):
    url = f'{http_url}/cut.pth'
    for _ in range(2):  # nothing was kept that the second try would use
        with pytest.raises(CheckpointLoadError,
                           match='ended after .* bytes; nothing was saved'):
            load_checkpoint(ToyModel(), url)
        assert cached(files, url) == []


def test_missing_url_is_a_clear_error(files, http_url):
    url = f'{http_url}/nope.pth'
    with pytest.raises(CheckpointLoadError,
                       match=f'Could not download checkpoint {url}: HTTP '
                       'Error 404'):
        load_checkpoint(ToyModel(), url)


def test_damaged_cached_download_names_the_fix(files, http_url):
    """A file cut short by an earlier tool (torch.hub keeps whatever the
    server sent) is refused with how to get it again."""
    url = f'{http_url}/good-1234abcd.pth'
    damaged = checkpoint_schemes.cached_path(url, files.cache)
    os.makedirs(osp.dirname(damaged))
    with open(damaged, 'wb') as f:
        f.write(b'PK\x03\x04 cut')
    with pytest.raises(CheckpointLoadError,
                       match=f'{url} .downloaded to .*; delete .* to '
                       'download it again'):
        load_checkpoint(ToyModel(), url)


@pytest.mark.skipif(shutil.which('openssl') is None, reason='needs openssl')
def test_https(files, tmp_path, monkeypatch):
    cert, key = str(tmp_path / 'cert.pem'), str(tmp_path / 'key.pem')
    subprocess.run(
        ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days',
         '1', '-subj', '/CN=127.0.0.1', '-addext',
         'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert],
        check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv('SSL_CERT_FILE', cert)  # the client trusts it
    for base in serve(context):
        assert_loads_backbone(f'{base}/good-1234abcd.pth', files)
        assert_refused(f'{base}/evil.pth', files)


def test_schemes_that_resolve_to_urls(files, http_url, monkeypatch):
    import mmengine.runner.checkpoint as mmengine_checkpoint
    evil, good = f'{http_url}/evil.pth', f'{http_url}/good-1234abcd.pth'
    monkeypatch.setattr(mmengine_checkpoint, 'get_torchvision_models',
                        lambda: {'toy': evil})
    monkeypatch.setattr(mmengine_checkpoint, 'get_external_models',
                        lambda: {'toy': evil, 'local': 'evil.pth'})
    monkeypatch.setattr(mmengine_checkpoint, 'get_mmcls_models',
                        lambda: {'toy': good, 'evil': evil})
    for name in ('torchvision://toy', 'modelzoo://toy', 'open-mmlab://toy',
                 'openmmlab://toy', 'mmcls://evil'):
        assert_refused(name, files, shown=evil)
    # open-mmlab:// may name a file in mmengine's home.
    home = osp.dirname(files.evil)
    monkeypatch.setenv('MMENGINE_HOME', home)
    assert_refused('open-mmlab://local', files, shown=files.evil)
    # mmcls:// keeps the backbone weights without their prefix.
    state_dict = CheckpointLoader.load_checkpoint('mmcls://toy')['state_dict']
    assert torch.equal(state_dict['stages.0.0.attn.v.weight'],
                       files.source.state_dict()['stages.0.0.attn.v.weight'])
    with pytest.raises(CheckpointLoadError,
                       match=r"'tyo' is not a model name.*\['toy'\]"):
        CheckpointLoader.load_checkpoint('torchvision://tyo')


def test_object_store_schemes(files, monkeypatch):
    """s3:// and petrel:// (read into memory) and pavi:// (downloaded to a
    temporary folder), with stand-ins for their clients."""
    evil_bytes = open(files.evil, 'rb').read()

    class Store:

        def get(self, filepath):
            return evil_bytes

    monkeypatch.setattr(checkpoint_schemes, 'get_file_backend',
                        lambda *args, **kwargs: Store())
    for name in ('s3://bucket/evil.pth', 'cluster:s3://bucket/evil.pth',
                 'petrel://bucket/evil.pth'):
        assert_refused(name, files)

    class Model:
        name = 'evil.pth'

        def download(self, path):
            shutil.copy(files.evil, path)

    pavi = types.ModuleType('pavi')
    pavi.modelcloud = types.SimpleNamespace(get=lambda path: Model())
    monkeypatch.setitem(sys.modules, 'pavi', pavi)
    assert_refused('pavi://project/evil.pth', files)


def test_every_mmengine_scheme_is_served_safely():
    """A scheme that mmengine (or a library) adds and mmc2f does not cover
    would keep its unsafe loader: this fails then."""
    for prefix, loader in CheckpointLoader._schemes.items():
        assert loader.__module__ == checkpoint_schemes.__name__, prefix
