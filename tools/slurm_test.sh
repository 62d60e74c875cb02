#!/usr/bin/env bash
# Testing on a Slurm cluster (GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS).
#   GPUS=8 bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args]
exec bash "$(dirname "$0")/srun.sh" "$1" "$2" test.py "$3" "$4" "${@:5}"
