# Copyright (c) mmc2f contributors. All rights reserved.
"""The one policy that decides how the modules compute: the fused CPU
inference engine (:mod:`.cpu_inference`), the Triton kernels of
:func:`~.modulate.dwconv_modulate`, or the reference PyTorch ops.

A backbone's ``backend`` argument is ``'auto'``, ``'triton'`` or
``'reference'``:

- ``'reference'``: the PyTorch ops, everywhere;
- ``'triton'``: the modules hand the modulation to the Triton op on CUDA
  tensors, elsewhere they run as with ``'auto'``; the op itself, called
  with ``backend='triton'``, refuses tensors it cannot take;
- ``'auto'``: float32 CPU inference runs the fused CPU engine. On CUDA the
  Triton op and the reference ops are timed once per key (channels, kernel,
  dtypes, layout, training or inference, and the image's area rounded to a
  power of two), as ``cudnn.benchmark`` does, and the faster is kept: a
  kernel that was never measured on a device cannot make a model slower
  than cuDNN there, and the Triton op is chosen only where its output and
  gradients agreed with the reference ops' on the timing's inputs.
  Multi-scale training changes the image size at every iteration; the area
  bucket bounds the timings to a few per stage. Each choice is logged
  once.

``MMC2F_BACKEND=reference`` in the environment, or the :func:`forced`
context, overrides ``'auto'`` and ``'triton'`` for the whole process (to
time one path against another, or to rule the fused paths out).

Neither fused path runs where the plain ops must be seen: under
``torch.compile`` (it fuses them itself), tracing (ONNX export), scripting,
or with forward hooks on the modules they replace.
"""
import contextlib
import logging
import math
import os
from typing import (Callable, Dict, Iterator, List, NamedTuple, Optional,
                    Tuple)

import torch
import torch.nn as nn
from mmengine.logging import print_log

try:
    import triton
except ImportError:  # CPU-only installs
    triton = None
try:
    from . import cpu_inference
except ModuleNotFoundError as e:  # the reference path alone
    if not e.name.endswith('cpu_inference'):
        raise
    cpu_inference = None

BACKENDS = ('auto', 'triton', 'reference')
#: Triton runs on CPU tensors in its interpreter (tests, no GPU needed).
INTERPRETED = triton is not None and os.environ.get('TRITON_INTERPRET') == '1'

_forced: Optional[str] = (
    'reference' if os.environ.get('MMC2F_BACKEND') == 'reference' else None)
# The timed choice per key ('triton' or 'reference'), and its log lines.
_timed: Dict[tuple, str] = {}
_timed_lines: List[str] = []


class KernelConfig(NamedTuple):
    """A kernel's tile sizes (constexpr keyword arguments) and warps."""
    kwargs: Dict[str, int]
    num_warps: int


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f'backend must be one of {BACKENDS}, got '
                         f'{backend!r}')
    return backend


@contextlib.contextmanager
def forced(backend: Optional[str]) -> Iterator[None]:
    """Within it every op and module runs ``backend`` (process-wide; None
    lifts the force)."""
    global _forced
    before, _forced = _forced, backend and check_backend(backend)
    try:
        yield
    finally:
        _forced = before


def _traced() -> bool:
    return (torch.compiler.is_compiling() or torch.jit.is_tracing()
            or torch.jit.is_scripting())


def conv_configs(k: int) -> Tuple[KernelConfig, ...]:
    """The tiles of ``_dwconv_kernel`` for kernel size ``k``: rows and
    columns per program such that the windows, accumulators and one tap
    row (``ROWS * (BLOCK_W + k - 1) + ROWS * BLOCK_W + k`` values per
    channel, about 130) with the addressing fit a thread's 255 registers
    without spilling (215 to 240 compiled, ``kernel_report.py``). One
    channel per thread; 1 or 2 warps."""
    rows, block_w = (4, 12) if k <= 7 else (4, 8) if k <= 13 else (2, 8)
    return tuple(
        KernelConfig(
            dict(ROWS=rows, BLOCK_W=block_w, GROUP_W=1, BLOCK_C=32 * warps),
            warps) for warps in (1, 2))


def conv_config(c: int, k: int, h: int, w: int) -> KernelConfig:
    """The tile for C channels: 2 warps (64 channels) where C fills them
    (C = 72 wastes less of 3 x 32 than of 2 x 64)."""
    one, two = conv_configs(k)
    if INTERPRETED:
        return _interpreted(c, w, dict(ROWS=2))
    return two if c % 64 == 0 else one


def wgrad_configs(k: int) -> Tuple[KernelConfig, ...]:
    """The tiles of ``_dwconv_wgrad_kernel``: ``TAP_ROWS * k`` accumulators
    and ``TAP_ROWS`` windows of ``BLOCK_W + k - 1`` per channel, at most
    about 100 values."""
    tap_rows = 4 if k <= 7 else 3 if k <= 13 else 2
    return (KernelConfig(
        dict(TAP_ROWS=min(k, tap_rows), BLOCK_W=8, GROUP_W=1, BLOCK_C=32),
        1), )


def wgrad_config(c: int, k: int, w: int) -> KernelConfig:
    if INTERPRETED:
        return _interpreted(c, w, dict(TAP_ROWS=k))
    return wgrad_configs(k)[0]


def _interpreted(c: int, w: int, tile: Dict[str, int]) -> KernelConfig:
    """The tile under Triton's interpreter, whose time grows with the
    number of operations, not their size: every channel and a whole row
    (one column per tile, the tiles side by side) in each operation."""
    def pow2(n: int) -> int:
        return 1 << max(n - 1, 0).bit_length()

    return KernelConfig(
        dict(tile, BLOCK_W=1, GROUP_W=pow2(w), BLOCK_C=max(pow2(c), 2)), 1)


def wgrad_rows_per_program(n: int, h: int, programs_per_row: int,
                           device: torch.device) -> int:
    """Rows per weight-gradient program: a column strip's whole height,
    split until there are about 4 programs per SM. A function of the shape
    and the device only, so the partial sums, and the gradient, are the
    same in every run."""
    sms = (torch.cuda.get_device_properties(device).multi_processor_count
           if device.type == 'cuda' else 1)
    splits = max(1, math.ceil(4 * sms / max(n * programs_per_row, 1)))
    return max(8, math.ceil(h / splits))


def _triton_runs_on(device: torch.device) -> bool:
    return triton is not None and (device.type == 'cuda' or
                                   (INTERPRETED and device.type == 'cpu'))


def _key(x: torch.Tensor, weight: torch.Tensor, v: torch.Tensor,
         training: bool) -> tuple:
    """What decides the speed: (device, C, k, x's dtype, V's, NCHW or not,
    training, the weights' dtype, the autocast dtype or None, the area
    rounded to a power of two)."""
    area = x.shape[2] * x.shape[3]
    device = x.device.type
    autocast = (torch.get_autocast_dtype(device)
                if torch.is_autocast_enabled(device) else None)
    return (x.device, x.shape[1], weight.shape[-1], x.dtype, v.dtype,
            x.is_contiguous(), training, weight.dtype, autocast,
            2**round(math.log2(area)) if area else 0)


def _time(fn: Callable[[], None], repeat: int = 5) -> float:
    """Milliseconds of ``fn`` on the GPU, the median of ``repeat`` runs
    after one warm-up (which compiles)."""
    fn()
    times = []
    for _ in range(repeat):
        start, end = (torch.cuda.Event(enable_timing=True) for _ in '12')
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def choices() -> List[str]:
    """What ``'auto'`` chose on this process's CUDA devices, and the times
    it chose by, one line per key."""
    return list(_timed_lines)


# Largest max relative error of the Triton op against the reference ops on
# the timing's inputs for it to be chosen, by the dtype of x: the reference
# rounds A to 16 bits under autocast, the op does not.
AGREEMENT = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


def _timed_choice(key: tuple, x: torch.Tensor, weight: torch.Tensor,
                  bias: Optional[torch.Tensor], v: torch.Tensor,
                  training: bool) -> str:
    """Times the Triton op against the reference ops on inputs shaped like
    these (forward and backward where training), once per key. The Triton
    op is chosen only where it compiled, ran and agreed with the reference
    (outputs and gradients); otherwise the reason is logged."""
    from .modulate import _DWConvModulate, reference

    def run(fn: Callable) -> Tuple[Callable[[], None], List[torch.Tensor]]:
        inputs = [t.detach().clone().requires_grad_(training)
                  if t is not None else None for t in (x, weight, bias, v)]
        results: List[torch.Tensor] = []

        def step() -> None:
            with torch.enable_grad() if training else torch.no_grad():
                out = fn(*inputs)
                grads = torch.autograd.grad(
                    out, [t for t in inputs if t is not None],
                    torch.ones_like(out)) if training else ()
            results[:] = [out, *grads]
        return step, results

    # The timing's graphs are its own: not packed by the hooks of an
    # enclosing gradient checkpoint; and on x's device.
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t), \
            torch.cuda.device(x.device):
        reference_step, expected = run(reference)
        times = {'reference': _time(reference_step)}
        triton_step, got = run(_DWConvModulate.apply)
        try:
            times['triton'] = _time(triton_step)
            error = max(_max_rel_error(a, b) for a, b in zip(got, expected))
            problem = ('' if error < AGREEMENT[x.dtype] else
                       f'disagrees with the reference ops (max rel err '
                       f'{error:.1e})')
        except Exception as failure:  # noqa: B902 any failure: cuDNN runs
            problem = f'failed: {type(failure).__name__}: {failure}'
    choice = 'reference' if problem else min(times, key=times.get)
    _timed_lines.append(
        f'mmc2f dwconv_modulate auto: C={key[1]} k={key[2]} {key[3]} '
        f'{"NCHW" if key[5] else "channels-last"} '
        f'{"train" if training else "inference"} ~{key[-1]} px: ' +
        (f'triton {problem}' if problem else
         f'triton {times["triton"]:.3f} ms') +
        f', reference {times["reference"]:.3f} ms -> {choice}')
    print_log(_timed_lines[-1], logger='current',
              level=logging.WARNING if problem else logging.INFO)
    return choice


def _max_rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = b.float().abs().max().clamp_min(1e-30)
    return ((a.float() - b.float()).abs().max() / scale).item()


def _too_large(x: torch.Tensor) -> str:
    """Why the kernels cannot take x ('' where they can): offsets within an
    image are int32."""
    c, h, w = x.shape[1:]
    if c * h * w >= 2**31:
        return f'one image of {c}x{h}x{w} has 2**31 elements or more'
    return ''


def op_backend(backend: str, x: torch.Tensor, weight: torch.Tensor,
               v: torch.Tensor,
               bias: Optional[torch.Tensor] = None) -> str:
    """``'triton'`` or ``'reference'`` for one call of the op (see the
    module docstring)."""
    backend = _forced or check_backend(backend)
    if backend == 'reference' or _traced():
        return 'reference'
    runs = _triton_runs_on(x.device)
    too_large = _too_large(x)
    if backend == 'triton':
        if not runs or too_large:
            raise ValueError(
                "backend='triton' needs Triton and CUDA tensors (CPU "
                'tensors only under TRITON_INTERPRET=1); got '
                f'{x.device.type} tensors'
                + ('' if triton else ' and no triton installed') +
                (f', and {too_large}' if too_large else '') +
                ": use backend='auto' or 'reference'")
        return 'triton'
    if not runs or x.device.type != 'cuda' or too_large:
        return 'reference'
    training = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, weight, bias, v))
    key = _key(x, weight, v, training)
    if key not in _timed:
        _timed[key] = _timed_choice(key, x, weight, bias, v, training)
    return _timed[key]


def _is_plain_depthwise(conv: nn.Module) -> bool:
    """Whether ``conv`` is the conv the op computes: depthwise, stride 1,
    zero padding k // 2, k odd from 3 to 21."""
    if type(conv) is not nn.Conv2d:  # a subclass may compute otherwise
        return False
    k = conv.kernel_size[0]
    return (k % 2 == 1 and 3 <= k <= 21 and conv.kernel_size == (k, k)
            and conv.groups == conv.in_channels == conv.out_channels
            and conv.stride == (1, 1) and conv.dilation == (1, 1)
            and conv.padding == (k // 2, k // 2)
            and conv.padding_mode == 'zeros')


def _has_hooks(*modules: nn.Module) -> bool:
    """Forward hooks on ``modules`` (whose calls a fused path replaces),
    or global ones."""
    return bool(nn.modules.module._global_forward_hooks
                or nn.modules.module._global_forward_pre_hooks) or any(
                    m._forward_hooks or m._forward_pre_hooks
                    for m in modules)


def cpu_engine_runs(module: nn.Module, x: torch.Tensor,
                    backend: str = 'auto') -> bool:
    """Whether ``module`` (a stem or a block) runs ``x`` through the fused
    CPU engine: float32 CPU inference in eval mode, outside autocast."""
    return ((_forced or backend) != 'reference' and cpu_inference is not None
            and cpu_inference.AVAILABLE
            and not module.training and not _traced()
            and x.device.type == 'cpu' and x.dtype == torch.float32
            and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled('cpu'))


def convmod_uses_op(module: nn.Module, x: torch.Tensor,
                    backend: str = 'auto') -> bool:
    """Whether a ``ConvMod`` hands its conv and product to
    :func:`~.modulate.dwconv_modulate` (which then picks Triton or
    the reference ops): a CUDA input, the Hadamard modulation, the op's
    conv, no hooks on the calls it replaces, not traced."""
    return ((_forced or backend) != 'reference' and x.device.type in (
        ('cuda', 'cpu') if INTERPRETED and backend == 'triton' else
        ('cuda', )) and module.modulation == 'hadamard' and not _traced()
            and _is_plain_depthwise(module.att[2])
            and not _has_hooks(module.att, module.att[2]))


def preferred_layout(x: torch.Tensor) -> torch.Tensor:
    """The backbone's input in the layout its convolutions run fastest in:
    channels last on the CPU (oneDNN's depthwise conv and the layer norms'
    NHWC view), as it is elsewhere."""
    if x.device.type == 'cpu' and cpu_inference is not None:
        return x.contiguous(memory_format=torch.channels_last)
    return x
