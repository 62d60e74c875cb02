# Copyright (c) mmc2f contributors. All rights reserved.
"""One run from start to end: build, check, time, measure memory."""
from typing import List

import torch

from .memory import measure_memory
from .models import Entry, build_entries
from .numerics import check_outputs
from .spec import RunSpec
from .timing import time_entries


def measure(run: RunSpec, device: torch.device) -> List[Entry]:
    """Build, check and time the entries of one run (and their memory)."""
    entries = build_entries(run, device)
    check_outputs(entries, run, device)
    time_entries(entries, run, device)
    if run.train:
        measure_memory(entries, run, device)
    return entries
