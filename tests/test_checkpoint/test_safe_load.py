import argparse
import itertools
import os
import os.path as osp
import pickle
import re
from typing import Optional

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner, load_checkpoint

import mmc2f  # noqa: F401  registers the safe local loader
from mmc2f.checkpoint import CheckpointLoadError, safe_torch_load
from mmc2f.checkpoint.safe_load import TRUST_ENV, _restricted_getattr


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.linear(inputs)  # default_collate stacked the batch
        if mode == 'loss':
            return dict(loss=(out - labels).square().mean())
        return out


class ToyDataset(torch.utils.data.Dataset):
    metainfo = dict(classes=('a', 'b'))

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(inputs=torch.full((2, ), float(i)),
                    labels=torch.ones(1))


_RUNS = itertools.count()


def toy_runner(work_dir: str, max_iters: int,
               model: Optional[nn.Module] = None, **kwargs) -> Runner:
    return Runner(
        model=model or ToyModel(),
        work_dir=work_dir,
        # mmengine names its logger and visualizer by the start second: a
        # runner started in the same second as an earlier test's would
        # write into that test's (already removed) tmp_path.
        experiment_name=f'toy_{next(_RUNS)}',
        train_dataloader=dict(
            dataset=ToyDataset(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='default_collate'),
            batch_size=2),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        **kwargs)


def runner_checkpoint(work_dir: str, **kwargs) -> str:
    """A checkpoint written by mmengine's own Runner (numpy,
    HistoryBuffer)."""
    toy_runner(
        work_dir, 3,
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=3,
                                           by_epoch=False)),
        randomness=dict(seed=0), **kwargs).train()
    return osp.join(work_dir, 'iter_3.pth')


class Exploit:
    """Pickles to a call that creates a file: the stand-in for malicious
    code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker, ))


def test_runner_checkpoint_loads(tmp_path):
    ckpt = runner_checkpoint(str(tmp_path))
    # torch's own default refuses it: this is what mmc2f fixes.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(ckpt)
    model = ToyModel()
    checkpoint = load_checkpoint(model, ckpt)
    assert 'message_hub' in checkpoint and 'meta' in checkpoint
    hub = checkpoint['message_hub']['log_scalars']
    assert hub['train/loss'].mean() > 0  # HistoryBuffer with its methods
    assert checkpoint['meta']['iter'] == 3


def test_runner_resume_from_checkpoint(tmp_path):
    ckpt = runner_checkpoint(str(tmp_path / 'a'))
    runner = toy_runner(str(tmp_path / 'b'), 4, resume=True, load_from=ckpt)
    runner.train()
    assert runner.iter == 4


def test_timm_checkpoint_with_namespace_loads(tmp_path):
    path = str(tmp_path / 'timm.pth.tar')
    torch.save(
        dict(epoch=299, arch='conv2former_t', version=2, metric=83.2,
             state_dict={'w': torch.ones(2)},
             args=argparse.Namespace(lr=1e-3, model='conv2former_t'),
             amp_scaler={'scale': 65536.0}), path)
    ckpt = safe_torch_load(path)
    assert ckpt['args'].lr == 1e-3 and torch.equal(ckpt['state_dict']['w'],
                                                    torch.ones(2))


def test_numpy_objects_load(tmp_path):
    path = str(tmp_path / 'np.pth')
    torch.save(dict(a=np.arange(3), s=np.float64(2.5), i=np.int64(3)), path)
    ckpt = safe_torch_load(path)
    assert ckpt['a'].tolist() == [0, 1, 2] and ckpt['s'] == 2.5


@pytest.mark.parametrize('zip_format', [True, False])
def test_code_executing_pickle_is_refused(tmp_path, monkeypatch, zip_format):
    """In torch's zip format, and in its legacy one (which used to be
    reported as a damaged file to download again)."""
    marker = str(tmp_path / 'pwned')
    path = str(tmp_path / 'evil.pth')
    torch.save(dict(state_dict={'w': torch.ones(1)}, x=Exploit(marker)), path,
               _use_new_zipfile_serialization=zip_format)
    monkeypatch.delenv(TRUST_ENV, raising=False)
    with pytest.raises(CheckpointLoadError) as e:
        load_checkpoint(ToyModel(), path)
    message = str(e.value)
    assert f'Refused to load checkpoint {path}: its pickle references' in \
        message
    assert path in message and TRUST_ENV in message
    assert 'os.makedirs' in message or 'posix' in message
    assert not osp.exists(marker)  # the code did not run
    # The user can opt in, for this file only.
    monkeypatch.setenv(TRUST_ENV, path)
    safe_torch_load(path)
    assert osp.exists(marker)


def test_getattr_restricted_to_history_buffer(tmp_path):
    """A pickle that calls getattr on something else than a HistoryBuffer is
    refused even though Runner checkpoints need builtins.getattr."""

    class GetattrExploit:

        def __reduce__(self):
            return (getattr, (torch.ones(1), 'numpy'))

    path = str(tmp_path / 'getattr.pth')
    torch.save({'x': GetattrExploit()}, path)
    with pytest.raises(CheckpointLoadError):
        safe_torch_load(path)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        safe_torch_load(str(tmp_path / 'nope.pth'))
    good = str(tmp_path / 'good.pth')
    torch.save({'w': torch.randn(1000)}, good)
    data = open(good, 'rb').read()
    for name, content in (('truncated.pth', data[:len(data) // 2]),
                          ('garbage.pth', b'not a checkpoint' * 10)):
        path = str(tmp_path / name)
        with open(path, 'wb') as f:
            f.write(content)
        with pytest.raises(CheckpointLoadError,
                           match='truncated or corrupt') as e:
            load_checkpoint(ToyModel(), path)
        assert path in str(e.value)


def test_out_of_memory_is_not_called_damage(tmp_path):
    path = str(tmp_path / 'good.pth')
    torch.save({'w': torch.ones(3)}, path)

    def full_device(storage, location):
        raise torch.cuda.OutOfMemoryError('CUDA out of memory')

    with pytest.raises(torch.cuda.OutOfMemoryError):
        safe_torch_load(path, map_location=full_device)


def test_no_global_change_to_torch(tmp_path):
    """Loading through mmc2f leaves torch.load's allowlist as it was."""
    path = str(tmp_path / 'np.pth')
    torch.save({'a': np.arange(2), 'ns': argparse.Namespace()}, path)
    safe_torch_load(path)
    allowed = {
        g[0] if isinstance(g, tuple) else g
        for g in torch.serialization.get_safe_globals()
    }
    assert not allowed & {np.ndarray, argparse.Namespace, _restricted_getattr}
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)


def _pretrained_backbone(path, arch=dict(channels=[16, 32, 48, 64],
                                         depths=[1, 1, 2, 1],
                                         kernel_size=5)):
    from mmc2f.models import Conv2Former
    return Conv2Former(arch, out_norm=True, out_indices=(0, 1, 2, 3),
                       init_cfg=dict(type='Pretrained', checkpoint=path,
                                     prefix='backbone.'))


def _save_backbone_checkpoint(path, arch, drop=(), others=None, **kwargs):
    """A checkpoint of a Conv2Former under 'backbone.' (and ``others``, the
    rest of a whole model); every tensor distinct from a fresh init's."""
    from mmc2f.models import Conv2Former
    model = Conv2Former(arch, **kwargs)
    model.init_weights()
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(torch.rand_like(value))
    state_dict = {'backbone.' + k: v for k, v in model.state_dict().items()
                  if k not in drop}
    torch.save({'state_dict': dict(state_dict, **(others or {}))}, path)
    return model


SMALL = dict(channels=[16, 32, 48, 64], depths=[1, 1, 2, 1], kernel_size=5)


def test_pretrained_loads_and_reports_partial(tmp_path, monkeypatch):
    path = str(tmp_path / 'ckpt.pth')
    source = _save_backbone_checkpoint(
        path, SMALL, drop=('stages.3.0.mlp.fc2.bias', ))
    backbone = _pretrained_backbone(path)
    logged = []
    monkeypatch.setattr('mmc2f.checkpoint.fit.print_log',
                        lambda msg, **kwargs: logged.append(msg))
    backbone.init_weights()
    # Every tensor the file has is loaded, the dropped one is not.
    loaded = backbone.state_dict()
    for key, value in source.state_dict().items():
        if key != 'stages.3.0.mlp.fc2.bias':
            assert torch.equal(loaded[key], value), key
    assert not torch.equal(loaded['stages.3.0.mlp.fc2.bias'],
                           source.state_dict()['stages.3.0.mlp.fc2.bias'])
    # The out norms and the dropped bias are named as missing.
    log = '\n'.join(logged)
    assert 'Partial load' in log
    assert 'stages.3.0.mlp.fc2.bias' in log and 'norm0.weight' in log


def test_pretrained_other_arch_is_an_error(tmp_path):
    path = str(tmp_path / 'nano.pth')
    _save_backbone_checkpoint(path, dict(SMALL, kernel_size=3))
    with pytest.raises(CheckpointLoadError, match='another architecture'):
        _pretrained_backbone(path).init_weights()


def test_pretrained_in_a_list_is_loaded_as_alone(tmp_path):
    """A list init_cfg: the others first, then the same checked load."""
    path = str(tmp_path / 'small.pth')
    source = _save_backbone_checkpoint(path, SMALL)
    backbone = _pretrained_backbone(path)
    pretrained = backbone.init_cfg
    backbone.init_cfg = [dict(type='Constant', layer='Conv2d', val=0.),
                         pretrained]
    backbone.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(backbone.state_dict()[key], value), key
    _save_backbone_checkpoint(path, dict(SMALL, kernel_size=3))
    backbone = _pretrained_backbone(path)
    backbone.init_cfg = [backbone.init_cfg]
    with pytest.raises(CheckpointLoadError, match='another architecture'):
        backbone.init_weights()
    backbone.init_cfg = [pretrained, pretrained]
    with pytest.raises(ValueError, match='2 Pretrained entries'):
        backbone.init_weights()


def test_pretrained_without_backbone_keys_is_an_error(tmp_path):
    path = str(tmp_path / 'released.pth')
    torch.save({'stages.0.0.attn.v.weight': torch.zeros(1)}, path)
    with pytest.raises(CheckpointLoadError, match="no key starting with"):
        _pretrained_backbone(path).init_weights()
    torch.save({'backbone.layer1.0.conv1.weight': torch.zeros(1)}, path)
    with pytest.raises(CheckpointLoadError, match='has no weight of this'):
        _pretrained_backbone(path).init_weights()


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    """A save interrupted before it completes leaves the previous checkpoint
    intact and no partial file, for mmengine's own save_checkpoint through
    the backend SafeCheckpointHook gives it."""
    from mmengine.runner.checkpoint import save_checkpoint

    from mmc2f.checkpoint import ATOMIC_BACKEND
    path = str(tmp_path / 'epoch_1.pth')
    atomic = dict(backend=ATOMIC_BACKEND)
    save_checkpoint({'state_dict': {'w': torch.zeros(3)}}, path,
                    backend_args=atomic)

    def killed(*args):
        raise KeyboardInterrupt  # the process dies before the rename

    monkeypatch.setattr(os, 'replace', killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({'state_dict': {'w': torch.ones(3)}}, path,
                        backend_args=atomic)
    monkeypatch.undo()
    assert torch.equal(safe_torch_load(path)['state_dict']['w'],
                       torch.zeros(3))
    assert os.listdir(tmp_path) == ['epoch_1.pth']  # no temporary left


def test_prefix_without_trailing_dot(tmp_path):
    """``prefix='backbone'`` loads as mmengine's Pretrained init takes it."""
    from mmc2f.checkpoint import load_pretrained
    path = str(tmp_path / 'ckpt.pth')
    source = _save_backbone_checkpoint(path, SMALL)
    backbone = _pretrained_backbone(path)
    load_pretrained(backbone, path, 'backbone')
    for key, value in source.state_dict().items():
        assert torch.equal(backbone.state_dict()[key], value), key


def test_a_missing_pretrained_file_says_how_to_get_one(tmp_path):
    """A config's first run before its ImageNet file is converted."""
    path = str(tmp_path / 'checkpoints' / 'conv2former-t_in1k_mmc2f.pth')
    backbone = _pretrained_backbone(path)
    with pytest.raises(FileNotFoundError) as error:
        backbone.init_weights()
    message = str(error.value)
    assert message.startswith(f'The pretrained backbone file {path} does '
                              'not exist: download the released ImageNet')
    assert 'conv2former_to_mmc2f.py' in message
    assert '--cfg-options model.backbone.init_cfg=None' in message


def test_a_pretrained_file_under_home_is_found(tmp_path, monkeypatch):
    """``~/...`` as mmengine's loader reads it, not "does not exist"."""
    monkeypatch.setenv('HOME', str(tmp_path))
    _save_backbone_checkpoint(str(tmp_path / 'p.pth'), SMALL)
    _pretrained_backbone('~/p.pth').init_weights()


def test_checkpoint_permissions_follow_umask(tmp_path):
    """Atomic writes give the permissions a plain open() would, not
    mkstemp's owner-only 0600."""
    from mmengine.runner.checkpoint import save_checkpoint
    old = os.umask(0o022)
    try:
        import mmc2f.checkpoint.atomic as checkpoint
        umask, checkpoint._UMASK = checkpoint._UMASK, 0o022
        path = str(tmp_path / 'epoch_1.pth')
        save_checkpoint({'state_dict': {'w': torch.zeros(3)}}, path,
                        backend_args=dict(backend=checkpoint.ATOMIC_BACKEND))
        plain = tmp_path / 'plain'
        plain.write_bytes(b'')
    finally:
        checkpoint._UMASK = umask
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert os.stat(plain).st_mode & 0o777 == 0o644


def test_empty_arrays_and_history_buffers_load(tmp_path):
    """Pickle protocol 2 writes their empty data as ``bytes()``: plain data,
    not code."""
    from mmengine.logging import HistoryBuffer
    path = str(tmp_path / 'empty.pth')
    torch.save(dict(a=np.array([]), z=np.zeros((0, 3), np.float32),
                    h=HistoryBuffer()), path)
    ckpt = safe_torch_load(path)
    assert ckpt['a'].shape == (0, ) and ckpt['z'].shape == (0, 3)
    assert ckpt['z'].dtype == np.float32 and len(ckpt['h'].data[0]) == 0


class EmptyDataHook(Hook):
    """Keeps an empty HistoryBuffer and an empty array in the message hub's
    resumed runtime information, which every checkpoint saves."""

    def before_train(self, runner):
        from mmengine.logging import HistoryBuffer
        runner.message_hub.update_info('empty_buffer', HistoryBuffer())
        runner.message_hub.update_info('empty_array', np.zeros((0, 4)))


def test_runner_checkpoint_with_empty_buffers_loads_and_resumes(tmp_path):
    ckpt = runner_checkpoint(str(tmp_path / 'a'),
                             custom_hooks=[EmptyDataHook()])
    checkpoint = load_checkpoint(ToyModel(), ckpt)
    info = checkpoint['message_hub']['runtime_info']
    assert len(info['empty_buffer'].data[0]) == 0
    assert info['empty_array'].shape == (0, 4)
    runner = toy_runner(str(tmp_path / 'b'), 4, resume=True, load_from=ckpt)
    runner.train()
    assert runner.iter == 4
    assert runner.message_hub.get_info('empty_array').shape == (0, 4)


def test_bytes_with_arguments_is_refused(tmp_path):
    """Only ``bytes()`` is data; ``bytes(n)`` would allocate what the file
    asks for."""

    class BytesBomb:

        def __reduce__(self):
            return (bytes, (10**6, ))

    path = str(tmp_path / 'bomb.pth')
    torch.save({'x': BytesBomb()}, path)
    with pytest.raises(CheckpointLoadError,
                       match=r'Refused.*bytes\(\) with arguments'):
        safe_torch_load(path)


def test_detector_checkpoint_as_backbone_pretrained(tmp_path, monkeypatch):
    """A detector's checkpoint where an ImageNet file is expected: its
    trained backbone is what ``prefix='backbone.'`` selects, so it loads
    (out norms included), as an ImageNet classifier's file with its neck and
    head does; the log names what was left out. Without the prefix, the
    error names the prefix to set."""
    from mmc2f.models import Conv2Former
    path = str(tmp_path / 'mask-rcnn.pth')
    source = _save_backbone_checkpoint(
        path, SMALL, out_norm=True, out_indices=(0, 1, 2, 3),
        others={'neck.lateral_convs.0.conv.weight': torch.zeros(1),
                'neck.fpn_convs.0.conv.weight': torch.zeros(1),
                'rpn_head.rpn_conv.weight': torch.zeros(1)})
    logged = []
    monkeypatch.setattr('mmc2f.checkpoint.fit.print_log',
                        lambda msg, **kwargs: logged.append(msg))
    backbone = _pretrained_backbone(path)
    backbone.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(backbone.state_dict()[key], value), key
    total = len(source.state_dict())
    assert logged == [
        f'Loaded {total}/{total} tensors of Conv2Former from {path} (not '
        "loaded: the tensors outside 'backbone.', {'neck': 2, "
        "'rpn_head': 1})"]
    unprefixed = Conv2Former(SMALL, init_cfg=dict(type='Pretrained',
                                                  checkpoint=path))
    with pytest.raises(CheckpointLoadError,
                       match="under 'backbone.': set the init_cfg prefix to "
                       "'backbone.'"):
        unprefixed.init_weights()


def test_check_trained_checkpoint(tmp_path):
    """Every tensor of the model in its shape, or an error naming what is
    missing and what differs; wrappers and a saved 'module.' prefix are
    seen through, BatchNorm's counters are not required."""
    from torch.nn.parallel import DataParallel

    from mmc2f.checkpoint import check_trained_checkpoint
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    state = model.state_dict()
    path = str(tmp_path / 'model.pth')
    torch.save(dict(state_dict=state), path)
    check_trained_checkpoint(model, path)
    check_trained_checkpoint(DataParallel(model), path)
    torch.save({f'module.{k}': v for k, v in state.items()
                if 'num_batches' not in k}, path)
    check_trained_checkpoint(model, path)
    torch.save(dict(state_dict={k: v for k, v in state.items()
                                if k != '1.running_var'}), path)
    with pytest.raises(CheckpointLoadError,
                       match=r"Sequential: 1 of the 6 tensors are missing "
                       r"\(e.g. \['1.running_var'\]\)\. Give"):
        check_trained_checkpoint(model, path)
    torch.save(dict(state, **{'0.weight': torch.zeros(4, 3, 5, 5)}), path)
    with pytest.raises(CheckpointLoadError,
                       match=r"Sequential: 1 differ in shape \(e.g. "
                       r"\['0.weight: file \(4, 3, 5, 5\) vs model "
                       r"\(4, 3, 3, 3\)'\]\)"):
        check_trained_checkpoint(model, path)


@pytest.mark.parametrize('name, message', [
    ('folder', 'is a folder: give the checkpoint file in it'),
    ('htps://host/x.pth', 'does not exist (as a URL, its scheme htps:// is '
     'not one that checkpoints load from'),
    ('file:///x.pth', 'its scheme file:// is not one'),
])
def test_a_folder_or_unknown_scheme_is_named(tmp_path, monkeypatch, name,
                                             message):
    from mmengine.runner.checkpoint import CheckpointLoader
    monkeypatch.chdir(tmp_path)
    os.makedirs('folder')
    with pytest.raises(FileNotFoundError, match=re.escape(message)):
        CheckpointLoader.load_checkpoint(name)
