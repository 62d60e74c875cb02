# Copyright (c) mmc2f contributors. All rights reserved.
"""Evaluate a checkpoint with any mmc2f config (COCO AP for detection, mIoU
for segmentation, top-1 for ImageNet), with MMDetection's CLI.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
        [--show-dir DIR] [--tta] [--cfg-options k=v ...] [--launcher pytorch]
"""
import argparse
import sys

from mmc2f.checkpoint import CheckpointLoadError, check_trained_checkpoint
from mmc2f.toolkit.cli import (SCOPES, add_common_args, build_runner,
                               load_config, run_tool)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out',
        help='dump the predictions: a .pkl file (detection, '
        'classification) or a directory of label maps (segmentation)')
    parser.add_argument(
        '--show-dir',
        help='save images with the predictions drawn on them into this '
        'directory (inside the work dir when relative)')
    parser.add_argument('--tta', action='store_true',
                        help="test-time augmentation from the config's "
                        'tta_model and tta_pipeline')
    add_common_args(parser)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    scope = SCOPES[cfg.default_scope]
    if args.show_dir:
        scope['show_dir'](cfg, args.show_dir)
    if args.out:
        scope['out'](cfg, args.out)
    if args.tta:
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            # mmdet's DetTTAModel merges boxes only, never instance masks.
            sys.exit(f'error: --tta needs tta_model and tta_pipeline in '
                     f'{args.config}. The UperNet configs have them '
                     "(MMSegmentation's multi-scale + flip test); the Mask "
                     'R-CNN and ImageNet configs test at one scale, as the '
                     'paper does')
        cfg.model = dict(**cfg.tta_model, module=cfg.model)
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    runner = build_runner(
        cfg, checks=not args.skip_checks, loops=('test', ))
    # The runner loads it with strict=False: a wrong file would be tested.
    try:
        check_trained_checkpoint(runner.model, args.checkpoint)
    except CheckpointLoadError as error:
        sys.exit(f'error: {error}')
    runner.test()


if __name__ == '__main__':
    run_tool(main)
