#!/usr/bin/env bash
# One-command set-up of the mmc2f environment (torch, mmcv 2.1.0 with compiled ops,
# mmengine, mmdet, mmsegmentation, mmpretrain and mmc2f itself).
#
#   bash tools/setup_env.sh              # creates ./.venv (or uses the active venv/conda env)
#   MMC2F_VENV=/path/env bash tools/setup_env.sh
#
# Why it is a script and not a requirements file: mmcv 2.1.0 ships only as source, must be
# compiled against the torch that is installed, and pip's wheel cache would happily reuse an
# mmcv built against another torch. We compile once per (torch, CUDA, Python) and keep the
# wheel under a key that names them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MMCV_VERSION=2.1.0
TORCH_PIN="torch==2.14.1"          # used only when the environment has no torch yet
TORCHVISION_PIN="torchvision==0.29.1"
CACHE="${MMC2F_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmc2f}"
JOBS="${MAX_JOBS:-$(nproc)}"

log() { printf '\033[1m[setup %s]\033[0m %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# 1. The environment: an active venv/conda env is respected, otherwise ./.venv is created.
if [[ -n "${MMC2F_VENV:-}" ]]; then
  VENV="$MMC2F_VENV"
elif [[ -n "${VIRTUAL_ENV:-}" ]]; then
  VENV="$VIRTUAL_ENV"
elif [[ -n "${CONDA_PREFIX:-}" ]]; then
  VENV="$CONDA_PREFIX"
else
  VENV="$ROOT/.venv"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating virtual environment $VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)
"$PY" -c 'import sys; assert sys.version_info >= (3, 8), sys.version' \
  || die "Python >= 3.8 is required, $PY is $("$PY" -V 2>&1)"
log "environment: $VENV ($("$PY" -V 2>&1))"

# 2. torch: keep the user's (e.g. a CUDA build), install the pinned one only when absent.
if "$PY" -c 'import torch' 2>/dev/null; then
  log "keeping installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
  log "installing $TORCH_PIN $TORCHVISION_PIN"
  "${PIP[@]}" install "$TORCH_PIN" "$TORCHVISION_PIN"
fi
"$PY" -c 'import torchvision' 2>/dev/null || die "torch is installed in $VENV but torchvision is not \
(mmpretrain needs it). Install the torchvision release that matches your torch \
(https://github.com/pytorch/vision#installation), then run this script again."

# setuptools < 70: mmcv 2.1.0's setup.py imports pkg_resources. Pinned after torch, whose
# metadata asks for a newer one that it does not need at run time.
"${PIP[@]}" install -q "setuptools==69.5.1" "wheel==0.45.1" "ninja==1.13.0"

# 3. mmcv with compiled ops, built once per torch build / CUDA / Python.
read -r TORCH_KEY WITH_CUDA < <("$PY" - <<'PY'
import shutil, sys, torch
cuda = torch.version.cuda if (torch.cuda.is_available() and shutil.which('nvcc')) else None
key = f"torch{torch.__version__}-{torch.version.git_version[:10]}-{'cu' + cuda if cuda else 'cpu'}-py{sys.version_info.major}{sys.version_info.minor}"
print(key.replace('+', '_'), int(cuda is not None))
PY
)
WHEEL_DIR="$CACHE/mmcv-$MMCV_VERSION/$TORCH_KEY"
mmcv_ok() { "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'; from mmcv.ops import RoIAlign" 2>/dev/null; }
if mmcv_ok && [[ -f "$VENV/.mmcv-build-key" && "$(cat "$VENV/.mmcv-build-key")" == "$TORCH_KEY" ]]; then
  log "mmcv $MMCV_VERSION with ops already installed for $TORCH_KEY"
else
  if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    log "compiling mmcv $MMCV_VERSION ops for $TORCH_KEY (CUDA ops: $WITH_CUDA, $JOBS jobs; ~7 min on 2 cores)"
    BUILD="$(mktemp -d)"
    trap 'rm -rf "$BUILD"' EXIT
    "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$BUILD" \
      || die "could not download the mmcv $MMCV_VERSION source"
    tar -xzf "$BUILD"/mmcv-$MMCV_VERSION.tar.gz -C "$BUILD"
    SRC="$BUILD/mmcv-$MMCV_VERSION"
    # torch >= 2.14's headers require C++20; mmcv's setup.py hard-codes -std=c++17.
    if grep -rqs "C++20 or later compatible compiler is required" "$("$PY" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "include"))')"; then
      sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
      log "torch needs C++20: patched mmcv's -std flag"
    fi
    mkdir -p "$WHEEL_DIR.partial"
    # The build log goes to a file; its ninja '[n/N]' lines are the progress shown.
    (cd "$SRC" && MMCV_WITH_OPS=1 FORCE_CUDA="$WITH_CUDA" MAX_JOBS="$JOBS" \
      "${PIP[@]}" wheel -v --no-deps --no-build-isolation --no-cache-dir -w "$WHEEL_DIR.partial" . \
      >"$BUILD/build.log" 2>&1) &
    BUILD_PID=$!
    START=$SECONDS
    while kill -0 "$BUILD_PID" 2>/dev/null; do
      sleep 15
      step="$(grep -oE '\[[0-9]+/[0-9]+\]' "$BUILD/build.log" | tail -1 || true)"
      log "  compiling mmcv ops: ${step:-preparing} ($((SECONDS - START)) s)"
    done
    if ! wait "$BUILD_PID"; then
      tail -40 "$BUILD/build.log" >&2
      die "mmcv build failed; full log above (last 40 lines)"
    fi
    # Publish the wheel atomically so an interrupted build is never mistaken for a finished one.
    rm -rf "$WHEEL_DIR" && mv "$WHEEL_DIR.partial" "$WHEEL_DIR"
    log "mmcv built in $((SECONDS - START)) s, cached in $WHEEL_DIR"
  else
    log "reusing mmcv wheel built for $TORCH_KEY from $WHEEL_DIR"
  fi
  "${PIP[@]}" install -q --force-reinstall --no-deps "$WHEEL_DIR"/mmcv-*.whl
  echo "$TORCH_KEY" >"$VENV/.mmcv-build-key"
fi

# 4. The OpenMMLab libraries, what they import without declaring, and mmc2f, pinned by the lock file.
log "installing mmengine, mmdet, mmsegmentation, mmpretrain and mmc2f"
# The torch found or installed above is pinned so that no dependency swaps it.
KEEP="$VENV/.mmc2f-keep-torch.txt"
"$PY" - >"$KEEP" <<'PY'
from importlib.metadata import version
for name in ('torch', 'torchvision'):
    print(f'{name}=={version(name)}')
PY
"${PIP[@]}" install -q -c "$ROOT/requirements/lock.txt" -c "$KEEP" \
  -r "$ROOT/requirements/mminstall.txt" -r "$ROOT/requirements/tests.txt" -r "$ROOT/requirements/optional.txt"
"${PIP[@]}" install -q --no-build-isolation --no-deps -e "$ROOT"
# setuptools < 70 at run time too (mmengine imports pkg_resources); alone and without
# dependencies, so that pip does not trade torch for an older one that accepts it.
"${PIP[@]}" install -q --no-deps "setuptools==69.5.1"

"$PY" -c "import mmc2f, mmdet.models, mmseg.models, mmpretrain.models; from mmcv.ops import RoIAlign; \
print('mmc2f', mmc2f.__version__, 'ready')"
log "done. Activate with: source $VENV/bin/activate"
