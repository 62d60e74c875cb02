# Copyright (c) mmc2f contributors. All rights reserved.
"""What ``tools/`` runs around the library: command-line plumbing, the data
and config checks, the training check, synthetic data, the checkpoint
converter, the benchmark harness and the deployment export.

``import mmc2f`` (what ``custom_imports=dict(imports=['mmc2f'])`` does) never
imports this package: a config that only builds a model loads none of it.
"""
