# Copyright (c) mmc2f contributors. All rights reserved.
"""Latency and throughput of backbones (and whole models of configs), with
ratios against a baseline measured in the same run.

    python tools/analysis/benchmark.py \\
        --models conv2former-t released-t convnext-t swin-t \\
        --shape 1 3 800 1216 --repeats 10 --warmup 3 [--baseline released-t] \\
        [--channels-last] [--amp] [--device cpu|cuda] [--threads N] \\
        [--train [--with-cp]] [--config CFG ...] [--markdown]
    python tools/analysis/benchmark.py --goals [--threads N] [--markdown]

Models (``--models``; letters n t s b l = nano tiny small base large):

* A ``+cp`` suffix (``conv2former-t+cp``) turns on gradient checkpointing
  for that model only, so one run compares a model with and without it.
* ``conv2former-X``: mmc2f's :class:`~mmc2f.models.Conv2Former`, all four
  stage outputs, no output norms (``out_norm=False``, as the released code).
* ``released-X``: the authors' released forward pass, as re-implemented in
  :mod:`mmc2f.testing.released_reference` (plain ``torch.nn.functional``,
  five-pass channels-first layer norm), backbone only (no classifier head).
* ``convnext-{t,s,b,l}`` / ``swin-{t,s,b,l}``: mmpretrain's ``ConvNeXt`` and
  ``SwinTransformer``, all four stage outputs with their output norms, as
  detection uses them (Swin with ``pad_small_map=True``: feature maps are
  padded to the 7x7 window, so any input size works).
* ``--config FILE`` (repeatable): the whole model of an mmc2f / mmdet / mmseg
  / mmpretrain config, no checkpoint, on a synthetic batch that went through
  its data preprocessor once (not timed): ``mode='predict'`` for inference,
  ``mode='loss'`` (random targets) with ``--train``. Labelled by file name.

``--goals`` runs the performance goals of the project (docs/benchmarks.md)
in one command: the inference, training-step and memory runs of GOAL_RUNS
(each as if given on the command line; ``--repeats``/``--warmup``, when
given, override theirs), the GPU throughput run when CUDA is available,
and an ONNX export checked with onnxruntime; then one table of the ratios
against their targets.

Same weights, same result: every ``conv2former-X`` and ``released-X`` loads
one random released-format state dict per arch (``make_released_state_dict``,
O(1) values so every path matters). Before anything is timed, each of them
runs the benchmark input in the timed configuration (memory format; fp32,
TF32 off) and must match the unmodified ``released_forward`` to a max
relative error below 1e-4 (the ``err`` column), or the tool exits: a fast
path cannot win by computing something else. With ``--amp`` the autocast
output is checked too, against a loose bound (``AMP_TOL``).

Timing: ``--warmup`` untimed iterations per model, then ``--repeats`` rounds
in which every model runs once (round-robin, the order rotating each round,
so a change of machine load affects all models alike); ``perf_counter``
around each call (CUDA synchronised). Inference runs under
``torch.inference_mode()`` in eval mode; ``--train`` times one forward and
backward (loss: the mean of each output; no optimiser step) in train mode.
``ratio`` = median time / the baseline's median time (above 1: slower).

Peak memory (``--train``), ``peak MiB``: what a train step needs above the
memory held before it (weights, input): activations, gradients, workspace.
CUDA: ``max_memory_allocated`` after ``reset_peak_memory_stats`` minus
``memory_allocated`` before one extra step. CPU: one fresh subprocess per
model builds it, runs one step, frees the gradients, returns freed heap to
the OS (``malloc_trim``), reads VmRSS, resets the kernel's RSS high-water mark
(``/proc/self/clear_refs``), runs a second step and reports VmHWM - VmRSS.
Without ``clear_refs`` the first step's VmHWM over the VmRSS before it is
reported instead, starred (it includes first-call allocations).
"""
import argparse
import gc
import json
import os
import os.path as osp
import platform
import re
import shlex
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager, nullcontext
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import DictAction

from mmc2f.testing.released_reference import released_stages

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))

SIZES = dict(n='nano', t='tiny', s='small', b='base', l='large')
FAMILIES = {
    'conv2former': 'ntsbl',
    'released': 'ntsbl',
    'convnext': 'tsbl',
    'swin': 'tsbl',
}
CHECK_TOL = 1e-4
# Autocast against the fp32 released forward: a bound that catches a wrong
# computation (errors of order 1), not a precision claim.
AMP_TOL = 5e-2

# --goals: the runs, each as command-line arguments with its own repeats...
GOAL_RUNS = {
    'detection': '--models released-t conv2former-t convnext-t '
    '--shape 1 3 800 1216 --repeats 5 --warmup 2',
    'classification': '--models released-t conv2former-t convnext-t '
    '--shape 8 3 224 224 --repeats 7 --warmup 2',
    'training': '--models released-t conv2former-t conv2former-t+cp '
    '--shape 2 3 800 1216 --train --repeats 3 --warmup 1',
    'gpu': '--models released-t conv2former-t convnext-t swin-t '
    '--shape 128 3 224 224 --amp --channels-last --device cuda '
    '--repeats 20 --warmup 5',
}
# ... and the goals: (what, run, 'time' or 'memory', model, against, target)
GOALS = [
    ('inference 1x3x800x1216, mmc2f / released', 'detection', 'time',
     'conv2former-t', 'released-t', 0.75),
    ('inference 8x3x224x224, mmc2f / released', 'classification', 'time',
     'conv2former-t', 'released-t', 0.75),
    ('inference 1x3x800x1216, mmc2f / ConvNeXt-T', 'detection', 'time',
     'conv2former-t', 'convnext-t', 1.0),
    ('train step 2x3x800x1216, mmc2f / released', 'training', 'time',
     'conv2former-t', 'released-t', 1.0),
    ('train step peak memory, with_cp / without', 'training', 'memory',
     'conv2former-t+cp', 'conv2former-t', 0.5),
    ('GPU throughput, batch 128 AMP, mmc2f / released', 'gpu', 'time',
     'conv2former-t', 'released-t', 1.0),
    ('GPU throughput, batch 128 AMP, mmc2f / ConvNeXt-T', 'gpu', 'time',
     'conv2former-t', 'convnext-t', 1.0),
]


def parse_model_name(name: str) -> Tuple[str, str, bool]:
    """(family, arch, whether ``+cp`` asks for gradient checkpointing)."""
    match = re.fullmatch(r'([a-z0-9]+)-([a-z])(\+cp)?', name)
    if not match or match.group(1) not in FAMILIES or \
            match.group(2) not in FAMILIES[match.group(1)]:
        valid = ', '.join(f'{f}-{{{",".join(s)}}}'
                          for f, s in FAMILIES.items())
        raise ValueError(f'Unknown model {name!r}; valid: {valid}, each '
                         'but released-* optionally with +cp')
    if match.group(3) and match.group(1) == 'released':
        raise ValueError(f'{name}: the released code has no gradient '
                         'checkpointing')
    return match.group(1), SIZES[match.group(2)], bool(match.group(3))


# ---------------------------------------------------------------- models


class ReleasedBackbone(nn.Module):
    """A released-format state dict as a module (``.to()``, parameters for
    ``--train``), running the released stem and stages."""

    def __init__(self, sd: Dict[str, torch.Tensor], depths: Sequence[int]):
        super().__init__()
        self.depths = list(depths)
        self.names: List[Tuple[str, str]] = []
        for key, value in sd.items():
            if not key.startswith(('downsample_layers', 'stages')):
                continue
            name = key.replace('.', '__')
            if key.rsplit('.', 1)[-1] in ('running_mean', 'running_var',
                                          'num_batches_tracked'):
                self.register_buffer(name, value.clone())
            else:
                self.register_parameter(name, nn.Parameter(value.clone()))
            self.names.append((key, name))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        sd = {key: getattr(self, name) for key, name in self.names}
        return tuple(released_stages(sd, x, self.depths))


class Entry:
    """One benchmarked model: the module, how to call it and its input."""

    def __init__(self, label: str, kind: str, module: nn.Module,
                 inputs: tuple, batch: int, input_desc: str,
                 forward: Optional[Callable] = None,
                 loss: Optional[Callable] = None,
                 arch: Optional[str] = None, with_cp: bool = False):
        self.label, self.kind, self.module = label, kind, module
        self.inputs, self.batch, self.input_desc = inputs, batch, input_desc
        self.forward = forward or (lambda *xs: module(*xs))
        self.loss = loss or _mean_loss
        self.arch, self.with_cp = arch, with_cp
        self.times: List[float] = []
        self.err: Optional[float] = None
        self.amp_err: Optional[float] = None
        self.peak_mib: Optional[float] = None
        self.peak_note = ''


def _mean_loss(outputs) -> torch.Tensor:
    return sum(out.float().mean() for out in outputs)


_STATE_DICTS: Dict[str, dict] = {}


def released_state_dict(arch: str) -> dict:
    """One random released-format state dict per arch, shared by the
    conv2former and released models of that arch."""
    if arch not in _STATE_DICTS:
        from mmc2f.models.backbones.conv2former import ARCH_SETTINGS
        from mmc2f.testing.released_reference import make_released_state_dict
        s = ARCH_SETTINGS[arch]
        _STATE_DICTS[arch] = make_released_state_dict(
            s['channels'], s['depths'], s['kernel_size'], seed=0)
    return _STATE_DICTS[arch]


def build_backbone(name: str, with_cp: bool) -> Tuple[nn.Module, str, bool]:
    """(module, arch, whether it checkpoints) for a --models name."""
    family, arch, cp_suffix = parse_model_name(name)
    with_cp = with_cp or cp_suffix
    if family in ('conv2former', 'released'):
        from mmc2f.models.backbones.conv2former import ARCH_SETTINGS
        sd = released_state_dict(arch)
        if family == 'released':
            return ReleasedBackbone(sd, ARCH_SETTINGS[arch]['depths']), \
                arch, False
        from mmc2f.models import Conv2Former
        model = Conv2Former(arch, out_indices=(0, 1, 2, 3), with_cp=with_cp)
        model.load_state_dict({
            k: v
            for k, v in sd.items()
            if k.startswith(('downsample_layers', 'stages'))
        })
        return model, arch, with_cp
    torch.manual_seed(0)
    if family == 'convnext':
        from mmpretrain.models import ConvNeXt
        return ConvNeXt(arch=arch, out_indices=(0, 1, 2, 3),
                        gap_before_final_norm=False, drop_path_rate=0.,
                        with_cp=with_cp), arch, with_cp
    from mmpretrain.models import SwinTransformer
    return SwinTransformer(arch=arch, out_indices=(0, 1, 2, 3),
                           drop_path_rate=0., pad_small_map=True,
                           with_cp=with_cp), arch, with_cp


def _shape_str(shape: Sequence[int]) -> str:
    return 'x'.join(map(str, shape))


def build_config_entry(path: str, args, device: torch.device) -> Entry:
    """The whole model of a config with a preprocessed synthetic batch."""
    sys.path.insert(0, HERE)
    try:
        from get_flops import build_model, load_config
    finally:
        sys.path.pop(0)
    cfg = load_config(path, args.cfg_options)
    if args.with_cp:
        cfg.model.backbone.with_cp = True
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    scope = cfg.default_scope
    n, c, h, w = args.shape
    data = _config_batch(model, scope, n, c, h, w)
    data = model.data_preprocessor(data, training=args.train)
    inputs, samples = data['inputs'], data['data_samples']
    mode = 'loss' if args.train else 'predict'

    def forward(x, data_samples):
        return model(x, data_samples, mode=mode)

    def loss(losses):
        return model.parse_losses(losses)[0]

    label = osp.splitext(osp.basename(path))[0]
    return Entry(label, 'config', model, (inputs, samples), n,
                 _shape_str(inputs.shape), forward, loss,
                 with_cp=args.with_cp)


def _config_batch(model, scope: str, n: int, c: int, h: int,
                  w: int) -> dict:
    """A batch as the dataloader gives it, with random targets."""
    g = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (c, h, w), dtype=torch.uint8,
                            generator=g) for _ in range(n)]
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w))
    if scope == 'mmdet':
        from mmdet.testing import demo_mm_inputs
        data = demo_mm_inputs(n, [(c, h, w)] * n, num_items=[3] * n,
                              num_classes=2, with_mask=True)
        for sample in data['data_samples']:  # class 0: valid for any head
            sample.gt_instances.labels.zero_()
        data['inputs'] = images
        return data
    samples = []
    if scope == 'mmseg':
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        classes = model.decode_head.num_classes
        for _ in range(n):
            sample = SegDataSample(metainfo=meta)
            sample.gt_sem_seg = PixelData(data=torch.randint(
                0, classes, (1, h, w), generator=g))
            samples.append(sample)
    else:
        from mmpretrain.structures import DataSample
        classes = model.head.num_classes
        for _ in range(n):
            # num_classes: for the preprocessor's one-hot labels (mixup).
            samples.append(DataSample(
                metainfo=dict(meta, num_classes=classes)).set_gt_label(
                int(torch.randint(0, classes, (1, ), generator=g))))
    return dict(inputs=images, data_samples=samples)


def build_entries(args, device: torch.device,
                  only: Optional[int] = None) -> List[Entry]:
    """The entries of --models then --config (only the one at `only`)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*args.shape, generator=g)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x = x.to(device)
    entries = []
    names = [('model', n) for n in args.models] + \
        [('config', c) for c in args.config or []]
    for i, (what, name) in enumerate(names):
        if only is not None and i != only:
            continue
        if what == 'config':
            entries.append(build_config_entry(name, args, device))
            continue
        module, arch, cp = build_backbone(name, args.with_cp)
        family = parse_model_name(name)[0]
        entries.append(Entry(name, family, module.to(device), (x, ),
                             args.shape[0], _shape_str(args.shape),
                             arch=arch, with_cp=cp))
    for entry in entries:
        if args.channels_last:
            entry.module.to(memory_format=torch.channels_last)
            if entry.kind == 'config':
                entry.inputs = (entry.inputs[0].contiguous(
                    memory_format=torch.channels_last), ) + entry.inputs[1:]
    return entries


# --------------------------------------------------------------- running


def amp_context(args, device: torch.device):
    if not args.amp:
        return nullcontext()
    dtype = dict(bf16=torch.bfloat16, fp16=torch.float16)[args.amp_dtype]
    return torch.autocast(device.type, dtype=dtype)


@contextmanager
def strict_fp32():
    """TF32 off (CUDA convs and matmuls), for the numerical check."""
    cudnn, matmul = torch.backends.cudnn.allow_tf32, \
        torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = cudnn
        torch.backends.cuda.matmul.allow_tf32 = matmul


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def run_once(entry: Entry, args, device: torch.device) -> float:
    """Seconds of one inference call, or of one forward + backward."""
    if args.train:
        entry.module.zero_grad(set_to_none=True)
        _sync(device)
        start = time.perf_counter()
        with amp_context(args, device):
            loss = entry.loss(entry.forward(*entry.inputs))
        loss.backward()
        _sync(device)
        return time.perf_counter() - start
    _sync(device)
    start = time.perf_counter()
    with torch.inference_mode(), amp_context(args, device):
        entry.forward(*entry.inputs)
    _sync(device)
    return time.perf_counter() - start


def check_outputs(entries: List[Entry], args, device: torch.device) -> None:
    """conv2former-X and released-X against ``released_forward`` (fp32)."""
    from mmc2f.models.backbones.conv2former import ARCH_SETTINGS
    from mmc2f.testing.released_reference import (max_rel_error,
                                                  released_forward)
    refs: Dict[str, List[torch.Tensor]] = {}
    failures = []
    for entry in entries:
        if entry.kind not in ('conv2former', 'released'):
            continue
        entry.module.eval()
        with torch.inference_mode(), strict_fp32():
            if entry.arch not in refs:
                sd = {k: v.to(device) for k, v in
                      released_state_dict(entry.arch).items()}
                x = entry.inputs[0].contiguous()
                refs[entry.arch] = released_forward(
                    sd, x, ARCH_SETTINGS[entry.arch]['depths'])[0]
                del sd
            ref = refs[entry.arch]
            outs = entry.forward(*entry.inputs)
            if len(outs) != len(ref):
                failures.append(f'{entry.label}: {len(outs)} outputs, '
                                f'expected {len(ref)}')
                continue
            entry.err = max(max_rel_error(o.float(), r)
                            for o, r in zip(outs, ref))
            if args.amp:
                with amp_context(args, device):
                    outs = entry.forward(*entry.inputs)
                entry.amp_err = max(max_rel_error(o.float(), r)
                                    for o, r in zip(outs, ref))
        if not entry.err < CHECK_TOL:
            failures.append(f'{entry.label}: max rel err {entry.err:.2e} '
                            f'>= {CHECK_TOL:g} against released_forward')
        if entry.amp_err is not None and not entry.amp_err < AMP_TOL:
            failures.append(f'{entry.label}: autocast max rel err '
                            f'{entry.amp_err:.2e} >= {AMP_TOL:g}')
        print(f'checked {entry.label}: max rel err {entry.err:.2e}' +
              ('' if entry.amp_err is None else
               f', autocast {entry.amp_err:.2e}'), file=sys.stderr)
    del refs
    if failures:
        raise SystemExit('Output check failed, nothing timed:\n  ' +
                         '\n  '.join(failures))


def time_entries(entries: List[Entry], args, device: torch.device) -> None:
    for entry in entries:
        entry.module.train(args.train)
        for _ in range(args.warmup):
            run_once(entry, args, device)
        print(f'warmed up {entry.label}', file=sys.stderr)
    for r in range(args.repeats):
        k = r % len(entries)
        for entry in entries[k:] + entries[:k]:
            entry.times.append(run_once(entry, args, device))
    for entry in entries:
        entry.module.zero_grad(set_to_none=True)


# ---------------------------------------------------------------- memory


def _proc_status_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'no {field} in /proc/self/status')


def _reset_hwm() -> bool:
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def _malloc_trim() -> None:
    try:
        import ctypes
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


def memory_probe(entry: Entry, args, device: torch.device) -> dict:
    """In a fresh process: peak RSS of a train step above the RSS before."""
    entry.module.train()
    gc.collect()
    _malloc_trim()
    rss0 = _proc_status_kib('VmRSS')
    if _reset_hwm():
        run_once(entry, args, device)  # first-call allocations
        entry.module.zero_grad(set_to_none=True)
        gc.collect()
        _malloc_trim()
        rss0 = _proc_status_kib('VmRSS')
        assert _reset_hwm()
        exact = True
    else:
        exact = False
    run_once(entry, args, device)
    peak = _proc_status_kib('VmHWM') - rss0
    return dict(peak_mib=peak / 1024, exact=exact)


def measure_memory(entries: List[Entry], args, device: torch.device,
                   argv: Sequence[str]) -> None:
    for i, entry in enumerate(entries):
        if device.type == 'cuda':
            entry.module.train()
            entry.module.zero_grad(set_to_none=True)
            gc.collect()
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            run_once(entry, args, device)
            entry.peak_mib = (torch.cuda.max_memory_allocated(device) -
                              before) / 2**20
            entry.module.zero_grad(set_to_none=True)
            continue
        cmd = [sys.executable, osp.abspath(__file__), *argv,
               '--memory-probe', str(i)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        lines = [line for line in result.stdout.splitlines()
                 if line.startswith('MEMORY_PROBE ')]
        if result.returncode != 0 or not lines:
            raise SystemExit(f'memory probe of {entry.label} failed:\n'
                             f'{result.stderr[-3000:]}')
        probe = json.loads(lines[-1][len('MEMORY_PROBE '):])
        entry.peak_mib = probe['peak_mib']
        entry.peak_note = '' if probe['exact'] else '*'


# ---------------------------------------------------------------- report


def device_name(device: torch.device) -> str:
    if device.type == 'cuda':
        return f'cuda ({torch.cuda.get_device_name(device)})'
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return f'cpu ({cpu})'


def summarise(entries: List[Entry], baseline: str,
              args) -> Tuple[List[str], List[List[str]]]:
    medians = {e.label: float(np.median(e.times)) for e in entries}
    header = ['model', 'input', 'median_ms', 'IQR_ms', 'images/s',
              'ratio', 'err']
    if args.train:
        header.insert(5, 'peak_MiB')
    rows = []
    for e in entries:
        t = np.asarray(e.times) * 1e3
        q25, q75 = np.percentile(t, [25, 75])
        err = '-' if e.err is None else f'{e.err:.1e}'
        if e.amp_err is not None:
            err += f'/{e.amp_err:.1e}'
        label = e.label + ('+cp' if e.with_cp and
                           not e.label.endswith('+cp') else '')
        row = [label, e.input_desc, f'{np.median(t):.1f}',
               f'{q75 - q25:.1f}', f'{e.batch / medians[e.label]:.2f}',
               f'{medians[e.label] / medians[baseline]:.2f}', err]
        if args.train:
            row.insert(5, f'{e.peak_mib:.0f}{e.peak_note}')
        rows.append(row)
    return header, rows


def format_table(header: List[str], rows: List[List[str]],
                 markdown: bool) -> str:
    if markdown:
        lines = ['| ' + ' | '.join(header) + ' |',
                 '|' + '|'.join('---' if i < 2 else '---:'
                                for i in range(len(header))) + '|']
        lines += ['| ' + ' | '.join(r) + ' |' for r in rows]
        return '\n'.join(lines)
    widths = [max(len(r[i]) for r in [header] + rows)
              for i in range(len(header))]
    fmt = lambda r: '  '.join(  # noqa: E731
        c.ljust(w) if i < 2 else c.rjust(w)
        for i, (c, w) in enumerate(zip(r, widths)))
    return '\n'.join([fmt(header), '-' * len(fmt(header))] +
                     [fmt(r) for r in rows])


def load_average() -> str:
    return ', '.join(f'{v:.2f}' for v in os.getloadavg())


def describe_run(args, device: torch.device, load: str) -> str:
    mode = 'train step (forward + backward)' if args.train else 'inference'
    precision = f'autocast {args.amp_dtype}' if args.amp else 'fp32'
    fmt = 'channels_last' if args.channels_last else 'NCHW'
    command = 'python ' + shlex.join(
        [osp.relpath(osp.abspath(sys.argv[0]), os.getcwd())] + sys.argv[1:])
    return (f'torch {torch.__version__}, device {device_name(device)}, '
            f'threads {torch.get_num_threads()}, {mode}, {precision}, {fmt}, '
            f'load average {load} at start; command: `{command}`')


def notes(entries: List[Entry], args, baseline: str) -> str:
    lines = [f'ratio = median time / median time of {baseline} (same run); '
             f'{args.repeats} rounds after {args.warmup} warm-up calls each.',
             f'err = max relative error of the stage outputs against '
             f'released_forward (fp32, same weights; must be < '
             f'{CHECK_TOL:g})' +
             (f' / under autocast (must be < {AMP_TOL:g}).' if args.amp
              else '.')]
    if args.train:
        lines.append('peak_MiB = peak memory of one train step above what was'
                     ' held before it (' +
                     ('CUDA max_memory_allocated' if args.device == 'cuda'
                      else 'CPU VmHWM - VmRSS in a fresh process per model') +
                     '); * = without resettable VmHWM, first step.')
        if args.with_cp:
            missing = [e.label for e in entries if not e.with_cp]
            if missing:
                lines.append('without gradient checkpointing (unsupported): '
                             + ', '.join(missing))
    return '\n'.join(lines)


# ------------------------------------------------------------------ main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Latency / throughput of backbones and models, with '
        'ratios against a baseline measured in the same run')
    parser.add_argument('--models', nargs='*', default=[],
                        help='e.g. conv2former-t released-t convnext-t swin-t')
    parser.add_argument('--config', action='append',
                        help='time the whole model of this config '
                        '(repeatable)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='overrides for --config, key=value')
    parser.add_argument('--shape', type=int, nargs='+',
                        default=[1, 3, 224, 224],
                        help='input N C H W (or H W: N=1, C=3)')
    parser.add_argument('--repeats', type=int, help='default: 10')
    parser.add_argument('--warmup', type=int, help='default: 3')
    parser.add_argument('--baseline',
                        help='model of the ratios (default: the first)')
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--amp', action='store_true', help='autocast')
    parser.add_argument('--amp-dtype', choices=['bf16', 'fp16'],
                        help='default: bf16 on CPU, fp16 on CUDA')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument('--threads', type=int,
                        help='torch.set_num_threads (default: torch\'s)')
    parser.add_argument('--train', action='store_true',
                        help='time forward + backward, measure peak memory')
    parser.add_argument('--with-cp', action='store_true',
                        help='gradient checkpointing (mmc2f, mmpretrain and '
                        'config backbones; not released-*)')
    parser.add_argument('--markdown', action='store_true')
    parser.add_argument('--goals', action='store_true',
                        help='the project\'s performance goals in one run '
                        '(ignores the model and input options)')
    parser.add_argument('--memory-probe', type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.goals:
        return args
    args.repeats = 10 if args.repeats is None else args.repeats
    args.warmup = 3 if args.warmup is None else args.warmup
    if len(args.shape) == 2:
        args.shape = [1, 3] + args.shape
    if len(args.shape) != 4:
        parser.error('--shape takes N C H W (or H W)')
    if not args.models and not args.config:
        parser.error('nothing to time: give --models and/or --config')
    for name in args.models:
        try:
            parse_model_name(name)
        except ValueError as e:
            parser.error(str(e))
    if args.repeats < 1 or args.warmup < 0:
        parser.error('--repeats must be >= 1 and --warmup >= 0')
    if args.amp_dtype is None:
        args.amp_dtype = 'fp16' if args.device == 'cuda' else 'bf16'
    labels = list(args.models) + [osp.splitext(osp.basename(c))[0]
                                  for c in args.config or []]
    if len(set(labels)) != len(labels):
        parser.error(f'a model is named twice: {labels}')
    args.baseline = args.baseline or labels[0]
    if args.baseline not in labels:
        parser.error(f'--baseline {args.baseline} is not among {labels}')
    return args


def measure(args, argv: Sequence[str],
            device: torch.device) -> List[Entry]:
    """Build, check and time the entries of one run (and their memory)."""
    entries = build_entries(args, device)
    check_outputs(entries, args, device)
    time_entries(entries, args, device)
    if args.train:
        measure_memory(entries, args, device, argv)
    return entries


def report(entries: List[Entry], args, device: torch.device,
           load: str) -> None:
    header, rows = summarise(entries, args.baseline, args)
    print(describe_run(args, device, load) + ('\n' if args.markdown else ''))
    print(format_table(header, rows, args.markdown))
    print(('\n' if args.markdown else '') +
          notes(entries, args, args.baseline))


def onnx_error(entry: Entry) -> float:
    """Max relative error of onnxruntime's outputs (opset 17) against
    PyTorch's, at another input size than the exported one."""
    import tempfile

    import onnxruntime as ort

    from mmc2f.testing.released_reference import max_rel_error
    module = entry.module.eval()
    g = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # The input checks' shape comparisons, constant for a trace.
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        path = osp.join(tmp, 'backbone.onnx')
        torch.onnx.export(
            module, (torch.randn(1, 3, 224, 224, generator=g), ), path,
            opset_version=17, input_names=['input'],
            dynamic_axes={'input': {0: 'batch', 2: 'h', 3: 'w'}},
            dynamo=False)
        session = ort.InferenceSession(path,
                                       providers=['CPUExecutionProvider'])
        x = torch.randn(2, 3, 256, 192, generator=g)
        outs = session.run(None, {'input': x.numpy()})
    with torch.inference_mode():
        refs = module(x)
    return max(max_rel_error(torch.from_numpy(np.asarray(o)), r)
               for o, r in zip(outs, refs))


def run_goals(args) -> None:
    """Every run of GOAL_RUNS that this machine can do, then the table of
    GOALS (and the ONNX check)."""
    results: Dict[str, Dict[str, Entry]] = {}
    for name, run in GOAL_RUNS.items():
        run_argv = shlex.split(run)
        if args.threads:
            run_argv += ['--threads', str(args.threads)]
        for flag in ('repeats', 'warmup'):
            if getattr(args, flag) is not None:
                run_argv += [f'--{flag}', str(getattr(args, flag))]
        if args.markdown:
            run_argv.append('--markdown')
        run_args = parse_args(run_argv)
        if run_args.device == 'cuda' and not torch.cuda.is_available():
            print(f'## {name}: skipped, no CUDA device\n')
            continue
        device = torch.device(run_args.device)
        load = load_average()
        print(f'## {name}\n')
        entries = measure(run_args, run_argv, device)
        report(entries, run_args, device, load)
        print()
        results[name] = {e.label: e for e in entries}

    header = ['goal', 'measured', 'target', 'reached']
    rows = []
    for what, run, measured, model, against, target in GOALS:
        if run not in results:
            rows.append([what, 'not run', f'<= {target:g}', '-'])
            continue
        a, b = results[run][model], results[run][against]
        ratio = (a.peak_mib / b.peak_mib if measured == 'memory' else
                 float(np.median(a.times) / np.median(b.times)))
        rows.append([what, f'{ratio:.3f}', f'<= {target:g}',
                     'yes' if ratio <= target else 'no'])
    err = onnx_error(results['classification']['conv2former-t'])
    rows.append(['ONNX opset 17, onnxruntime vs PyTorch, max rel err',
                 f'{err:.1e}', '< 1e-4', 'yes' if err < 1e-4 else 'no'])
    print('## goals\n')
    print(format_table(header, rows, args.markdown))


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmengine').setLevel('ERROR')
    if args.goals:
        run_goals(args)
        return
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no CUDA device available')
    device = torch.device(args.device)
    load = load_average()

    if args.memory_probe is not None:
        entry, = build_entries(args, device, only=args.memory_probe)
        probe = memory_probe(entry, args, device)
        print('MEMORY_PROBE ' + json.dumps(probe))
        return
    report(measure(args, argv, device), args, device, load)


if __name__ == '__main__':
    main()
