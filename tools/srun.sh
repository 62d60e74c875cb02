#!/usr/bin/env bash
# What slurm_train.sh and slurm_test.sh share: run tools/TOOL on a Slurm
# cluster, one task per GPU (mmengine reads the SLURM_* variables).
#   GPUS=16 bash tools/srun.sh PARTITION JOB_NAME TOOL [TOOL args]
set -euo pipefail
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
# shellcheck disable=SC2086
exec srun -p "$1" \
    --job-name="$2" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="${CPUS_PER_TASK:-5}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS:-} \
    "${PYTHON:-python}" -u "$(dirname "$0")/$3" "${@:4}" --launcher=slurm
