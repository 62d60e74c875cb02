#!/usr/bin/env bash
# What dist_train.sh and dist_test.sh share: run tools/TOOL on torchrun with
# GPUS processes on this node and --launcher pytorch.
#   bash tools/torchrun.sh TOOL GPUS [TOOL args]
# Several machines: NNODES, NODE_RANK, MASTER_ADDR and MASTER_PORT (or PORT).
set -euo pipefail
TOOL=$1
GPUS=$2
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-${MASTER_PORT:-29500}}" \
    --nproc_per_node="$GPUS" \
    "$(dirname "$0")/$TOOL" "${@:3}" --launcher pytorch
