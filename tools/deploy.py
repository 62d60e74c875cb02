# Copyright (c) mmc2f contributors. All rights reserved.
"""Export the whole model of a detection, segmentation or classification
config to ONNX and check it with ONNX Runtime against PyTorch on an image.

    python tools/deploy.py CONFIG CHECKPOINT IMAGE --work-dir DIR
        [--backend onnxruntime] [--shape H W | --dynamic] [--repeat N]
        [--threads N] [--cfg-options k=v ...]

Writes ``DIR/end2end.onnx`` (input: the data preprocessor's output; outputs:
MMDeploy's end2end ones, see docs/deployment.md) and ``DIR/parity.json``
(ONNX Runtime against PyTorch on IMAGE: ``matched_boxes``,
``max_score_diff``, ``mask_iou_min`` for detection, ``pixel_agreement`` for
segmentation, ``max_rel_err`` for classification, and both latencies,
``onnxruntime_ms`` and ``pytorch_ms``, medians of ``--repeat`` runs).
``--dynamic`` exports height and width as dynamic axes and checks a second
input size as well (``second_size``). ``DIR`` is complete once
``parity.json`` is in it; a failed run leaves none.
"""
import argparse
import json
import os.path as osp
import sys
from typing import List, Optional

from mmc2f.toolkit.cli import add_cfg_options


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Export a model to ONNX and check it against PyTorch')
    parser.add_argument('config', help='config file (detection, '
                        'segmentation or classification)')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('image', help='the image the export is traced on '
                        'and checked with')
    parser.add_argument('--work-dir', required=True,
                        help='where end2end.onnx and parity.json go')
    parser.add_argument('--backend', default='onnxruntime',
                        choices=['onnxruntime'],
                        help='the runtime that checks the export')
    size = parser.add_mutually_exclusive_group()
    size.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                      help='resize the image to H x W (instead of the test '
                      "pipeline's resizing) and export that static size")
    size.add_argument('--dynamic', action='store_true',
                      help='dynamic height and width (and batch, except for '
                      'detection); parity is checked at a second size too')
    parser.add_argument('--repeat', type=int, default=5,
                        help='runs per latency (their median)')
    parser.add_argument('--threads', type=int,
                        help='CPU threads of both runtimes (default: '
                        "theirs); 1 gives steadier latencies on a shared "
                        'machine')
    # For both runtimes, e.g. model.test_cfg.rcnn.score_thr=0.0
    add_cfg_options(parser)
    args = parser.parse_args(argv)
    if args.shape and min(args.shape) < 32:
        parser.error(f'--shape must be at least 32 x 32, got {args.shape}')
    for name in ('config', 'checkpoint', 'image'):
        if not osp.isfile(getattr(args, name)):
            parser.error(f'{name} {getattr(args, name)!r} is not a file')
    if args.repeat < 1:
        parser.error(f'--repeat must be at least 1, got {args.repeat}')
    return args


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    from mmc2f.checkpoint import CheckpointLoadError
    from mmc2f.toolkit.checks import ConfigCheckError
    from mmc2f.toolkit.deploy import ExportError, deploy
    try:
        parity = deploy(args.config, args.checkpoint, args.image,
                        args.work_dir, shape=args.shape, dynamic=args.dynamic,
                        cfg_options=args.cfg_options, repeat=args.repeat,
                        threads=args.threads)
    except (CheckpointLoadError, ConfigCheckError, ExportError) as error:
        sys.exit(f'error: {error}')
    print(json.dumps(parity, indent=2))
    print(f'Wrote {args.work_dir}/end2end.onnx and '
          f'{args.work_dir}/parity.json')


if __name__ == '__main__':
    main()
