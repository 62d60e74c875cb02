# Copyright (c) mmc2f contributors. All rights reserved.
"""Train configs briefly on generated data at their own image sizes, then
test them (see :mod:`mmc2f.toolkit.train_check`).

    python tools/analysis/train_check.py CONFIG [CONFIG ...] [--iters 300]
        [--tools mmc2f|library] [--work-dir DIR] [--scale 1.0]
        [--cfg-options k=v ...]
"""
import sys

from mmc2f.toolkit.train_check import main

if __name__ == '__main__':
    sys.exit(main())
