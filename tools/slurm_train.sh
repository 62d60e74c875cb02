#!/usr/bin/env bash
# Training on a Slurm cluster (GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS).
#   GPUS=16 bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args]
exec bash "$(dirname "$0")/srun.sh" "$1" "$2" train.py "$3" --work-dir="$4" "${@:5}"
