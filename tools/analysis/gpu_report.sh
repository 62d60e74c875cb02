#!/usr/bin/env bash
# The GPU measurements in one command, written to one markdown report:
#
#   bash tools/analysis/gpu_report.sh [REPORT.md]            # on a GPU machine
#   bash tools/analysis/gpu_report.sh --dry-run [REPORT.md]  # the same steps on
#                                    # the CPU at toy sizes (the tests run it)
#
# Steps, each with a time limit (60 + 60 + 120 + 150 + 150 s: at most 9 minutes,
# under a 10-minute call) on a machine that already has the environment
# (tools/setup_env.sh and its cached wheels); a step that fails or runs out of
# time is recorded and the next runs:
#   1. the set-up: versions, the GPU, CUDA ops of mmcv, the libraries' models;
#   2. the Triton kernels' registers, spills and instruction mix, compiled for
#      this GPU (tools/analysis/kernel_report.py);
#   3. dwconv_modulate forward and backward per stage of Conv2Former-T at batch
#      128 under float16 autocast, against its floors: cuDNN channels-last,
#      cuDNN with benchmark=True, PyTorch's NCHW kernel and Triton
#      (tools/analysis/benchmark.py --op);
#   4. the T backbone's inference and 5. its train step at batch 128 with AMP,
#      channels last, against ConvNeXt-T, Swin-T, the released forward and
#      torch.compile, with peak memory (ratios against ConvNeXt-T); the choices
#      of backend='auto' follow each table.
# PYTHON (default: .venv/bin/python where it exists, else python) runs them.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then
  DRY=1
  shift
fi
REPORT="${1:-gpu_report.md}"
if [[ -z "${PYTHON:-}" ]]; then
  PYTHON=python
  [[ -x .venv/bin/python ]] && PYTHON=.venv/bin/python
fi

if (( DRY )); then  # every command, at its smallest
  DEVICE=(--device cpu)
  SHAPE=(--shape 1 3 32 32)
  TIMING=(--repeats 1 --warmup 1)
  MODELS=(conv2former-t)
  BASELINE=conv2former-t
  KERNELS=(--targets 90 --kernels forward)
else
  DEVICE=(--device cuda --amp)
  SHAPE=(--shape 128 3 224 224)
  TIMING=(--repeats 10 --warmup 3)
  MODELS=(convnext-t conv2former-t conv2former-t+unfused swin-t released-t
          conv2former-t+compile convnext-t+compile)
  BASELINE=convnext-t
  KERNELS=(--targets 80 90)
fi

failures=0
# step TITLE SECONDS COMMAND...: the command's output under a heading.
step() {
  local title="$1" limit="$2"
  shift 2
  printf '\n## %s\n\n`%s`\n\n' "$title" "$*" >>"$REPORT"
  local start=$SECONDS
  timeout "$limit" "$@" >>"$REPORT" 2>"$REPORT.err"
  local status=$?
  if (( status != 0 )); then
    failures=$((failures + 1))
    printf '\n**failed** (exit %s%s); its last errors:\n\n```\n%s\n```\n' \
      "$status" "$( (( status == 124 )) && echo ", over ${limit} s")" \
      "$(tail -n 20 "$REPORT.err")" >>"$REPORT"
  fi
  printf '\n(%s s)\n' "$((SECONDS - start))" >>"$REPORT"
  rm -f "$REPORT.err"
  echo "[gpu_report] $title: exit $status, $((SECONDS - start)) s" >&2
}

printf '# mmc2f GPU report\n\n%s, commit %s%s\n' "$(date -u '+%F %T UTC')" \
  "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  "$( (( DRY )) && echo ', DRY RUN on the CPU at toy sizes: no number here is a measurement')" \
  >"$REPORT"

step 'Set-up' 60 "$PYTHON" - "$DRY" <<'PY'
import sys
import torch
dry = sys.argv[1] == '1'
print('```')
print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'cuDNN',
      torch.backends.cudnn.version())
try:
    import triton
    print('triton', triton.__version__)
except ImportError:
    print('triton: not installed (the Triton backend is off)')
if not dry:
    assert torch.cuda.is_available(), 'no CUDA device'
    print(torch.cuda.get_device_name(), 'capability',
          torch.cuda.get_device_capability())
import mmcv, mmdet, mmengine, mmpretrain, mmseg
print('mmengine', mmengine.__version__, 'mmcv', mmcv.__version__, 'mmdet',
      mmdet.__version__, 'mmseg', mmseg.__version__, 'mmpretrain',
      mmpretrain.__version__)
from mmcv.ops import nms, roi_align
device = 'cpu' if dry else 'cuda'
boxes = torch.tensor([[0., 0, 10, 10], [1, 1, 11, 11]], device=device)
kept = nms(boxes, torch.tensor([.9, .8], device=device), .5)[1]
assert kept.tolist() == [0], kept
feat = torch.arange(16., device=device).view(1, 1, 4, 4)
rois = torch.tensor([[0., 0, 0, 3, 3]], device=device)
print('mmcv ops on', device, ': nms ok, roi_align',
      roi_align(feat, rois, (1, 1), 1., 0, 'avg', True).flatten().tolist())
import mmdet.models, mmpretrain.models, mmseg.models  # noqa: F401
print('mmdet, mmseg and mmpretrain models import')
print('```')
PY

step 'Triton kernels: registers, spills, instruction mix' 60 \
  "$PYTHON" tools/analysis/kernel_report.py "${KERNELS[@]}"
step 'dwconv_modulate per stage of Conv2Former-T: forward and backward against the floors' 120 \
  "$PYTHON" tools/analysis/benchmark.py --op tiny "${SHAPE[@]}" "${DEVICE[@]}" \
  "${TIMING[@]}" --markdown
step 'Inference throughput' 150 \
  "$PYTHON" tools/analysis/benchmark.py --models "${MODELS[@]}" --baseline "$BASELINE" \
  "${SHAPE[@]}" "${DEVICE[@]}" --channels-last "${TIMING[@]}" --markdown
step 'Train step and peak memory' 150 \
  "$PYTHON" tools/analysis/benchmark.py --models "${MODELS[@]}" --baseline "$BASELINE" \
  "${SHAPE[@]}" "${DEVICE[@]}" --channels-last --train "${TIMING[@]}" --markdown

echo "[gpu_report] $REPORT written, $failures step(s) failed" >&2
exit $(( failures > 0 ))
