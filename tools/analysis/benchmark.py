# Copyright (c) mmc2f contributors. All rights reserved.
"""Latency and throughput of backbones (and whole models of configs), with
ratios against a baseline measured in the same run.

    python tools/analysis/benchmark.py \\
        --models conv2former-t released-t convnext-t swin-t \\
        --shape 1 3 800 1216 --repeats 10 --warmup 3 [--baseline released-t] \\
        [--channels-last] [--amp] [--device cpu|cuda] [--cudnn-benchmark] \\
        [--threads N] [--train [--with-cp]] [--config CFG ...] [--markdown]
    python tools/analysis/benchmark.py --floor [ARCH] [--shape N C H W] \\
        [--amp] [--channels-last] [--device cpu|cuda] [--cudnn-benchmark] \\
        [--markdown]
    python tools/analysis/benchmark.py --goals [RUN ...] [--threads N] \\
        [--markdown]

``--models`` names ``conv2former-X`` (mmc2f), ``released-X`` (the released
forward pass on the same weights), ``convnext-X`` and ``swin-X``
(mmpretrain), X one of n t s b l, with ``+cp`` for gradient checkpointing
and ``+compile`` for ``torch.compile``; ``--config`` times a config's whole
model. Before timing, each ``conv2former-X``/``released-X`` must match the
released function (the ``err`` column) or nothing is timed. ``--floor``
times the depthwise conv and the modulation of each stage of an arch
(default tiny) against the memory-bandwidth floor measured in the same run.
``--goals`` runs every performance goal of the project in one command (or
only the named runs, e.g. ``--goals gpu-floor gpu gpu-training``). What
each column means and how it is measured: the modules of
:mod:`mmc2f.toolkit.benchmark` (models, numerics, timing, memory, floor,
goals).
"""
from mmc2f.toolkit.benchmark.cli import main

if __name__ == '__main__':
    main()
