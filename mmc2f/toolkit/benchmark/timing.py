# Copyright (c) mmc2f contributors. All rights reserved.
"""Timing.

``warmup`` untimed calls per model, then ``repeats`` rounds in which every
model runs once (round-robin, the order rotating each round, so a change of
machine load affects all models alike); ``perf_counter`` around each call
(CUDA synchronised). Inference runs under ``torch.inference_mode()`` in eval
mode; ``train`` times one forward and backward (loss: the mean of each
output; no optimiser step) in train mode.
"""
import sys
import time
from contextlib import nullcontext
from typing import Callable, ContextManager, List

import torch

from .models import Entry
from .spec import RunSpec


AMP_DTYPES = dict(bf16=torch.bfloat16, fp16=torch.float16)


def amp_context(run: RunSpec, device: torch.device) -> ContextManager:
    """Autocast in the run's dtype, or nothing."""
    if not run.amp:
        return nullcontext()
    return torch.autocast(device.type, dtype=AMP_DTYPES[run.amp_dtype])


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], device: torch.device,
               calls: int = 1) -> float:
    """Seconds per call of ``calls`` back-to-back calls of ``fn``,
    synchronised before and after: on CUDA, the launch queue stays full
    and one synchronisation is shared by all calls."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / calls


def run_once(entry: Entry, run: RunSpec, device: torch.device) -> float:
    """Seconds of one inference call, or of one forward + backward."""
    if run.train:
        entry.module.zero_grad(set_to_none=True)

        def step() -> None:
            with amp_context(run, device):
                loss = entry.loss(entry.forward(*entry.inputs))
            loss.backward()

        return time_calls(step, device)

    def infer() -> None:
        with torch.inference_mode(), amp_context(run, device):
            entry.forward(*entry.inputs)

    return time_calls(infer, device)


def time_entries(entries: List[Entry], run: RunSpec,
                 device: torch.device) -> None:
    """Fills each entry's ``times``: warm-up, then the rotating rounds."""
    for entry in entries:
        entry.module.train(run.train)
        for _ in range(run.warmup):
            run_once(entry, run, device)
        print(f'warmed up {entry.label}', file=sys.stderr)
    for r in range(run.repeats):
        k = r % len(entries)
        for entry in entries[k:] + entries[:k]:
            entry.times.append(run_once(entry, run, device))
    for entry in entries:
        entry.module.zero_grad(set_to_none=True)
