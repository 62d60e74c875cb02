# Copyright (c) mmc2f contributors. All rights reserved.
"""Peak memory of a train step (``peak_MiB``): what it needs above the
memory held before it (weights, input): activations, gradients, workspace.

CUDA: ``max_memory_allocated`` after ``reset_peak_memory_stats`` minus
``memory_allocated`` before one extra step. CPU: one fresh process per model
(this module run with ``python -m``, the run and the entry's index pickled on
its stdin) builds it, runs one step, frees the gradients, returns freed heap
to the OS (``malloc_trim``), reads VmRSS, resets the kernel's RSS high-water
mark (``/proc/self/clear_refs``), runs a second step and reports VmHWM -
VmRSS. Without ``clear_refs`` the first step's VmHWM over the VmRSS before it
is reported instead, starred (it includes first-call allocations).
"""
import gc
import json
import pickle
import subprocess
import sys
from typing import List

import torch

from .models import Entry, build_entries
from .spec import RunSpec
from .timing import run_once

_PREFIX = 'MEMORY_PROBE '


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


def memory_probe(entry: Entry, run: RunSpec, device: torch.device) -> dict:
    """In a fresh process: peak RSS of a train step above the RSS before."""
    entry.module.train()
    gc.collect()
    _malloc_trim()
    rss0 = _proc_status_kib('VmRSS')
    if _reset_hwm():
        run_once(entry, run, device)  # first-call allocations
        entry.module.zero_grad(set_to_none=True)
        gc.collect()
        _malloc_trim()
        rss0 = _proc_status_kib('VmRSS')
        assert _reset_hwm()
        exact = True
    else:
        exact = False
    run_once(entry, run, device)
    peak = _proc_status_kib('VmHWM') - rss0
    return dict(peak_mib=peak / 1024, exact=exact)


def measure_memory(entries: List[Entry], run: RunSpec,
                   device: torch.device) -> None:
    """Fills each entry's ``peak_mib`` (and ``peak_note``)."""
    for i, entry in enumerate(entries):
        if device.type == 'cuda':
            entry.module.train()
            entry.module.zero_grad(set_to_none=True)
            gc.collect()
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            run_once(entry, run, device)
            entry.peak_mib = (torch.cuda.max_memory_allocated(device) -
                              before) / 2**20
            entry.module.zero_grad(set_to_none=True)
            continue
        result = subprocess.run([sys.executable, '-m', __name__],
                                input=pickle.dumps((run, i)),
                                capture_output=True)
        stdout = result.stdout.decode(errors='replace')
        lines = [line for line in stdout.splitlines()
                 if line.startswith(_PREFIX)]
        if result.returncode != 0 or not lines:
            stderr = result.stderr.decode(errors='replace')
            raise SystemExit(f'memory probe of {entry.label} failed:\n'
                             f'{stderr[-3000:]}')
        probe = json.loads(lines[-1][len(_PREFIX):])
        entry.peak_mib = probe['peak_mib']
        entry.peak_note = '' if probe['exact'] else '*'


def _probe_main() -> None:
    """The fresh process: one entry of the run on stdin, its probe out."""
    run, index = pickle.loads(sys.stdin.buffer.read())
    if run.threads:
        torch.set_num_threads(run.threads)
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmengine').setLevel('ERROR')
    device = torch.device(run.device)
    entry, = build_entries(run, device, only=index)
    print(_PREFIX + json.dumps(memory_probe(entry, run, device)))


if __name__ == '__main__':
    _probe_main()
