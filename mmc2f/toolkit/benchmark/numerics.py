# Copyright (c) mmc2f contributors. All rights reserved.
"""Same weights, same result: the numerical check before timing.

Each ``conv2former-X`` and ``released-X`` entry runs the benchmark input in
the timed configuration (memory format; fp32, TF32 off) and must match the
unmodified ``released_forward`` on the same weights to a max relative error
below ``CHECK_TOL`` (the ``err`` column), or the run stops: a fast path
cannot win by computing something else. Under ``amp`` the autocast output is
checked too, against a loose bound (``AMP_TOL``).
"""
import sys
from contextlib import contextmanager
from typing import Dict, Iterator, List

import torch

from .models import Entry, released_state_dict
from .spec import RunSpec
from .timing import amp_context

CHECK_TOL = 1e-4
# Autocast against the fp32 released forward: a bound that catches a wrong
# computation (errors of order 1), not a precision claim.
AMP_TOL = 5e-2


@contextmanager
def strict_fp32() -> Iterator[None]:
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


def check_outputs(entries: List[Entry], run: RunSpec,
                  device: torch.device) -> None:
    """conv2former-X and released-X against ``released_forward`` (fp32);
    SystemExit naming each entry that fails."""
    from mmc2f.models.backbones.conv2former import ARCH_SETTINGS
    from mmc2f.toolkit.released_reference import (max_rel_error,
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
            if run.amp:
                with amp_context(run, device):
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
