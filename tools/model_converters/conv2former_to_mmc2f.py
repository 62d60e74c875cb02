# Copyright (c) mmc2f contributors. All rights reserved.
"""Convert an authors' released Conv2Former checkpoint to mmc2f.

    python tools/model_converters/conv2former_to_mmc2f.py SRC DST [--ema]

SRC is a timm-format file (the bare state dict, or one under 'state_dict',
'state_dict_ema' with --ema, or 'model'). DST holds ``backbone.*``,
``neck.*`` and ``head.*`` weights in ``state_dict`` and a ``meta`` with the
inferred arch: it loads into ``configs/imagenet/conv2former-*`` as is, and
into any detection or segmentation config's backbone with
``init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')``.
"""
import argparse
import sys

from mmc2f.utils.checkpoint import CheckpointLoadError
from mmc2f.utils.convert import NotAConv2FormerCheckpoint, convert_checkpoint


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='released checkpoint (timm format)')
    parser.add_argument('dst', help='output path of the mmc2f checkpoint')
    parser.add_argument('--ema', action='store_true',
                        help="convert the EMA weights ('state_dict_ema')")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    try:
        meta = convert_checkpoint(args.src, args.dst, ema=args.ema)
    except (FileNotFoundError, CheckpointLoadError,
            NotAConv2FormerCheckpoint) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    arch = meta['arch']
    print(f'Converted {args.src} -> {args.dst}: channels {arch["channels"]}, '
          f'depths {arch["depths"]}, kernel {arch["kernel_size"]}'
          f'{" (EMA)" if args.ema else ""}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
