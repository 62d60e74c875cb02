# Copyright (c) mmc2f contributors. All rights reserved.
"""The newcomer's first run: no download, a few minutes on 2 CPU cores.

Generates a small COCO-format and ADE20k-format set of coloured shapes,
trains a Conv2Former-N Mask R-CNN and a Conv2Former-N UperNet on them
(the paper's configs, scaled down from the command line the way
``tools/train.py --cfg-options`` does), evaluates them (COCO box/mask AP,
mIoU) and draws their predictions.

    python tools/demo.py [--out-dir outputs/demo] [--det-epochs 16]
        [--seg-iters 200]
"""
import argparse
import json
import os.path as osp
import time
from typing import Dict

import mmengine
from mmengine.config import Config

from mmc2f.toolkit.synthetic_data import make_ade_shapes, make_coco_shapes
from mmc2f.toolkit.overrides import (SHORT_RUN, SMALL_MASK_RCNN, SMALL_UPERNET,
                                     Overrides, ade_overrides, coco_overrides,
                                     epoch_schedule)
from mmc2f.toolkit.synthetic_data import SHAPES
from mmc2f.toolkit.cli import SCOPES, build_runner

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DET_CONFIG = ('configs/mask_rcnn/'
              'mask-rcnn_conv2former-n_fpn_amp-ms-crop-3x_coco.py')
SEG_CONFIG = ('configs/upernet/'
              'upernet_conv2former-t_8xb2-amp-160k_ade20k-512x512.py')
# UperNet's poly decay starts where the short run's linear warm-up ends.
WARMUP = SHORT_RUN['param_scheduler.0.end']


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out-dir', default='outputs/demo')
    parser.add_argument('--det-epochs', type=int, default=16,
                        help='Mask R-CNN epochs over the training images')
    parser.add_argument('--seg-iters', type=int, default=200,
                        help='UperNet iterations')
    parser.add_argument('--num-train', type=int, default=64)
    parser.add_argument('--num-val', type=int, default=16)
    args = parser.parse_args()
    # Checked before the detector trains for minutes, not after.
    for name in ('det_epochs', 'num_train', 'num_val'):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.seg_iters <= WARMUP:
        parser.error(f'--seg-iters must exceed the {WARMUP}-iteration '
                     f'warm-up: at least {WARMUP + 1}')
    return args


def train_and_test(config: str, overrides: Overrides, work_dir: str,
                   checkpoint: str) -> Dict[str, float]:
    """Train with the overrides, then test the last checkpoint and draw its
    predictions into ``work_dir/vis``; the test metrics."""
    cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.merge_from_dict(overrides)
    cfg.work_dir = work_dir
    cfg.launcher = 'none'
    build_runner(cfg.copy(), loops=('train', )).train()

    cfg.load_from = osp.join(work_dir, checkpoint)
    SCOPES[cfg.default_scope]['show_dir'](cfg, osp.join(work_dir, 'vis'))
    return build_runner(cfg, loops=('test', )).test()


def picture_dirs(work_dir: str) -> str:
    """Where the test run drew its pictures (mmseg's visualizer may keep the
    training run's log directory in the same process)."""
    dirs = {
        osp.dirname(osp.join(work_dir, f))
        for f in mmengine.scandir(work_dir, ('.jpg', '.png'), recursive=True)
    }
    return ', '.join(sorted(dirs)) or 'none'


def main() -> None:
    args = parse_args()
    out = osp.abspath(args.out_dir)
    start = time.time()

    print(f'[demo] generating data under {out}/data')
    coco = make_coco_shapes(osp.join(out, 'data', 'coco'), args.num_train,
                            args.num_val)
    ade = make_ade_shapes(osp.join(out, 'data', 'ade'), args.num_train,
                          args.num_val)

    print(f'[demo] Mask R-CNN, Conv2Former-N, {args.det_epochs} epochs')
    det_cfg = Config.fromfile(osp.join(ROOT, DET_CONFIG))
    det = train_and_test(
        DET_CONFIG,
        dict(coco_overrides(det_cfg, coco, SHAPES, scale_factor=0.2),
             **SHORT_RUN, **SMALL_MASK_RCNN,
             **epoch_schedule(det_cfg, args.det_epochs), **{
                 'default_hooks.checkpoint.interval': args.det_epochs,
                 'train_dataloader.batch_size': 4,
             }),
        osp.join(out, 'mask_rcnn'), f'epoch_{args.det_epochs}.pth')

    print(f'[demo] UperNet, Conv2Former-N, {args.seg_iters} iterations')
    seg_cfg = Config.fromfile(osp.join(ROOT, SEG_CONFIG))
    seg = train_and_test(
        SEG_CONFIG,
        dict(ade_overrides(seg_cfg, ade['data_root'], scale_factor=0.25),
             **SHORT_RUN, **SMALL_UPERNET, **{
                 'param_scheduler.1.begin': WARMUP,
                 'param_scheduler.1.end': args.seg_iters,
                 'train_cfg.max_iters': args.seg_iters,
                 'train_cfg.val_begin': args.seg_iters + 1,  # test only
                 'default_hooks.checkpoint.interval': args.seg_iters,
                 'train_dataloader.batch_size': 4,
             }), osp.join(out, 'upernet'), f'iter_{args.seg_iters}.pth')

    summary = dict(
        mask_rcnn={
            k: float(det[f'coco/{k}'])
            for k in ('bbox_mAP', 'bbox_mAP_50', 'segm_mAP', 'segm_mAP_50')
        },
        upernet={k: float(seg[k])
                 for k in ('mIoU', 'mAcc', 'aAcc')},
        minutes=round((time.time() - start) / 60, 1))
    with open(osp.join(out, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    print(f'''
[demo] done in {summary["minutes"]} min
  Mask R-CNN  bbox mAP {summary["mask_rcnn"]["bbox_mAP"]:.3f}  \
mask mAP {summary["mask_rcnn"]["segm_mAP"]:.3f}
  UperNet     mIoU {summary["upernet"]["mIoU"]:.2f}  \
(background + {len(SHAPES)} shape classes present; 150 in the model)
  data        {out}/data
  checkpoints {out}/mask_rcnn, {out}/upernet
  pictures    {picture_dirs(osp.join(out, 'mask_rcnn'))}
              {picture_dirs(osp.join(out, 'upernet'))}
  metrics     {out}/summary.json''')


if __name__ == '__main__':
    main()
