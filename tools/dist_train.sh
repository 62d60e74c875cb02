#!/usr/bin/env bash
# Distributed training on torchrun: GPUS processes on this node.
#   bash tools/dist_train.sh CONFIG GPUS [train.py args]
# Several machines: run it on each with NNODES, NODE_RANK, MASTER_ADDR (and
# MASTER_PORT) set, e.g. NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 ...
exec bash "$(dirname "$0")/torchrun.sh" train.py "$2" "$1" "${@:3}"
