# Copyright (c) mmc2f contributors. All rights reserved.
"""Run the checks that ``tools/train.py`` and ``tools/test.py`` run before
any work, alone: the config's variables, its data files, its data against
its classes and heads, and its neck and heads against the backbone's feature
maps.

    python tools/check_config.py CONFIG [--run {train,test}]
        [--cfg-options k=v ...]

Exits 0 with a line per check passed, or 1 with the first problem found and
its fix. The model is built without its pretrained weights.
"""
import argparse
import sys

from mmengine.config import Config

from mmc2f.toolkit.checks import (ConfigCheckError, check_config_variables,
                                  check_data, check_data_files,
                                  check_feature_channels)
from mmc2f.toolkit.cli import add_cfg_options, config_scope
from mmc2f.toolkit.config_model import build_model


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Check a config, its data and its model with mmc2f's "
        'checks, without training')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--run',
        choices=('train', 'test'),
        help='check the data of this run only (train: the training and '
        'validation data; test: the test data); both by default')
    add_cfg_options(parser)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    cfg = Config.fromfile(args.config)
    try:
        check_config_variables(cfg, args.cfg_options)
        print('config variables: data_root and classes reach the datasets')
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        config_scope(cfg, args.config)
        check_data_files(cfg, [args.run] if args.run else ['train', 'test'])
        print('data files: the annotation files and image folders exist')
        check_data(cfg)
        print('data: the classes agree with the annotations, label maps '
              'and heads')
        cfg.model.backbone.init_cfg = None  # only shapes are checked
        check_feature_channels(cfg.model, build_model(cfg))
        print("model: the neck and heads take the backbone's feature maps")
    except ConfigCheckError as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
