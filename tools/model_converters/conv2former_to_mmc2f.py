# Copyright (c) mmc2f contributors. All rights reserved.
"""Convert an authors' released Conv2Former checkpoint to mmc2f.

    python tools/model_converters/conv2former_to_mmc2f.py SRC DST [--ema]

SRC is a timm-format file (the bare state dict, or one under 'state_dict',
'state_dict_ema' with --ema, or 'model'). DST holds ``backbone.*``,
``neck.*`` and ``head.*`` weights in ``state_dict`` and a ``meta`` with the
inferred arch. The converter prints the ImageNet config(s) that DST loads
into as is (the released file's architecture, read off its tensor shapes),
and how a detection or segmentation backbone loads it:
``init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')``.
"""
import argparse
import sys
from typing import List, Optional

from mmc2f.models.backbones.conv2former import ARCH_SETTINGS
from mmc2f.checkpoint import CheckpointLoadError
from mmc2f.toolkit.convert import convert_checkpoint
from mmc2f.zoo import RELEASED, find_released, find_preset


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='released checkpoint (timm format)')
    parser.add_argument('dst', help='output path of the mmc2f checkpoint')
    parser.add_argument('--ema', action='store_true',
                        help="convert the EMA weights ('state_dict_ema')")
    return parser.parse_args()


def where_it_loads(arch: dict, num_classes: Optional[int],
                   dst: str) -> List[str]:
    """Lines naming the config(s) the converted file loads into, or, for a
    file of no released architecture, what it is and what is missing."""
    channels, depths, kernel = (arch['channels'], arch['depths'],
                                arch['kernel_size'])
    matches = find_released(channels, depths, kernel)
    preset = find_preset(channels, depths)
    lines = []
    if matches:
        lines.append(f"It has the architecture of the authors' "
                     f'{matches[0].released_as}; it loads into:')
        lines += [f'  {c.config}   ({c.title}, top-1 {c.top1})'
                  for c in matches]
        lines.append(f'Test it: python tools/test.py {matches[0].config} '
                     f'{dst}')
    else:
        released = ', '.join(sorted({
            f'{c.arch} (kernel {c.kernel_size})' for c in RELEASED}))
        lines.append(
            f'It matches no released Conv2Former (released: {released}), '
            'so no config ships for it.')
        if preset is not None:
            config = next(c.config for c in RELEASED if c.arch == preset)
            lines.append(
                f"It is the '{preset}' preset with kernel {kernel}: use "
                f'{config} with --cfg-options model.backbone.kernel_size='
                f'{kernel}')
        else:
            lines.append(
                'No preset has its channels and depths: write a config that '
                f'inherits {RELEASED[1].config} and sets model = dict('
                f'backbone=dict(arch=dict(channels={list(channels)}, '
                f'depths={list(depths)}, kernel_size={kernel})), '
                f'neck=dict(in_channels={channels[-1]}))')
    if num_classes is None:
        lines.append(
            'It holds no classifier (head.0, head.2, pred): it loads into '
            'backbones only, not into an ImageNet config')
    elif num_classes != 1000:
        lines.append(
            f'Its classifier has {num_classes} classes, the ImageNet-1k '
            'configs 1000: add --cfg-options model.head.num_classes='
            f'{num_classes}')
    backbone = (f"arch='{preset}'" if preset else
                f'arch=dict(channels={list(channels)}, depths='
                f'{list(depths)})')
    if preset is None or ARCH_SETTINGS[preset]['kernel_size'] != kernel:
        backbone += f', kernel_size={kernel}'
    lines.append(
        f'In a detection or segmentation config: backbone=dict(type='
        f"'mmc2f.Conv2Former', {backbone}, init_cfg=dict(type='Pretrained',"
        f" checkpoint='{dst}', prefix='backbone.'))")
    return lines


def main() -> int:
    args = parse_args()
    try:
        meta = convert_checkpoint(args.src, args.dst, ema=args.ema)
    except (OSError, ValueError, CheckpointLoadError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    arch = meta['arch']
    print(f'Converted {args.src} -> {args.dst}: channels {arch["channels"]}, '
          f'depths {arch["depths"]}, kernel {arch["kernel_size"]}'
          f'{" (EMA)" if args.ema else ""}')
    print('\n'.join(where_it_loads(arch, meta['num_classes'], args.dst)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
