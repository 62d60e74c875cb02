"""tools/dist_train.sh as a user runs it: torchrun with two processes, here
on the CPU over gloo, training the real Mask R-CNN config (scaled down) for
one epoch."""
import glob
import json
import math
import os
import os.path as osp
import re
import socket
import subprocess
import sys

import torch

from mmc2f.toolkit.overrides import coco_overrides, to_cli
from mmc2f.toolkit.synthetic_data import SHAPES, make_coco_shapes
from tests.test_e2e.helpers import REPO, load

CONFIG = 'configs/mask_rcnn/mask-rcnn_conv2former-t_fpn_amp-ms-crop-3x_coco.py'
NUM_TRAIN, NUM_PROCS, BATCH = 6, 2, 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_config_has_no_sync_bn():
    # gloo on the CPU has no SyncBN; the config must not ask for it.
    cfg = load(CONFIG)
    assert 'SyncBN' not in cfg.pretty_text and not cfg.get('sync_bn')


def test_cpu_launcher_initialises_gloo(monkeypatch):
    """What each torchrun process does before the Runner: a real gloo
    process group (here a world of one), even from the config's nccl, and
    DDP without device ids."""
    import torch.distributed as dist

    from mmc2f.toolkit.cli import _setup_cpu_distributed
    for key, value in dict(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1',
                           MASTER_ADDR='127.0.0.1',
                           MASTER_PORT=str(free_port())).items():
        monkeypatch.setenv(key, value)
    cfg = load(CONFIG)
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'
    assert not dist.is_initialized()
    try:
        _setup_cpu_distributed(cfg)
        assert dist.is_initialized() and dist.get_backend() == 'gloo'
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.model_wrapper_cfg.device_ids is None
    assert cfg.model_wrapper_cfg.type == 'MMDistributedDataParallel'


def test_two_process_cpu_training(tmp_path):
    coco = make_coco_shapes(str(tmp_path / 'coco'), num_train=NUM_TRAIN,
                            num_val=2, size=(128, 128))
    with open(osp.join(coco['data_root'], coco['train_ann'])) as f:
        ann = json.load(f)
    # filter_empty_gt keeps all: every generated image has an instance.
    assert len({a['image_id'] for a in ann['annotations']}) == NUM_TRAIN

    overrides = dict(
        coco_overrides(load(CONFIG), coco, SHAPES, scale_factor=0.2), **{
            'model.backbone.init_cfg': None,
            'model.backbone.arch': 'nano',
            'model.neck.in_channels': [64, 128, 256, 512],
            'train_cfg.max_epochs': 1,
            'train_dataloader.batch_size': BATCH,
            'default_hooks.logger.interval': 1,
            'env_cfg.dist_cfg.backend': 'gloo',
        })
    for split in ('train', 'val', 'test'):
        overrides[f'{split}_dataloader.num_workers'] = 0
        overrides[f'{split}_dataloader.persistent_workers'] = False
    work_dir = str(tmp_path / 'work')
    env = dict(os.environ, PYTHON=sys.executable, MASTER_PORT=str(free_port()),
               PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    env.pop('PORT', None)
    result = subprocess.run(
        ['bash', 'tools/dist_train.sh', CONFIG, str(NUM_PROCS), '--work-dir',
         work_dir, '--cfg-options', *to_cli(overrides)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]

    logs = glob.glob(osp.join(work_dir, '*', '*.log'))
    assert len(logs) == 1, logs  # rank 0's
    with open(logs[0]) as f:
        log = f.read()
    assert "dist_cfg: {'backend': 'gloo'}" in log
    assert 'Distributed launcher: pytorch' in log
    assert 'Distributed training: True' in log
    assert re.search(r'GPU number: 2\b', log)  # mmengine's world size
    # Each rank draws its own half of the images.
    iters = math.ceil(NUM_TRAIN / (NUM_PROCS * BATCH))
    steps = re.findall(r'Epoch\(train\) +\[1\]\[ *(\d+)/(\d+)\]', log)
    assert steps and {int(total) for _, total in steps} == {iters}, steps
    assert int(steps[-1][0]) == iters
    # Validation ran too: 2 images, one per rank, results gathered.
    assert re.search(r'Epoch\(val\) +\[1\]\[1/1\]', log)
    assert 'coco/bbox_mAP' in log

    # Only rank 0 saves.
    assert sorted(f for f in os.listdir(work_dir) if f.endswith('.pth')) == [
        'epoch_1.pth'
    ]
    from mmengine.runner.checkpoint import CheckpointLoader

    import mmc2f  # noqa: F401  safe loader for mmengine checkpoints
    ckpt = CheckpointLoader.load_checkpoint(
        osp.join(work_dir, 'epoch_1.pth'), map_location='cpu')
    assert ckpt['meta']['epoch'] == 1 and ckpt['meta']['iter'] == iters
    state = ckpt['state_dict']
    # Saved unwrapped (no DDP 'module.' prefix), nano backbone weights.
    assert not any(k.startswith('module.') for k in state)
    assert state['backbone.downsample_layers.1.1.weight'].shape == (128, 64,
                                                                     2, 2)
    assert all(torch.isfinite(v).all() for v in state.values()
               if v.is_floating_point())
