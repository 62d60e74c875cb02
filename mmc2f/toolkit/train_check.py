# Copyright (c) mmc2f contributors. All rights reserved.
"""Train configs briefly on generated data at their own image sizes, then
test them: does this machine train the paper's models, and what does a run
cost here?

Each config runs through a train tool and then the matching test tool as
subprocesses, as a user runs them (mmc2f's ``tools/train.py`` and
``tools/test.py``, or with ``--tools library`` those shipped inside
mmdet / mmseg; with ``--gpus N``, ``tools/dist_train.sh`` and
``dist_test.sh`` on N processes), on a COCO-format (1333x800 images) or
ADE20k-format (683x512) set of coloured shapes generated once per library.
Everything of the config stays as written (model, AMP, optimiser, pipelines
and their image scales) except:

* the data: paths, and the generated set's 3 classes for a detector;
* the schedule: ``iters`` iterations, the warm-up over the first tenth,
  epoch-based schedules compressed (their steps at the same fractions),
  no validation, one checkpoint at the end;
* the backbone's checkpoint (``init_cfg``), dropped: nothing is downloaded;
* the log: every ``iters / 20`` iterations, averaged over that interval.

Read back from the runs' own logs (``vis_data/scalars.json`` and the test
run's json): the losses (all finite, and falling: the mean of the last
quarter of logged values below that of the first), seconds per iteration,
peak GPU memory (what mmengine logs: ``torch.cuda.max_memory_allocated``)
and per image, and the test metrics (COCO AP, mIoU). Library configs are
named as in ``_base_``: ``mmdet::convnext/mask-rcnn_convnext-t-p4-w7_fpn_
amp-ms-crop-3x_coco.py``.
"""
import argparse
import glob
import json
import math
import os
import os.path as osp
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.config import Config, DictAction

from mmc2f.toolkit.cli import config_scope, library_file
from mmc2f.toolkit.overrides import (Overrides, ade_overrides, coco_overrides,
                                     epoch_schedule, schedulers, to_cli)
from mmc2f.toolkit.synthetic_data import (SHAPES, make_ade_shapes,
                                          make_coco_shapes)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# Generated image (height, width): COCO's typical 800x1333 before the
# pipeline's resize, and ADE20k's 512-pixel short side.
IMAGE_SIZES = {'mmdet': (800, 1333), 'mmseg': (512, 683)}
METRICS = {
    'mmdet': ('coco/bbox_mAP', 'coco/segm_mAP'),
    'mmseg': ('mIoU', 'aAcc'),
}


def resolve_config(name: str) -> str:
    """A config path; ``pkg::rel`` is the file inside that installed
    library (its ``.mim/configs``), as ``_base_`` names it."""
    if '::' not in name:
        return osp.abspath(name)  # the tools run in the repository
    package, rel = name.split('::', 1)
    path = library_file(package, 'configs', rel)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{name}: no such config in {package} '
                                f'({path})')
    return path


def schedule_overrides(cfg: Config, iters: int,
                       iters_per_epoch: int) -> Overrides:
    """``iters`` iterations of the config's schedule (epoch-based ones in
    whole epochs), warm-up over the first tenth, no validation, one
    checkpoint at the end, a log line per twentieth."""
    warmup = max(iters // 10, 1)
    interval = max(iters // 20, 1)
    out: Overrides = {
        'default_hooks.logger.interval': interval,
        # An epoch's last iterations are logged too (by default they are
        # not when the interval does not divide the epoch).
        'default_hooks.logger.ignore_last': False,
        'log_processor.window_size': interval,
    }
    for key, scheduler in schedulers(cfg):
        if scheduler.type == 'LinearLR':  # the warm-up
            out[f'{key}.end'] = warmup
        elif not scheduler.get('by_epoch', True):  # e.g. mmseg's PolyLR
            if scheduler.get('begin', 0) > 0:  # after the warm-up
                out[f'{key}.begin'] = warmup
            out[f'{key}.end'] = iters
    if cfg.train_cfg.get('type') == 'IterBasedTrainLoop':
        out.update({
            'train_cfg.max_iters': iters,
            'train_cfg.val_begin': iters + 1,
            'default_hooks.checkpoint.interval': iters,
        })
        return out
    epochs = math.ceil(iters / iters_per_epoch)
    out.update(epoch_schedule(cfg, epochs))
    out['default_hooks.checkpoint.interval'] = epochs
    return out


def make_data(scope: str, root: str, num_train: int, num_val: int,
              scale: float) -> Dict[str, str]:
    """The generated set of a library (made once, reused)."""
    size = tuple(round(s * scale) for s in IMAGE_SIZES[scope])
    make = make_coco_shapes if scope == 'mmdet' else make_ade_shapes
    folder = osp.join(root, f'{scope}_{num_train}+{num_val}_{size[0]}x'
                      f'{size[1]}')
    done = osp.join(folder, '.complete')
    if not osp.isfile(done):
        data = make(folder, num_train, num_val, size=size)
        with open(done, 'w') as f:
            json.dump(data, f)
    with open(done) as f:
        return json.load(f)


@dataclass
class CheckResult:
    """What one config's train and test runs logged."""
    config: str
    tools: str
    batch_size: int
    iters: int = 0
    losses: List[float] = field(default_factory=list)
    s_per_iter: Optional[float] = None
    data_s_per_iter: Optional[float] = None
    peak_mib: Optional[float] = None
    metrics: Dict[str, float] = field(default_factory=dict)
    error: str = ''

    @property
    def finite(self) -> bool:
        return bool(self.losses) and all(map(math.isfinite, self.losses))

    @property
    def loss_ends(self) -> Tuple[float, float]:
        """The mean loss of the first and of the last quarter of logs."""
        q = max(len(self.losses) // 4, 1)
        return float(np.mean(self.losses[:q])), float(
            np.mean(self.losses[-q:]))

    @property
    def falls(self) -> bool:
        return self.finite and len(self.losses) > 1 and \
            self.loss_ends[1] < self.loss_ends[0]

    @property
    def passed(self) -> bool:
        return not self.error and self.falls and bool(self.metrics)

    @property
    def mib_per_image(self) -> Optional[float]:
        return None if self.peak_mib is None else \
            self.peak_mib / self.batch_size


def _latest(work_dir: str, pattern: str) -> str:
    paths = sorted(glob.glob(osp.join(work_dir, pattern)))
    if not paths:
        raise FileNotFoundError(f'no {pattern} in {work_dir}')
    return paths[-1]  # run folders are timestamps


def read_train_log(result: CheckResult, work_dir: str) -> None:
    """Losses, times and memory from the train run's ``scalars.json``."""
    with open(_latest(work_dir, '*/vis_data/scalars.json')) as f:
        rows = [json.loads(line) for line in f if '"loss"' in line]
    result.losses = [float(r['loss']) for r in rows]
    result.iters = int(rows[-1]['step']) if rows else 0
    # The first interval holds start-up (cuDNN autotuning, worker start).
    timed = rows[1:] or rows
    if timed:
        result.s_per_iter = float(np.median([r['time'] for r in timed]))
        result.data_s_per_iter = float(
            np.median([r['data_time'] for r in timed]))
    memory = [r['memory'] for r in rows if 'memory' in r]
    result.peak_mib = float(max(memory)) if memory else None


def read_test_log(result: CheckResult, work_dir: str, scope: str) -> None:
    """The metrics from the test run's json (``<timestamp>.json``)."""
    path = _latest(work_dir, '*/[0-9]*_[0-9]*.json')
    with open(path) as f:
        logged = json.loads(f.readlines()[-1])
    result.metrics = {k: float(logged[k]) for k in METRICS[scope]
                      if k in logged}


def _run(command: List[str], log: str) -> Optional[str]:
    """Run a tool, its output into ``log``; None, or the error's tail."""
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=os.pathsep.join(
        filter(None, [REPO, os.environ.get('PYTHONPATH')])))
    with open(log, 'w') as f:
        code = subprocess.run(command, cwd=REPO, env=env, stdout=f,
                              stderr=subprocess.STDOUT).returncode
    if code == 0:
        return None
    with open(log) as f:
        tail = f.read()[-3000:]
    return (f'{osp.basename(command[1])} exited with {code} (log: {log}):'
            f'\n{tail}')


def _tool(tools: str, scope: str, name: str) -> str:
    return osp.join(REPO, 'tools', name) if tools == 'mmc2f' else \
        library_file(scope, 'tools', name)


def train_command(tools: str, scope: str, gpus: int,
                  config: str) -> List[str]:
    """The train tool's command line, on torchrun when ``gpus``."""
    if gpus:
        return ['bash', _tool(tools, scope, 'dist_train.sh'), config,
                str(gpus)]
    return [sys.executable, _tool(tools, scope, 'train.py'), config]


def test_command(tools: str, scope: str, gpus: int, config: str,
                 checkpoint: str) -> List[str]:
    """The test tool's command line, on torchrun when ``gpus``."""
    if gpus:
        return ['bash', _tool(tools, scope, 'dist_test.sh'), config,
                checkpoint, str(gpus)]
    return [sys.executable, _tool(tools, scope, 'test.py'), config,
            checkpoint]


def check_config(name: str, tools: str, work_root: str, data_root: str,
                 iters: int, num_train: int, num_val: int, scale: float,
                 cfg_options: Optional[Overrides],
                 gpus: int = 0) -> CheckResult:
    """Train then test one config; what its logs say."""
    path = resolve_config(name)
    cfg = Config.fromfile(path)
    scope = config_scope(cfg, path)
    if scope not in METRICS:
        raise ValueError(f'{name}: {scope} configs are not supported here '
                         '(detection and segmentation are)')
    label = osp.splitext(osp.basename(path))[0]
    work_dir = osp.join(work_root,
                        f'{label}_{tools}' + (f'_{gpus}gpu' if gpus else ''))
    batch = cfg.train_dataloader.batch_size
    result = CheckResult(label, tools + (f' x{gpus}' if gpus else ''),
                         batch)

    data = make_data(scope, data_root, num_train, num_val, scale)
    overrides = coco_overrides(cfg, data, SHAPES, scale) \
        if scope == 'mmdet' else ade_overrides(cfg, data['data_root'], scale)
    overrides['model.backbone.init_cfg'] = None
    overrides.update(cfg_options or {})
    # Each process gets ceil(num_train / gpus) images, in batches whose
    # last may be partial.
    per_process = math.ceil(num_train / max(gpus, 1))
    train_overrides = dict(overrides, **schedule_overrides(
        cfg, iters, math.ceil(per_process / batch)))
    os.makedirs(work_dir, exist_ok=True)

    print(f'[train-check] {label}: training ({tools} tools)', flush=True)
    result.error = _run(
        train_command(tools, scope, gpus, path) +
        ['--work-dir', work_dir, '--cfg-options', *to_cli(train_overrides)],
        osp.join(work_dir, 'train.log')) or ''
    if result.error:
        return result
    read_train_log(result, work_dir)
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()

    print(f'[train-check] {label}: testing', flush=True)
    result.error = _run(
        test_command(tools, scope, gpus, path, checkpoint) +
        ['--work-dir', work_dir, '--cfg-options', *to_cli(overrides)],
        osp.join(work_dir, 'test.log')) or ''
    if not result.error:
        read_test_log(result, work_dir, scope)
    return result


def _fmt(value: Optional[float], spec: str) -> str:
    return '-' if value is None else format(value, spec)


def format_results(results: List[CheckResult]) -> str:
    """A markdown table, a row per config."""
    header = ['config', 'tools', 'iters', 'loss first -> last', 'falls',
              's/iter (data)', 'peak MiB (per image)', 'metrics']
    lines = ['| ' + ' | '.join(header) + ' |',
             '|' + '---|' * len(header)]
    for r in results:
        losses = ('{:.3f} -> {:.3f}'.format(*r.loss_ends) if r.losses
                  else '-')
        memory = '-' if r.peak_mib is None else \
            f'{r.peak_mib:.0f} ({r.mib_per_image:.0f})'
        metrics = ', '.join(f'{k} {v:.3f}' for k, v in r.metrics.items())
        lines.append('| ' + ' | '.join([
            r.config, r.tools, str(r.iters), losses,
            'yes' if r.falls else ('NOT FINITE' if r.losses and not r.finite
                                   else 'no'),
            f'{_fmt(r.s_per_iter, ".3f")} ({_fmt(r.data_s_per_iter, ".3f")})',
            memory, metrics or ('failed' if r.error else '-')
        ]) + ' |')
    return '\n'.join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog='e.g. python tools/analysis/train_check.py configs/mask_rcnn/'
        'mask-rcnn_conv2former-t_fpn_amp-ms-crop-3x_coco.py mmdet::convnext/'
        'mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py --iters 300')
    parser.add_argument('configs', nargs='+',
                        help='config files, or pkg::path of a library one')
    parser.add_argument('--tools', choices=['mmc2f', 'library'],
                        default='mmc2f',
                        help="mmc2f's train/test tools or the library's own")
    parser.add_argument('--gpus', type=int, default=0,
                        help='train and test on torchrun with this many '
                        'processes (tools/dist_train.sh, dist_test.sh)')
    parser.add_argument('--iters', type=int, default=300)
    parser.add_argument('--num-train', type=int, default=40,
                        help='generated training images')
    parser.add_argument('--num-val', type=int, default=10,
                        help='generated test images')
    parser.add_argument('--scale', type=float, default=1.0,
                        help='image sizes times this (a quick CPU run)')
    parser.add_argument('--work-dir', default='work_dirs/train_check')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='more overrides, for every config')
    args = parser.parse_args(argv)
    if args.iters < 1 or args.num_train < 1 or args.num_val < 1 or \
            args.scale <= 0 or args.gpus < 0:
        parser.error('--iters, --num-train, --num-val and --scale must be '
                     'positive, --gpus at least 0')
    if args.gpus and args.tools != 'mmc2f':
        parser.error("--gpus runs mmc2f's tools/dist_train.sh and "
                     'dist_test.sh: leave --tools as mmc2f')
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Exit status 0 when every config trained with finite, falling losses
    and tested; the table and ``<work-dir>/train_check.json`` either way."""
    args = parse_args(argv)
    work_dir = osp.abspath(args.work_dir)
    results = [
        check_config(name, args.tools, work_dir, osp.join(work_dir, 'data'),
                     args.iters, args.num_train, args.num_val, args.scale,
                     args.cfg_options, args.gpus) for name in args.configs
    ]
    with open(osp.join(work_dir, 'train_check.json'), 'w') as f:
        json.dump([dict(asdict(r), falls=r.falls, passed=r.passed)
                   for r in results], f, indent=1)
    print(format_results(results))
    for r in results:
        if r.error:
            print(f'\n{r.config}: {r.error}', file=sys.stderr)
        elif not r.passed:
            print(f'\n{r.config}: losses not finite and falling, or no '
                  f'test metrics', file=sys.stderr)
    return 0 if all(r.passed for r in results) else 1
