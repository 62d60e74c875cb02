# Copyright (c) mmc2f contributors. All rights reserved.
"""The project's performance goals (``docs/benchmarks.md``), as data, and
the ``--goals`` run that measures them all.

``GOAL_RUNS`` are the runs (the inference, training-step and memory runs,
and the GPU runs, done only where CUDA is available: the floor profile of
the depthwise conv and modulation, inference and training throughput);
``GOALS`` say which ratio of which run is held against which target;
``ONNX_GOAL`` is an ONNX export checked with onnxruntime. ``--repeats``/
``--warmup``, when given with ``--goals``, override each run's own;
``--goals RUN ...`` does only those runs (the other goals: 'not run').
"""
import dataclasses
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from .floor import FloorRow, measure_floor, report_floor
from .models import Entry
from .onnx_check import onnx_error
from .report import format_table, load_average, report
from .run import measure
from .spec import RunSpec

GOAL_RUNS: Dict[str, RunSpec] = {
    'detection': RunSpec(
        models=('released-t', 'conv2former-t', 'convnext-t'),
        shape=(1, 3, 800, 1216), repeats=5, warmup=2),
    'classification': RunSpec(
        models=('released-t', 'conv2former-t', 'convnext-t'),
        shape=(8, 3, 224, 224), repeats=7, warmup=2),
    'training': RunSpec(
        models=('released-t', 'conv2former-t', 'conv2former-t+cp'),
        shape=(2, 3, 800, 1216), train=True, repeats=3, warmup=1),
    # The GPU runs, quickest first.
    'gpu-floor': RunSpec(
        floor='tiny', shape=(128, 3, 224, 224), amp=True, channels_last=True,
        device='cuda', repeats=20, warmup=3),
    'gpu': RunSpec(
        models=('released-t', 'conv2former-t', 'conv2former-t+unfused',
                'convnext-t', 'swin-t', 'conv2former-t+compile',
                'convnext-t+compile'),
        shape=(128, 3, 224, 224), amp=True, channels_last=True,
        device='cuda', repeats=20, warmup=5),
    'gpu-training': RunSpec(
        models=('released-t', 'conv2former-t', 'convnext-t', 'swin-t',
                'conv2former-t+compile'),
        shape=(128, 3, 224, 224), amp=True, channels_last=True,
        device='cuda', train=True, repeats=10, warmup=3),
}

# What a run measured of a label: a timed model, or a row of a floor profile.
Result = Union[Entry, FloorRow]


@dataclass(frozen=True)
class Goal:
    """A ratio of two models of one run, at most ``target``.

    Attributes:
        what: The goal's row in the table.
        run: Its run, a key of ``GOAL_RUNS``.
        measured: ``'time'`` (median times), ``'memory'`` (peak memory) or
            ``'floor'`` (a row of a floor profile against its own floor).
        model: The label of the numerator (a floor profile's row).
        against: The label of the denominator (``'floor'``: the row's
            bandwidth floor).
        target: The largest ratio that reaches the goal.
    """
    what: str
    run: str
    measured: str
    model: str
    against: str
    target: float

    def ratio(self, results: Dict[str, Dict[str, Result]]) -> float:
        a = results[self.run][self.model]
        if self.measured == 'floor':
            return a.ratio
        b = results[self.run][self.against]
        if self.measured == 'memory':
            return a.peak_mib / b.peak_mib
        return float(np.median(a.times) / np.median(b.times))


GOALS: List[Goal] = [
    Goal('inference 1x3x800x1216, mmc2f / released', 'detection', 'time',
         'conv2former-t', 'released-t', 0.75),
    Goal('inference 8x3x224x224, mmc2f / released', 'classification', 'time',
         'conv2former-t', 'released-t', 0.75),
    Goal('inference 1x3x800x1216, mmc2f / ConvNeXt-T', 'detection', 'time',
         'conv2former-t', 'convnext-t', 1.0),
    Goal('train step 2x3x800x1216, mmc2f / released', 'training', 'time',
         'conv2former-t', 'released-t', 1.0),
    Goal('train step peak memory, with_cp / without', 'training', 'memory',
         'conv2former-t+cp', 'conv2former-t', 0.5),
    Goal('GPU throughput, batch 128 AMP, mmc2f / released', 'gpu', 'time',
         'conv2former-t', 'released-t', 1.0),
    Goal('GPU throughput, batch 128 AMP, mmc2f / ConvNeXt-T', 'gpu', 'time',
         'conv2former-t', 'convnext-t', 1.0),
    Goal('GPU train step, batch 128 AMP, mmc2f / released', 'gpu-training',
         'time', 'conv2former-t', 'released-t', 1.0),
    Goal('GPU train step, batch 128 AMP, mmc2f / ConvNeXt-T', 'gpu-training',
         'time', 'conv2former-t', 'convnext-t', 1.0),
    Goal('GPU 11x11 depthwise + modulation / bandwidth floor, batch 128 AMP',
         'gpu-floor', 'floor', 'total', 'floor', 1.5),
]


@dataclass(frozen=True)
class OnnxGoal:
    """The ONNX export of one model of a run, within ``tol`` of PyTorch."""
    what: str
    run: str
    model: str
    tol: float


ONNX_GOAL = OnnxGoal('ONNX opset 17, onnxruntime vs PyTorch, max rel err',
                     'classification', 'conv2former-t', 1e-4)


def _power_of_ten(x: float) -> str:
    """1e-4 as '1e-4' (':g' writes 0.0001, ':.0e' 1e-04)."""
    mantissa, exponent = f'{x:.0e}'.split('e')
    return f'{mantissa}e{int(exponent)}'


def run_goals(threads: Optional[int] = None,
              repeats: Optional[int] = None,
              warmup: Optional[int] = None,
              markdown: bool = False,
              only: Optional[Sequence[str]] = None) -> None:
    """Every run of GOAL_RUNS (or of ``only``, if any) that this machine can
    do, each reported as it ends, then the table of GOALS (and the ONNX
    check)."""
    results: Dict[str, Dict[str, Result]] = {}
    overrides = dict(threads=threads or None, repeats=repeats, warmup=warmup)
    for name, run in GOAL_RUNS.items():
        if only and name not in only:
            continue
        if run.device == 'cuda' and not torch.cuda.is_available():
            print(f'## {name}: skipped, no CUDA device\n')
            continue
        run = dataclasses.replace(
            run, markdown=markdown,
            **{k: v for k, v in overrides.items() if v is not None})
        run = run.resolved()
        device = torch.device(run.device)
        load = load_average()
        print(f'## {name}\n')
        if run.floor:
            profile = measure_floor(run, device)
            report_floor(profile, run, device, load)
            results[name] = {r.label: r for r in profile}
        else:
            entries = measure(run, device)
            report(entries, run, device, load)
            results[name] = {e.label: e for e in entries}
        print()

    header = ['goal', 'measured', 'target', 'reached']
    rows = []
    for goal in GOALS:
        if goal.run not in results:
            rows.append([goal.what, 'not run', f'<= {goal.target:g}', '-'])
            continue
        ratio = goal.ratio(results)
        rows.append([goal.what, f'{ratio:.3f}', f'<= {goal.target:g}',
                     'yes' if ratio <= goal.target else 'no'])
    target = f'< {_power_of_ten(ONNX_GOAL.tol)}'
    if ONNX_GOAL.run not in results:
        rows.append([ONNX_GOAL.what, 'not run', target, '-'])
    else:
        err = onnx_error(results[ONNX_GOAL.run][ONNX_GOAL.model])
        rows.append([ONNX_GOAL.what, f'{err:.1e}', target,
                     'yes' if err < ONNX_GOAL.tol else 'no'])
    print('## goals\n')
    print(format_table(header, rows, markdown))
