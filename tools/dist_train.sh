#!/usr/bin/env bash
# Distributed training on torchrun: GPUS processes on this node.
#   bash tools/dist_train.sh CONFIG GPUS [train.py args]
# Several machines: run it on each with NNODES, NODE_RANK, MASTER_ADDR (and
# MASTER_PORT) set, e.g. NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 ...
set -euo pipefail
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-${MASTER_PORT:-29500}}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}

exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$(dirname "$0")/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
