# Copyright (c) mmc2f contributors. All rights reserved.
"""The project's performance goals (``docs/benchmarks.md``), as data, and
the ``--goals`` run that measures them all.

``GOAL_RUNS`` are the runs (the inference, training-step and memory runs,
and the GPU throughput run, done only where CUDA is available); ``GOALS``
say which ratio of which run is held against which target; ``ONNX_GOAL``
is an ONNX export checked with onnxruntime. ``--repeats``/``--warmup``,
when given with ``--goals``, override each run's own.
"""
import dataclasses
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch

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
    'gpu': RunSpec(
        models=('released-t', 'conv2former-t', 'convnext-t', 'swin-t'),
        shape=(128, 3, 224, 224), amp=True, channels_last=True,
        device='cuda', repeats=20, warmup=5),
}


@dataclass(frozen=True)
class Goal:
    """A ratio of two models of one run, at most ``target``.

    Attributes:
        what: The goal's row in the table.
        run: Its run, a key of ``GOAL_RUNS``.
        measured: ``'time'`` (median times) or ``'memory'`` (peak memory).
        model: The label of the numerator.
        against: The label of the denominator.
        target: The largest ratio that reaches the goal.
    """
    what: str
    run: str
    measured: str
    model: str
    against: str
    target: float

    def ratio(self, results: Dict[str, Dict[str, Entry]]) -> float:
        a, b = results[self.run][self.model], results[self.run][self.against]
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
              markdown: bool = False) -> None:
    """Every run of GOAL_RUNS that this machine can do, each reported as it
    ends, then the table of GOALS (and the ONNX check)."""
    results: Dict[str, Dict[str, Entry]] = {}
    overrides = dict(threads=threads or None, repeats=repeats, warmup=warmup)
    for name, run in GOAL_RUNS.items():
        run = dataclasses.replace(
            run, markdown=markdown,
            **{k: v for k, v in overrides.items() if v is not None})
        run = run.resolved()
        if run.device == 'cuda' and not torch.cuda.is_available():
            print(f'## {name}: skipped, no CUDA device\n')
            continue
        device = torch.device(run.device)
        load = load_average()
        print(f'## {name}\n')
        entries = measure(run, device)
        report(entries, run, device, load)
        print()
        results[name] = {e.label: e for e in entries}

    header = ['goal', 'measured', 'target', 'reached']
    rows = []
    for goal in GOALS:
        if goal.run not in results:
            rows.append([goal.what, 'not run', f'<= {goal.target:g}', '-'])
            continue
        ratio = goal.ratio(results)
        rows.append([goal.what, f'{ratio:.3f}', f'<= {goal.target:g}',
                     'yes' if ratio <= goal.target else 'no'])
    err = onnx_error(results[ONNX_GOAL.run][ONNX_GOAL.model])
    tol = ONNX_GOAL.tol
    rows.append([ONNX_GOAL.what, f'{err:.1e}', f'< {_power_of_ten(tol)}',
                 'yes' if err < tol else 'no'])
    print('## goals\n')
    print(format_table(header, rows, markdown))
