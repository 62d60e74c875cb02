# Copyright (c) mmc2f contributors. All rights reserved.
"""The command line of ``tools/analysis/benchmark.py``: options into a
:class:`~.spec.RunSpec` (or the goals), then the run (or the floor profile)
and its table."""
import argparse
from typing import List, Optional

import torch
from mmengine.config import DictAction

from .floor import measure_floor, report_floor
from .goals import GOAL_RUNS, run_goals
from .op import measure_op, report_op
from .report import load_average, report
from .run import measure
from .spec import RunSpec


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The options; unless ``--goals``, ``.run`` is the checked RunSpec."""
    parser = argparse.ArgumentParser(
        description='Latency / throughput of backbones and models, with '
        'ratios against a baseline measured in the same run')
    parser.add_argument('--models', nargs='*', default=[],
                        help='e.g. conv2former-t released-t convnext-t swin-t')
    parser.add_argument('--config', action='append',
                        help='time the whole model of this config '
                        '(repeatable)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='overrides for --config, key=value')
    parser.add_argument('--shape', type=int, nargs='+',
                        default=[1, 3, 224, 224],
                        help='input N C H W (or H W: N=1, C=3)')
    parser.add_argument('--repeats', type=int, help='default: 10')
    parser.add_argument('--warmup', type=int, help='default: 3')
    parser.add_argument('--baseline',
                        help='model of the ratios (default: the first)')
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--cudnn-benchmark', action='store_true',
                        help='torch.backends.cudnn.benchmark: cuDNN picks '
                        'its fastest algorithm per shape by timing them')
    parser.add_argument('--amp', action='store_true', help='autocast')
    parser.add_argument('--amp-dtype', choices=['bf16', 'fp16'],
                        help='default: bf16 on CPU, fp16 on CUDA')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument('--threads', type=int,
                        help='torch.set_num_threads (default: torch\'s)')
    parser.add_argument('--train', action='store_true',
                        help='time forward + backward, measure peak memory')
    parser.add_argument('--with-cp', action='store_true',
                        help='gradient checkpointing (mmc2f, mmpretrain and '
                        'config backbones; not released-*)')
    parser.add_argument('--markdown', action='store_true')
    parser.add_argument('--floor', nargs='?', const='tiny', metavar='ARCH',
                        help='instead of --models: the depthwise conv and '
                        'modulation of each stage of this Conv2Former arch '
                        '(default tiny) against the memory-bandwidth floor '
                        '(honours --shape, --device, --amp, --channels-last)')
    parser.add_argument('--op', nargs='?', const='tiny', metavar='ARCH',
                        help='instead of --models: dwconv_modulate of each '
                        'stage of this arch, forward and backward, with '
                        'cuDNN, cuDNN benchmark, PyTorch\'s NCHW kernel and '
                        'Triton, against its floors (honours --shape, '
                        '--device, --amp)')
    parser.add_argument('--goals', nargs='*', metavar='RUN',
                        help='the project\'s performance goals in one run '
                        '(ignores the model and input options); optionally '
                        f'only these runs: {" ".join(GOAL_RUNS)}')
    args = parser.parse_args(argv)
    if args.goals is not None:
        unknown = set(args.goals) - set(GOAL_RUNS)
        if unknown:
            parser.error(f'--goals: unknown runs {sorted(unknown)}, valid: '
                         f'{" ".join(GOAL_RUNS)}')
        return args
    defaults = RunSpec()
    run = RunSpec(
        models=tuple(args.models), configs=tuple(args.config or ()),
        cfg_options=args.cfg_options, shape=tuple(args.shape),
        repeats=defaults.repeats if args.repeats is None else args.repeats,
        warmup=defaults.warmup if args.warmup is None else args.warmup,
        baseline=args.baseline, channels_last=args.channels_last,
        cudnn_benchmark=args.cudnn_benchmark,
        amp=args.amp, amp_dtype=args.amp_dtype, device=args.device,
        threads=args.threads, train=args.train, with_cp=args.with_cp,
        markdown=args.markdown, floor=args.floor, op=args.op)
    try:
        args.run = run.resolved()
    except ValueError as e:
        parser.error(str(e))
    return args


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmengine').setLevel('ERROR')
    if args.goals is not None:
        run_goals(args.threads, args.repeats, args.warmup, args.markdown,
                  args.goals)
        return
    run = args.run
    if run.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no CUDA device available')
    device = torch.device(run.device)
    torch.backends.cudnn.benchmark = run.cudnn_benchmark
    load = load_average()
    if run.floor:
        report_floor(measure_floor(run, device), run, device, load)
    elif run.op:
        report_op(measure_op(run, device), run, device, load)
    else:
        report(measure(run, device), run, device, load)
    from mmc2f.ops import dispatch
    for line in dispatch.choices():
        print(line)
