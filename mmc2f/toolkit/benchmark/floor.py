# Copyright (c) mmc2f contributors. All rights reserved.
"""The depthwise conv and the modulation of each stage against their
memory-bandwidth floor (``--floor``, and the ``gpu-floor`` goal run).

In a block, A = DWConv_kxk(GELU(W1 X)) multiplies V = W2 X
(:class:`~mmc2f.models.backbones.conv2former.ConvMod`). The step moves
whole tensors through memory for little arithmetic, so its floor is the
time its unavoidable traffic takes at the device's memory bandwidth: that of
a kernel reading each input once and writing each output once (the weights
are negligible):

* ``dw``, the conv alone: read its input, write A;
* ``dw+mod``, the conv and the modulation fused: read the conv's input and
  V, write A * V;

in the dtypes the model has there: the run's autocast dtype for the conv's
input, V and A (float32 without ``amp``), and for A * V the dtype the model
computes it in (float32 under float16 autocast: ``float32_under_float16``).
The bandwidth is measured in the same run: a copy of ``COPY_BYTES``, bytes
read + written / time.

Per stage (strides 4, 8, 16, 32 of the run's input; channels, depths and
kernel of the arch), the timed code is the model's own, on random inputs in
those dtypes and the run's memory format: the depthwise conv of a built
block (``attn.att[2]``), then that conv followed by the block's modulation
as ``ConvMod.forward``'s reference ops run it (without the Triton op it
may hand the step to), under the run's autocast, in inference mode.
Where it runs (CUDA, triton installed, channels-last inputs) a third step,
``fused``, is the Triton op that does the conv and the modulation in one
pass (:func:`mmc2f.ops.dwconv_modulate` with ``backend='triton'``, on the
block's weights, A * V in the model's dtype), against the ``dw+mod``
floor. It must compute what the model's step computes, to ``FUSED_TOL``;
a wrong one is reported, not timed.
The network's total is the sum over stages of the time per block times the
stage's depth. A sample times back-to-back calls (``MIN_SAMPLE_S`` at least)
that cycle through enough distinct inputs to exceed ``COPY_BYTES``, so that
each call reads memory, not a cache; each time is the median of ``repeats``
samples after ``warmup`` samples and a first one that sizes them.
"""
import itertools
import math
import sys
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .models import shape_str
from .numerics import strict_fp32
from .report import print_table
from .spec import RunSpec
from .timing import AMP_DTYPES, amp_context, time_calls

COPY_BYTES = 2**28  # 256 MiB: more than a GPU's L2 or a CPU's L3
MIN_SAMPLE_S = 5e-3  # shares a synchronisation among many calls
MAX_INPUTS = 64  # distinct inputs per step, whatever their size
STRIDES = (4, 8, 16, 32)
# The fused step's largest max relative error against the model's step, by
# the dtype of its inputs: under autocast the model rounds its conv's weights
# and A to the autocast dtype, the kernel does not (both round a bfloat16
# A * V once, at its output).
FUSED_TOL = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}


@dataclass(frozen=True)
class FloorRow:
    """One stage's step per block, or (``label`` 'total') the network's.

    Attributes:
        label: ``'stage 1'`` to ``'stage 4'``, or ``'total'``.
        input: The conv's input (total: the network's input), as NxCxHxW.
        blocks: The stage's depth (total: all blocks).
        dw_s, mod_s: Median seconds of the conv, of the conv + modulation.
        dw_bytes, mod_bytes: Bytes a fused kernel of each must move.
        bandwidth: The copy's bytes/s.
        dtypes: A's and A * V's dtype.
        fused_s: Median seconds of the fused kernel; None where not run.
        fused_err: Its max relative error against the conv + modulation
            (total: the largest of the stages'); None where not run. A
            wrong kernel (``FUSED_TOL``) has an error but no time.
    """
    label: str
    input: str
    blocks: int
    dw_s: float
    mod_s: float
    dw_bytes: int
    mod_bytes: int
    bandwidth: float
    dtypes: Tuple[torch.dtype, torch.dtype]
    fused_s: Optional[float] = None
    fused_err: Optional[float] = None

    @property
    def dw_floor_s(self) -> float:
        return self.dw_bytes / self.bandwidth

    @property
    def mod_floor_s(self) -> float:
        return self.mod_bytes / self.bandwidth

    @property
    def ratio(self) -> float:
        """dw+mod time / its floor (the goal's number)."""
        return self.mod_s / self.mod_floor_s


def fused_step(run: RunSpec, device: torch.device, conv: torch.nn.Conv2d
               ) -> Optional[Callable[[torch.Tensor, torch.Tensor],
                                      torch.Tensor]]:
    """``dwconv_modulate`` on ``conv``'s weights, or None where it does not
    run (not CUDA, no triton, or not channels last). Its product has the
    dtype of the model's (float32 for float16 inputs)."""
    if device.type != 'cuda' or not run.channels_last:
        return None
    from mmc2f.ops import dispatch, dwconv_modulate
    if dispatch.triton is None:
        return None
    return lambda x, v: dwconv_modulate(x, conv.weight, conv.bias, v,
                                        backend='triton')


def check_fused(label: str, fused: Callable[[torch.Tensor, torch.Tensor],
                                            torch.Tensor],
                x: torch.Tensor, v: torch.Tensor,
                ref: torch.Tensor) -> float:
    """The max relative error of the fused step's output against the model's
    step's (``ref``), printed; inf (and a message) where the kernel fails.
    The caller times the step only below ``FUSED_TOL``."""
    from mmc2f.toolkit.released_reference import max_rel_error
    try:
        # CUDA reports a kernel's fault at the next synchronisation: here.
        err = max_rel_error(fused(x, v).float(), ref.float())
    except Exception as error:  # e.g. a Triton that cannot compile it
        print(f'fused kernel FAILED, not timed: {label}: '
              f'{type(error).__name__}: {error}', file=sys.stderr)
        return math.inf
    print(f'checked {label} fused: max rel err {err:.2e}', file=sys.stderr)
    return err


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _median_per_call(step: Callable[..., object], inputs: Sequence[tuple],
                     run: RunSpec, device: torch.device) -> float:
    """Median seconds per call of ``step(*inputs[i])``, cycling through
    ``inputs``."""
    cycle = itertools.cycle(inputs)

    def call() -> None:
        step(*next(cycle))

    first = time_calls(call, device, len(inputs))
    calls = max(len(inputs), math.ceil(MIN_SAMPLE_S / first))
    for _ in range(run.warmup):
        time_calls(call, device, calls)
    return float(np.median(
        [time_calls(call, device, calls) for _ in range(run.repeats)]))


def copy_bandwidth(run: RunSpec, device: torch.device) -> float:
    """Bytes/s read + written by a copy of ``COPY_BYTES``."""
    src = torch.ones(COPY_BYTES // 4, device=device)
    dst = torch.empty_like(src)
    return 2 * COPY_BYTES / _median_per_call(
        lambda s, d: d.copy_(s), [(src, dst)], run, device)


def measure_floor(run: RunSpec, device: torch.device) -> List[FloorRow]:
    """The rows of the stages of ``run.floor``, then the total."""
    from mmc2f.models.backbones.conv2former import (ARCH_SETTINGS,
                                                    Conv2FormerBlock,
                                                    float32_under_float16)
    bandwidth = copy_bandwidth(run, device)
    arch = ARCH_SETTINGS[run.floor]
    n, _, h, w = run.shape
    dtype = AMP_DTYPES[run.amp_dtype] if run.amp else torch.float32
    fmt = torch.channels_last if run.channels_last else \
        torch.contiguous_format
    rows = []
    for i, (c, depth, stride) in enumerate(
            zip(arch['channels'], arch['depths'], STRIDES)):
        shape = (n, c, h // stride, w // stride)
        attn = Conv2FormerBlock(c, arch['kernel_size']).attn.to(
            device, memory_format=fmt).eval()
        conv = attn.att[2]

        def dw(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return conv(x)

        def mod(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return float32_under_float16(attn.modulate, conv(x), v)

        def rand() -> torch.Tensor:
            return torch.randn(shape, device=device, dtype=dtype).contiguous(
                memory_format=fmt)

        pair_bytes = 2 * math.prod(shape) * dtype.itemsize
        inputs = [(rand(), rand()) for _ in range(
            min(MAX_INPUTS, math.ceil(COPY_BYTES / pair_bytes)))]
        label = f'stage {i + 1}'
        with torch.inference_mode(), amp_context(run, device):
            x, v = inputs[0]
            with strict_fp32():  # TF32 off: the fused check's reference
                a, av = dw(x, v), mod(x, v)
            fused = fused_step(run, device, conv)
            fused_err = (None if fused is None else
                         check_fused(label, fused, x, v, av))
            if fused_err is not None and not fused_err < FUSED_TOL[dtype]:
                if math.isfinite(fused_err):
                    print(f'fused kernel WRONG, not timed: {label}: max rel '
                          f'err {fused_err:.2e} >= {FUSED_TOL[dtype]:g} '
                          'against the conv + modulation', file=sys.stderr)
                fused = None  # a wrong kernel's time means nothing
            dw_s, mod_s, fused_s = (
                None if step is None else
                _median_per_call(step, inputs, run, device)
                for step in (dw, mod, fused))
            rows.append(FloorRow(
                label, shape_str(shape), depth, dw_s, mod_s,
                _nbytes(x) + _nbytes(a), _nbytes(x) + _nbytes(v) +
                _nbytes(av), bandwidth, (a.dtype, av.dtype), fused_s,
                fused_err))
    # The network's fused total needs the step timed in every stage.
    fused_run = all(r.fused_s is not None for r in rows)
    rows.append(FloorRow(
        'total', shape_str(run.shape), sum(r.blocks for r in rows),
        *(sum(getattr(r, f) * r.blocks for r in rows)
          for f in ('dw_s', 'mod_s', 'dw_bytes', 'mod_bytes')),
        bandwidth, rows[0].dtypes,
        sum(r.fused_s * r.blocks for r in rows) if fused_run else None,
        max((r.fused_err for r in rows if r.fused_err is not None),
            default=None)))
    return rows


def report_floor(rows: List[FloorRow], run: RunSpec, device: torch.device,
                 load: str) -> None:
    """Prints the run's line, the table (microseconds) and its notes."""
    header = ['stage', 'input', 'blocks', 'dw_us', 'dw_floor_us', 'dw_ratio',
              'dw+mod_us', 'dw+mod_floor_us', 'dw+mod_ratio', 'fused_us',
              'fused_ratio', 'fused_err']
    table = []
    for r in rows:
        cells = [r.label, r.input, str(r.blocks)]
        for t, floor in ((r.dw_s, r.dw_floor_s), (r.mod_s, r.mod_floor_s)):
            cells += [f'{t * 1e6:.1f}', f'{floor * 1e6:.1f}',
                      f'{t / floor:.2f}']
        if r.fused_s is not None:
            cells += [f'{r.fused_s * 1e6:.1f}',
                      f'{r.fused_s / r.mod_floor_s:.2f}']
        else:  # not run, or (checked, not timed) wrong
            cells += ['-' if r.fused_err is None else 'wrong', '-']
        cells.append('-' if r.fused_err is None else f'{r.fused_err:.1e}')
        table.append(cells)
    from mmc2f.models.backbones.conv2former import ARCH_SETTINGS
    k = ARCH_SETTINGS[run.floor]['kernel_size']
    a_dtype, av_dtype = (str(d).replace('torch.', '') for d in rows[0].dtypes)
    print_table(
        run, device, load, header, table,
        f'Conv2Former-{run.floor}: dw = the {k}x{k} depthwise conv '
        'of a block, dw+mod = it and the modulation (A * V, computed as '
        'in ConvMod.forward); stage rows per block, total = the '
        'network (per block x blocks).\n'
        f'floor = bytes a fused kernel moves (dw: read the input, write A; '
        f'dw+mod: read the input and V, write A * V; A in {a_dtype}, '
        f'A * V in {av_dtype}) / the copy bandwidth, '
        f'{rows[0].bandwidth / 1e9:.1f} GB/s (a {COPY_BYTES >> 20} MiB '
        'tensor copied, bytes read + written / median time); ratio = '
        f'time / floor. Median of {run.repeats} samples after '
        f'{run.warmup} warm-up samples.\n'
        'fused = the Triton kernel doing dw+mod in one pass '
        '(mmc2f.ops.dwconv_modulate), ratio against the dw+mod '
        'floor, err = max relative error against dw+mod; - where not run '
        '(it needs CUDA, triton and --channels-last).')
