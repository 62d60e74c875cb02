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
from typing import ContextManager, List

import torch

from .models import Entry
from .spec import RunSpec


def amp_context(run: RunSpec, device: torch.device) -> ContextManager:
    """Autocast in the run's dtype, or nothing."""
    if not run.amp:
        return nullcontext()
    dtype = dict(bf16=torch.bfloat16, fp16=torch.float16)[run.amp_dtype]
    return torch.autocast(device.type, dtype=dtype)


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def run_once(entry: Entry, run: RunSpec, device: torch.device) -> float:
    """Seconds of one inference call, or of one forward + backward."""
    if run.train:
        entry.module.zero_grad(set_to_none=True)
        _sync(device)
        start = time.perf_counter()
        with amp_context(run, device):
            loss = entry.loss(entry.forward(*entry.inputs))
        loss.backward()
        _sync(device)
        return time.perf_counter() - start
    _sync(device)
    start = time.perf_counter()
    with torch.inference_mode(), amp_context(run, device):
        entry.forward(*entry.inputs)
    _sync(device)
    return time.perf_counter() - start


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
