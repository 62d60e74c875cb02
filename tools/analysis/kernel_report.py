# Copyright (c) mmc2f contributors. All rights reserved.
"""What the compiled Triton kernels of ``mmc2f.ops`` do per thread, read off
their machine code, with no GPU: Triton compiles each kernel and tile
config for a GPU target, ``cuobjdump -res-usage`` gives registers, stack and
shared memory, ``nvdisasm`` the SASS instructions (both ship with Triton).

    python tools/analysis/kernel_report.py [--targets 80 90]
        [--kernel-size 11] [--shape C H W] [--dtype float16|bfloat16|float32]
        [--kernels forward grad_v grad_x grad_weight] [--json FILE]

One line per kernel, tile config and target (here wrapped)::

    KERNEL CONFIG sm_90: regs=N spill_bytes=N shared=N
        macs_per_byte=X fma_share=Y

- ``spill_bytes``: the stack frame (local memory that spilled registers
  live in); 0 means no spill.
- ``macs_per_byte``: multiply-adds per byte that loads from global and
  shared memory bring into registers, counted over the instructions of the
  code (each loop body once: it is the steady state). FFMA counts 1, HFMA2
  2, an MMA its shape's multiply-adds over the 32 threads of a warp; a load
  counts its width (``LDG.E.U16`` 2 bytes, ``LDG.E.128`` 16). Loads of
  kernel arguments (constant bank) are not counted.
- ``fma_share``: the multiply-add instructions' share of all instructions
  (NOPs, the code's padding, left out).

The kernels are compiled for the activations' dtype of ``--dtype``: under
float16 autocast (the default) x and V are float16 and dZ float32, as the
model trains; and specialised as Triton's launcher specialises them for
channels-last tensors of ``--shape`` C H W (default 72 56 56, Conv2Former-T's
first stage): the channel stride 1 becomes a constant, integers and
pointers divisible by 16 are marked so. KERNEL names the op's use of it:
``forward`` (Z = A * V), ``grad_v`` (dV = A * dZ), ``grad_x`` (dx from
dZ * V) and ``grad_weight``.
"""
import argparse
import concurrent.futures
import json
import os
import os.path as osp
import re
import subprocess
import sys
import tempfile
from typing import Dict, Iterator, List, Optional, Tuple

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from mmc2f.ops import dispatch, triton_kernels

BIN = osp.join(osp.dirname(triton.__file__), 'backends', 'nvidia', 'bin')
TRITON_TYPES = {'float16': 'fp16', 'bfloat16': 'bf16', 'float32': 'fp32'}
# Multiply-adds per thread of one instruction.
MACS = {'FFMA': 1, 'HFMA2': 2}
# SASS MMA shapes and the threads that share one: HMMA.1688 / HMMA.16816
# (m16n8k8, m16n8k16) over a warp; HGMMA.64x128x16 over a warpgroup.
MMA = (
    (re.compile(r'^HMMA\.(16)(8)(8|16)\b'), 32),
    (re.compile(r'^HGMMA\.(\d+)x(\d+)x(\d+)\b'), 128),
)
LOAD = re.compile(r'^(LDG|LDS|LDSM|LD)\b')
WIDTHS = {'U8': 1, 'S8': 1, 'U16': 2, 'S16': 2, '64': 8, '128': 16}
LINE = re.compile(r'^\w+ \S+ sm_\d+: regs=\d+ spill_bytes=\d+ shared=\d+ '
                  r'macs_per_byte=[\d.]+ fma_share=[\d.]+$')
INSTRUCTION = re.compile(r'^\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?'
                         r'([A-Z][A-Z0-9_.]*)')


class Variant:
    """One kernel as the op launches it: its arguments' types, constexprs
    and, as Triton's launcher specialises them, the integer arguments equal
    to 1 (constexprs) and those and the pointers divisible by 16."""

    def __init__(self, name: str, fn, signature: Dict[str, str],
                 constexprs: Dict[str, object], num_warps: int,
                 ints: Optional[Dict[str, int]] = None) -> None:
        self.name, self.fn, self.num_warps = name, fn, num_warps
        ints = ints or {}
        ones = {k: 1 for k, value in ints.items() if value == 1}
        self.constexprs = dict(constexprs, **ones)
        self.signature = dict(signature, **{k: 'constexpr'
                                            for k in self.constexprs})
        # Torch's allocations are 16-byte aligned, as the launcher assumes.
        aligned = [k for k, t in signature.items() if t.startswith('*')]
        aligned += [k for k, value in ints.items()
                    if value != 1 and value % 16 == 0]
        self.attrs = {(fn.arg_names.index(k), ): [['tt.divisibility', 16]]
                      for k in aligned}

    @property
    def config(self) -> str:
        tile = {k: v for k, v in self.constexprs.items()
                if k.isupper() and k not in ('K', 'PRE', 'POST', 'HAS_BIAS')}
        return ','.join(f'{k}={v}' for k, v in tile.items()) + \
            f',num_warps={self.num_warps}'


def variants(k: int, dtype: str, shape: Tuple[int, int, int] = (72, 56, 56)
             ) -> Iterator[Variant]:
    """Every kernel use and shipped tile config for kernel size ``k``, as
    launched on a channels-last (C, H, W) image (default: Conv2Former-T's
    first stage at 224 px)."""
    act = TRITON_TYPES[dtype]
    # Under float16 autocast the product, and so dZ, is float32.
    grad = 'fp32' if dtype == 'float16' else act
    c, h, w = shape
    values = dict(C=c, H=h, W=w, stride_n=c * h * w, stride_c=1,
                  stride_h=w * c, stride_w=c)
    ints = {n: 'i32' for n in values}
    uses = {
        # name: (x, g, m, out, PRE, HAS_BIAS, POST)
        'forward': (act, act, act, grad, False, True, True),
        'grad_v': (act, act, grad, act, False, True, True),
        'grad_x': (grad, act, act, act, True, False, False),
    }
    for config in dispatch.conv_configs(k):
        for name, (x, g, m, out, pre, bias, post) in uses.items():
            signature = dict(x_ptr=f'*{x}', g_ptr=f'*{g}', w_ptr='*fp32',
                             b_ptr='*fp32', m_ptr=f'*{m}',
                             out_ptr=f'*{out}', **ints)
            yield Variant(name, triton_kernels._dwconv_kernel, signature,
                          dict(K=k, PRE=pre, HAS_BIAS=bias, POST=post,
                               **config.kwargs), config.num_warps, values)
    for config in dispatch.wgrad_configs(k):
        signature = dict(g_ptr=f'*{grad}', v_ptr=f'*{act}', x_ptr=f'*{act}',
                         part_ptr='*fp32', rows_per_program='i32', **ints)
        rows = dispatch.wgrad_rows_per_program(128, h, 1, torch.device('cpu'))
        yield Variant('grad_weight', triton_kernels._dwconv_wgrad_kernel,
                      signature, dict(K=k, HAS_BIAS=True, **config.kwargs),
                      config.num_warps, dict(values, rows_per_program=rows))


def compile_variant(variant: Variant, arch: int) -> bytes:
    """The cubin of ``variant`` for sm_``arch``."""
    compiled = triton.compile(
        ASTSource(fn=variant.fn, signature=variant.signature,
                  constexprs=variant.constexprs, attrs=variant.attrs),
        target=GPUTarget('cuda', arch, 32),
        options=dict(num_warps=variant.num_warps))
    return compiled.asm['cubin']


def _tool(name: str, *args: str) -> str:
    return subprocess.run([osp.join(BIN, name), *args], check=True,
                          capture_output=True, text=True).stdout


def resources(cubin_path: str) -> Dict[str, int]:
    """REG, STACK and SHARED of the (one) kernel in the cubin."""
    usage = _tool('cuobjdump', '-res-usage', cubin_path)
    found = dict(re.findall(r'\b(REG|STACK|SHARED):(\d+)', usage))
    return {k: int(found.get(k, 0)) for k in ('REG', 'STACK', 'SHARED')}


def load_width(opcode: str) -> int:
    """Bytes a load instruction brings into each thread's registers."""
    for part in reversed(opcode.split('.')[1:]):
        if part in WIDTHS:
            return WIDTHS[part]
    return 4


def instruction_mix(sass: str) -> Tuple[float, float, float]:
    """(multiply-adds, load bytes, instructions) per thread over the SASS
    text (see the module docstring)."""
    macs = loaded = count = 0.
    for line in sass.splitlines():
        match = INSTRUCTION.match(line)
        if not match or match.group(1).startswith('NOP'):
            continue
        opcode = match.group(1)
        count += 1
        base = opcode.split('.')[0]
        if mma_macs(opcode):
            macs += mma_macs(opcode)
        elif base in MACS:
            macs += MACS[base]
        elif LOAD.match(opcode) and not opcode.startswith('LDC'):
            loaded += load_width(opcode)
    return macs, loaded, count


def mma_macs(opcode: str) -> float:
    """Multiply-adds per thread of an MMA instruction (0 for others)."""
    for pattern, threads in MMA:
        match = pattern.match(opcode)
        if match:
            m, n, k = map(int, match.groups())
            return m * n * k / threads
    return 0.


def is_fma(opcode: str) -> bool:
    return opcode.split('.')[0] in MACS or bool(mma_macs(opcode))


def report(variant: Variant, arch: int, folder: str) -> Dict[str, object]:
    """The row of ``variant`` compiled for sm_``arch`` (its cubin written
    into ``folder`` under a name of its own)."""
    with tempfile.NamedTemporaryFile(dir=folder, suffix='.cubin',
                                     delete=False) as f:
        f.write(compile_variant(variant, arch))
    cubin = f.name
    usage = resources(cubin)
    sass = _tool('nvdisasm', cubin)
    macs, loaded, count = instruction_mix(sass)
    fmas = sum(1 for line in sass.splitlines()
               if (m := INSTRUCTION.match(line)) and is_fma(m.group(1)))
    return dict(kernel=variant.name, config=variant.config,
                target=f'sm_{arch}', regs=usage['REG'],
                spill_bytes=usage['STACK'], shared=usage['SHARED'],
                macs_per_byte=round(macs / loaded, 2) if loaded else 0.,
                fma_share=round(fmas / count, 3) if count else 0.)


def format_line(row: Dict[str, object]) -> str:
    return (f"{row['kernel']} {row['config']} {row['target']}: "
            f"regs={row['regs']} spill_bytes={row['spill_bytes']} "
            f"shared={row['shared']} macs_per_byte={row['macs_per_byte']} "
            f"fma_share={row['fma_share']}")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--targets', type=int, nargs='+', default=[80, 90],
                        help='compute capabilities (80: A100, 90: H100)')
    parser.add_argument('--kernel-size', type=int, default=11)
    parser.add_argument('--shape', type=int, nargs=3, default=[72, 56, 56],
                        metavar=('C', 'H', 'W'),
                        help='the channels-last image the launches see')
    parser.add_argument('--dtype', choices=sorted(TRITON_TYPES),
                        default='float16',
                        help="the activations' dtype (float16: autocast)")
    parser.add_argument('--kernels', nargs='+',
                        choices=['forward', 'grad_v', 'grad_x',
                                 'grad_weight'],
                        help='only these (default: all)')
    parser.add_argument('--json', help='also write the rows to this file')
    args = parser.parse_args(argv)
    if args.kernel_size not in range(3, 22, 2):
        parser.error(f'--kernel-size must be odd from 3 to 21, got '
                     f'{args.kernel_size}')
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    jobs = [(variant, arch)
            for variant in variants(args.kernel_size, args.dtype,
                                    tuple(args.shape))
            if not args.kernels or variant.name in args.kernels
            for arch in args.targets]
    # Compiled side by side: ptxas and much of Triton's compiler run outside
    # Python's lock. Printed in order.
    with tempfile.TemporaryDirectory() as folder, \
            concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
        rows = []
        for row in pool.map(lambda job: report(*job, folder), jobs):
            rows.append(row)
            print(format_line(row), flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)
    spilled = [r for r in rows if r['spill_bytes']]
    if spilled:
        print(f'{len(spilled)} kernel(s) spill registers', file=sys.stderr)
    return int(bool(spilled))


if __name__ == '__main__':
    sys.exit(main())
