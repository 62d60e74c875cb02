# Copyright (c) mmc2f contributors. All rights reserved.
"""The modulation's op, ``dwconv_modulate`` = (DWConv_kxk(x) + b) * V,
forward and backward per stage of an arch, computed every way there is,
against its memory-bandwidth floors (``--op``).

The ways (``CANDIDATES``), on the same inputs of each stage (the run's
shape at strides 4 to 32, the arch's channels and kernel; under ``--amp`` x
and V in the autocast dtype):

* ``cudnn``: the reference ops (``backend='reference'``) on channels-last
  tensors, ``cudnn.benchmark`` off, as a training run has it by default;
* ``cudnn+benchmark``: the same with ``cudnn.benchmark`` on;
* ``native-nchw``: the reference ops on NCHW tensors with cuDNN off:
  PyTorch's own depthwise kernels;
* ``triton``: the Triton kernels (``backend='triton'``), channels last.

Floors, as :mod:`.floor` measures the bandwidth (a copy in the same run):
the forward reads x and V and writes A * V; the backward reads x, V and dZ
and writes dx and dV (the weights are negligible). ``fwd`` times the op in
inference mode; ``train`` the forward with its graph and the backward of
all four inputs (``torch.autograd.grad``); ``bwd`` is their difference.
``kept_MiB`` is the memory the forward keeps for the backward (CUDA's
allocated bytes after the forward, less before). Before timing, each way's
output and gradients must match the float32 reference to ``FUSED_TOL``; a
wrong one is reported, not timed.
"""
import contextlib
import math
import sys
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch

from .floor import (COPY_BYTES, FUSED_TOL, MAX_INPUTS, STRIDES,
                    _median_per_call, copy_bandwidth)
from .models import shape_str
from .numerics import strict_fp32
from .report import print_table
from .spec import RunSpec
from .timing import AMP_DTYPES, amp_context


@dataclass(frozen=True)
class Candidate:
    """A way to compute the op: the backend, the memory format, and the
    cuDNN settings it runs under."""
    backend: str
    channels_last: bool
    cudnn: bool = True
    cudnn_benchmark: bool = False

    @contextlib.contextmanager
    def settings(self) -> Iterator[None]:
        with torch.backends.cudnn.flags(enabled=self.cudnn,
                                        benchmark=self.cudnn_benchmark):
            yield


CANDIDATES: Dict[str, Candidate] = {
    'cudnn': Candidate('reference', True),
    'cudnn+benchmark': Candidate('reference', True, cudnn_benchmark=True),
    'native-nchw': Candidate('reference', False, cudnn=False),
    'triton': Candidate('triton', True),
}


@dataclass
class OpRow:
    """One stage and way: median seconds (None: not run), the floors and
    the forward's kept bytes."""
    stage: str
    input: str
    way: str
    fwd_s: Optional[float]
    train_s: Optional[float]
    fwd_floor_s: float
    bwd_floor_s: float
    kept_bytes: Optional[int]
    err: Optional[float]


def _runs(way: Candidate, device: torch.device) -> bool:
    from mmc2f.ops import dispatch
    return way.backend != 'triton' or dispatch._triton_runs_on(device)


def _inputs(shape: Tuple[int, ...], k: int, dtype: torch.dtype,
            way: Candidate, device: torch.device,
            count: int) -> List[Tuple[torch.Tensor, ...]]:
    """``count`` sets of (x, weight, bias, V, dZ) in the way's layout, the
    activations in ``dtype``, the parameters float32."""
    fmt = (torch.channels_last if way.channels_last else
           torch.contiguous_format)
    c = shape[1]
    sets = []
    for _ in range(count):
        x, v = (torch.randn(shape, device=device, dtype=dtype).contiguous(
            memory_format=fmt) for _ in 'xv')
        out_dtype = torch.float32 if dtype == torch.float16 else dtype
        grad = torch.randn(shape, device=device, dtype=out_dtype).contiguous(
            memory_format=fmt)
        sets.append((x, torch.randn(c, 1, k, k, device=device) / k,
                     torch.randn(c, device=device), v, grad))
    return sets


def _errors(way: Candidate, inputs: Tuple[torch.Tensor, ...],
            run: RunSpec, device: torch.device) -> float:
    """The largest max relative error of the output and the four gradients
    against the reference ops in float32."""
    from mmc2f.ops import dwconv_modulate
    from mmc2f.toolkit.released_reference import max_rel_error

    def outputs(backend: str, reference: bool) -> List[torch.Tensor]:
        """The way's outputs under the run's autocast, or the reference in
        float32 (inputs cast, no autocast)."""
        x, w, b, v, g = inputs
        leaves = [t.float() if reference else t for t in (x, w, b, v)]
        leaves = [t.detach().requires_grad_() for t in leaves]
        amp = contextlib.nullcontext() if reference else amp_context(
            run, device)
        with way.settings(), amp, strict_fp32():
            out = dwconv_modulate(*leaves, backend=backend)
        grads = torch.autograd.grad(out, leaves, g.to(out.dtype))
        return [out, *grads]

    return max(max_rel_error(a.float(), b) for a, b in zip(
        outputs(way.backend, False), outputs('reference', True)))


def _kept_bytes(step: Callable[[], object], device: torch.device
                ) -> Optional[int]:
    """Bytes that the graph of ``step()`` keeps allocated (CUDA only)."""
    if device.type != 'cuda':
        return None
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated(device)
    out = step()
    torch.cuda.synchronize()
    kept = torch.cuda.memory_allocated(device) - before - \
        out.numel() * out.element_size()
    del out
    return kept


def measure_op(run: RunSpec, device: torch.device) -> List[OpRow]:
    """The rows of every stage of ``run.op`` and way."""
    from mmc2f.models.backbones.conv2former import ARCH_SETTINGS
    from mmc2f.ops import dwconv_modulate
    bandwidth = copy_bandwidth(run, device)
    arch = ARCH_SETTINGS[run.op]
    k = arch['kernel_size']
    n, _, h, w = run.shape
    dtype = AMP_DTYPES[run.amp_dtype] if run.amp else torch.float32
    rows = []
    for i, (c, stride) in enumerate(zip(arch['channels'], STRIDES)):
        shape = (n, c, h // stride, w // stride)
        size = math.prod(shape)
        item = dtype.itemsize
        out_item = 4 if dtype == torch.float16 else item
        fwd_floor = (2 * item + out_item) * size / bandwidth
        # Read x, V, dZ; write dx, dV.
        bwd_floor = (4 * item + out_item) * size / bandwidth
        count = min(MAX_INPUTS,
                    math.ceil(COPY_BYTES / (2 * size * item)))
        for name, way in CANDIDATES.items():
            row = OpRow(f'stage {i + 1}', shape_str(shape), name, None, None,
                        fwd_floor, bwd_floor, None, None)
            rows.append(row)
            if not _runs(way, device):
                continue
            sets = _inputs(shape, k, dtype, way, device, count)
            row.err = _errors(way, sets[0], run, device)
            if not row.err < FUSED_TOL[dtype]:
                print(f'{name} WRONG, not timed: stage {i + 1}: max rel err '
                      f'{row.err:.2e} >= {FUSED_TOL[dtype]:g}',
                      file=sys.stderr)
                continue
            leaves = [tuple(t.requires_grad_() if j < 4 else t
                            for j, t in enumerate(s)) for s in sets]

            def forward(x, wt, b, v, g):
                return dwconv_modulate(x, wt, b, v, backend=way.backend)

            def train(x, wt, b, v, g):
                out = forward(x, wt, b, v, g)
                return torch.autograd.grad(out, (x, wt, b, v), g)

            with way.settings(), amp_context(run, device):
                with torch.inference_mode():
                    row.fwd_s = _median_per_call(forward, sets, run, device)
                row.train_s = _median_per_call(train, leaves, run, device)
                row.kept_bytes = _kept_bytes(
                    lambda: forward(*leaves[0]), device)
    return rows


def report_op(rows: List[OpRow], run: RunSpec, device: torch.device,
              load: str) -> None:
    """Prints the run's line, the table (microseconds per call) and its
    notes."""
    header = ['stage', 'input', 'way', 'fwd_us', 'fwd/floor', 'bwd_us',
              'bwd/floor', 'train_us', 'kept_MiB', 'err']
    table = []
    for r in rows:
        if r.fwd_s is None:
            table.append([r.stage, r.input, r.way] + ['-'] * 6 +
                         ['wrong' if r.err is not None else '-'])
            continue
        bwd = r.train_s - r.fwd_s
        table.append([
            r.stage, r.input, r.way, f'{r.fwd_s * 1e6:.1f}',
            f'{r.fwd_s / r.fwd_floor_s:.2f}', f'{bwd * 1e6:.1f}',
            f'{bwd / r.bwd_floor_s:.2f}', f'{r.train_s * 1e6:.1f}',
            '-' if r.kept_bytes is None else f'{r.kept_bytes / 2**20:.1f}',
            f'{r.err:.1e}'])
    print_table(
        run, device, load, header, table,
        f'Conv2Former-{run.op}: the op (DWConv_kxk(x) + b) * V of '
        'each stage, per call; ways and floors: '
        'mmc2f.toolkit.benchmark.op. - where a way does not run here '
        '(triton needs CUDA) or was wrong.')
