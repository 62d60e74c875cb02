#!/usr/bin/env bash
# Distributed testing on torchrun: GPUS processes on this node.
#   bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args]
# NNODES, NODE_RANK, MASTER_ADDR and MASTER_PORT as for dist_train.sh.
exec bash "$(dirname "$0")/torchrun.sh" test.py "$3" "$1" "$2" "${@:4}"
