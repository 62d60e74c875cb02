# Copyright (c) mmc2f contributors. All rights reserved.
"""The tables: one row per entry, ``ratio`` = median time / the baseline's
median time (above 1: slower), then notes saying how each column was
measured, under a line naming the machine, the load and the command."""
import os
import os.path as osp
import platform
import shlex
import sys
from typing import List, Tuple

import numpy as np
import torch

from .models import Entry
from .numerics import AMP_TOL, CHECK_TOL
from .spec import RunSpec, parse_model_name


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


def summarise(entries: List[Entry],
              run: RunSpec) -> Tuple[List[str], List[List[str]]]:
    """(header, rows) of the run's table."""
    medians = {e.label: float(np.median(e.times)) for e in entries}
    header = ['model', 'input', 'median_ms', 'IQR_ms', 'images/s',
              'ratio', 'err']
    if run.train:
        header.insert(5, 'peak_MiB')
    rows = []
    for e in entries:
        t = np.asarray(e.times) * 1e3
        q25, q75 = np.percentile(t, [25, 75])
        err = '-' if e.err is None else f'{e.err:.1e}'
        if e.amp_err is not None:
            err += f'/{e.amp_err:.1e}'
        label = e.label + ('+cp' if e.with_cp and
                           'cp' not in e.label.split('+')[1:] else '')
        row = [label, e.input_desc, f'{np.median(t):.1f}',
               f'{q75 - q25:.1f}', f'{e.batch / medians[e.label]:.2f}',
               f'{medians[e.label] / medians[run.baseline]:.2f}', err]
        if run.train:
            row.insert(5, f'{e.peak_mib:.0f}{e.peak_note}')
        rows.append(row)
    return header, rows


def format_table(header: List[str], rows: List[List[str]],
                 markdown: bool) -> str:
    """Markdown, or columns aligned with spaces (the first two left)."""
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


def describe_run(run: RunSpec, device: torch.device, load: str) -> str:
    """The line above the table: versions, machine, settings, command."""
    mode = 'train step (forward + backward)' if run.train else 'inference'
    precision = f'autocast {run.amp_dtype}' if run.amp else 'fp32'
    fmt = 'channels_last' if run.channels_last else 'NCHW'
    if device.type == 'cuda':
        fmt += f', cudnn.benchmark {run.cudnn_benchmark}'
    command = 'python ' + shlex.join(
        [osp.relpath(osp.abspath(sys.argv[0]), os.getcwd())] + sys.argv[1:])
    return (f'torch {torch.__version__}, device {device_name(device)}, '
            f'threads {torch.get_num_threads()}, {mode}, {precision}, {fmt}, '
            f'load average {load} at start; command: `{command}`')


def print_table(run: RunSpec, device: torch.device, load: str,
                header: List[str], rows: List[List[str]], note: str) -> None:
    """A run's description, its table and the note under the table."""
    gap = '\n' if run.markdown else ''
    print(describe_run(run, device, load) + gap)
    print(format_table(header, rows, run.markdown))
    print(gap + note)


def notes(entries: List[Entry], run: RunSpec) -> str:
    """The lines below the table: how each column was measured."""
    lines = [f'ratio = median time / median time of {run.baseline} (same '
             f'run); {run.repeats} rounds after {run.warmup} warm-up calls '
             'each.',
             f'err = max relative error of the stage outputs against '
             f'released_forward (fp32, same weights; must be < '
             f'{CHECK_TOL:g})' +
             (f' / under autocast (must be < {AMP_TOL:g}).' if run.amp
              else '.')]
    if any(parse_model_name(m).compile for m in run.models):
        lines.append('+compile: torch.compile(module, dynamic=False), '
                     'default mode, '
                     'compiled in its first calls: the output check (if '
                     'any) and the warm-up, untimed.')
    if run.train:
        lines.append('peak_MiB = peak memory of one train step above what was'
                     ' held before it (' +
                     ('CUDA max_memory_allocated' if run.device == 'cuda'
                      else 'CPU VmHWM - VmRSS in a fresh process per model') +
                     '); * = without resettable VmHWM, first step.')
        if run.with_cp:
            missing = [e.label for e in entries if not e.with_cp]
            if missing:
                lines.append('without gradient checkpointing (unsupported): '
                             + ', '.join(missing))
    return '\n'.join(lines)


def report(entries: List[Entry], run: RunSpec, device: torch.device,
           load: str) -> None:
    """Prints the run's line, table and notes."""
    header, rows = summarise(entries, run)
    print(describe_run(run, device, load) + ('\n' if run.markdown else ''))
    print(format_table(header, rows, run.markdown))
    print(('\n' if run.markdown else '') + notes(entries, run))
