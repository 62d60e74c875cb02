#!/usr/bin/env bash
# One-command set-up of the mmc2f environment (torch, mmcv 2.1.0 with compiled ops,
# mmengine, mmdet, mmsegmentation, mmpretrain and mmc2f itself).
#
#   bash tools/setup_env.sh              # creates ./.venv (or uses the active venv/conda env)
#   MMC2F_VENV=/path/env bash tools/setup_env.sh
#
# Why it is a script and not a requirements file: mmcv 2.1.0 ships on PyPI only as source, must
# be compiled against the torch that is installed, and pip's wheel cache would happily reuse an
# mmcv built against another torch. An mmcv 2.1.0 whose ops already run with the installed
# torch is kept (e.g. OpenMMLab's prebuilt wheel); otherwise we compile once per (torch, CUDA,
# Python, build recipe) and keep the wheel under a key that names them. What else the
# environment has is kept too, where the requirements allow its version.
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
BASE="${PYTHON:-python3}"
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating virtual environment $VENV"
  # A Python that already has torch (a GPU image's CUDA build, often offline) lends its packages
  # to the new environment, as --system-site-packages would, less what the stack cannot be
  # imported beside (below); its pip and setuptools too, where it has pip. The environment
  # records the Python it sees.
  if "$BASE" -c 'import torch' 2>/dev/null; then
    if "$BASE" -c 'import pip' 2>/dev/null; then
      "$BASE" -m venv --without-pip "$VENV"
      # The base's pip, run by this environment's Python, installs here.
      for name in pip pip3; do
        printf '#!/bin/sh\nexec "%s/bin/python" -m pip "$@"\n' "$(cd "$VENV" && pwd)" >"$VENV/bin/$name"
        chmod +x "$VENV/bin/$name"
      done
    else
      "$BASE" -m venv "$VENV"
    fi
    "$BASE" -c 'import sys; print(sys.executable)' >"$VENV/mmc2f-base-python"
  else
    "$BASE" -m venv "$VENV"
  fi
fi
VENV="$(cd "$VENV" && pwd)"  # absolute: the paths below are written into files
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)
# The tested Python; torch 2.14.1 needs >= 3.10 and the lock file's versions (numpy 2.4.6, ...) 3.11.
"$PY" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null \
  || die "Python >= 3.11 is required, $PY is $("$PY" -V 2>&1); create the environment with \
another one: remove $VENV if this script made it, then e.g. PYTHON=python3.11 bash \
tools/setup_env.sh (an environment that already has torch, mmcv 2.1.0 and the OpenMMLab \
libraries needs only: pip install -e .)"
# The base Python's package folders are added after the environment's own, as
# --system-site-packages adds them, each made anew at each run. A folder holding transformers >= 5
# is seen through a view of symbolic links without it: mmpretrain 1.2.0 imports its multimodal
# models wherever transformers >= 4.28 is installed, and they need names that transformers 5
# removed. The folders and views lie outside the environment, so pip never uninstalls (deletes)
# the base's files, as it does nothing outside an environment; a package added to the base later
# is seen at once, except in a view (run this script again).
if [[ -f "$VENV/mmc2f-base-python" ]]; then
  BASE_PY="$(cat "$VENV/mmc2f-base-python")"
  [[ -x "$BASE_PY" ]] || die "$VENV was made to see the packages of $BASE_PY, which no longer \
exists: remove $VENV and run this script again"
  VENV_SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  "$BASE_PY" - "$(dirname "$VENV")/.mmc2f-base-site/$(basename "$VENV")" "$VENV_SITE" <<'PY' \
    || die "could not add the packages of $BASE_PY"
import os, re, shutil, site, sys, tempfile
from importlib.metadata import version
views, venv_site = sys.argv[1:]
def major(name):
    try:
        return int(re.match(r'\d+', version(name)).group())
    except Exception:  # not installed, or an odd version string
        return 0
hidden = {'transformers'} if major('transformers') >= 5 else set()
def is_hidden(entry):  # the package or module, and its metadata
    return any(entry == name or entry.startswith(name + '.') or (
        entry.startswith(name + '-') and entry.endswith(('.dist-info', '.egg-info')))
        for name in hidden)
folders = site.getsitepackages() + [site.getusersitepackages()] * bool(site.ENABLE_USER_SITE)
folders = [f for f in folders if os.path.isdir(f)]
viewed = [i for i, f in enumerate(folders) if any(map(is_hidden, os.listdir(f)))]
# New views are made beside the old ones, then put in their place.
staged = None
if viewed:
    os.makedirs(os.path.dirname(views), exist_ok=True)
    staged = tempfile.mkdtemp(prefix='.staged-', dir=os.path.dirname(views))
lines = []
for i, folder in enumerate(folders):
    if i in viewed:
        os.makedirs(os.path.join(staged, str(i)))
        for entry in os.listdir(folder):
            if not is_hidden(entry):
                os.symlink(os.path.join(folder, entry), os.path.join(staged, str(i), entry))
        folder = os.path.join(views, str(i))
    lines.append(f'import site; site.addsitedir({folder!r})')
shutil.rmtree(views, ignore_errors=True)
if staged:
    os.rename(staged, views)
with open(os.path.join(venv_site, 'zz-mmc2f-base-site.pth'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
for name in sorted(hidden):
    print(f'[setup] {sys.executable} has {name} {version(name)}, which the OpenMMLab stack '
          'cannot be imported beside: this environment sees its other packages, not it',
          file=sys.stderr)
PY
  log "packages of $BASE_PY seen from $VENV"
fi
log "environment: $VENV ($("$PY" -V 2>&1))"

# transformers >= 5 in the environment itself (one this script made sees the base's packages
# without it): `import mmpretrain.models` fails (TypeError), and with it MMDetection's models and
# the ConvNeXt configs. Refused before anything is installed.
transformers="$("$PY" -c 'from importlib.metadata import version
try: print(version("transformers"))
except Exception: pass')"
if [[ "${transformers%%.*}" =~ ^[0-9]+$ ]] && (( ${transformers%%.*} >= 5 )); then
  die "transformers $transformers is installed, and mmpretrain 1.2.0 cannot be imported beside \
transformers >= 5 (its BLIP code needs names that transformers 5 removed; MMDetection's models \
import it too). Install transformers<5 here (pip install 'transformers<5') or uninstall it, and \
run this script again; or let it make an environment that sees this one's packages but not its \
transformers: MMC2F_VENV=NEW_FOLDER PYTHON=$PY bash tools/setup_env.sh"
fi

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

# Pins for what the environment lacks: the lock file's versions and the build tools'; what it
# has is kept unless a requirement rules its version out. torch and torchvision stay as found
# or installed above, so that no dependency swaps them.
PINS="$VENV/.mmc2f-pins.txt"
"$PY" - "$ROOT/requirements/build.txt" "$ROOT/requirements/lock.txt" >"$PINS" <<'PY'
import re, sys, warnings
from importlib.metadata import PackageNotFoundError, version
def name(pin):
    return re.split(r'[=<>!~;\[ ]', pin, maxsplit=1)[0]
# The build tools (requirements/build.txt), then the lock file.
pins = [pin for path in sys.argv[1:] for pin in
        (line.split('#')[0].strip() for line in open(path)) if pin]
for torch_name in ('torch', 'torchvision'):
    print(f'{torch_name}=={version(torch_name)}')
def release(text):
    return tuple(int(n) for n in re.findall(r'\d+', text)[:3])
# Before pkg_resources is imported: it puts setuptools' vendored packages (platformdirs,
# packaging, ...) on sys.path, where they would pass for installed ones.
missing = []
for pin in pins:
    try:
        version(name(pin))
    except PackageNotFoundError:
        missing.append(pin)
# setuptools is special: one older than the pin, or without pkg_resources, is replaced.
setuptools = next(pin for pin in pins if name(pin) == 'setuptools')
try:
    warnings.simplefilter('ignore')  # pkg_resources' deprecation notice
    import pkg_resources  # noqa: F401
    outdated = release(version('setuptools')) < release(setuptools)
except ImportError:  # no setuptools, or >= 82
    outdated = True
print('\n'.join(dict.fromkeys([setuptools] * outdated + missing)))
PY

# mmengine's wheel requires opencv-python. Where opencv-python-headless provides cv2 instead
# (servers, Docker images), pip would install a second OpenCV over the same files. There each
# package is installed without its dependencies: the lock file's missing pins, which are their
# closure, less opencv-python; `pip check` then shows what else is off.
HEADLESS_ONLY="$("$PY" -c '
from importlib.metadata import PackageNotFoundError, version
try:
    version("opencv-python")
except PackageNotFoundError:
    try:
        print(version("opencv-python-headless"))
    except PackageNotFoundError:
        pass
')"
install_pinned() {
  if [[ -n "$HEADLESS_ONLY" ]]; then
    "${PIP[@]}" install -q --no-deps \
      -r <(grep -vE '^(torch|torchvision|opencv-python)==' "$PINS") "$@"
  else
    "${PIP[@]}" install -q -c "$PINS" "$@"
  fi || die "pip could not install $* (its error is above)"
}
[[ -z "$HEADLESS_ONLY" ]] \
  || log "keeping opencv-python-headless $HEADLESS_ONLY: packages go in without pip's resolver"

# 3. mmcv 2.1.0 with compiled ops. A working one is kept, whoever installed it (this script,
# OpenMMLab's prebuilt wheels, conda); otherwise a wheel is compiled once per (torch build,
# CUDA, Python, build recipe) and cached.
# CUDA ops are built with a GPU, or without one (a cluster's login node) when FORCE_CUDA=1, as
# mmcv's own build reads it; either needs a CUDA torch and nvcc where torch's extension builder
# looks (CUDA_HOME, the PATH, /usr/local/cuda). nvcc compiles for the GPU architectures of
# TORCH_CUDA_ARCH_LIST, else of the visible GPUs (without a GPU the list is required): they
# are part of the key, so a wheel for one GPU type is never reused on another.
# torch takes the toolkit to be the folder above the nvcc on the PATH; where that nvcc is a wrapper
# (a script in /usr/local/bin that runs the real one) it would be /usr/local, without CUDA's
# headers. nvcc itself names its toolkit.
if [[ -z "${CUDA_HOME:-}" ]] && command -v nvcc >/dev/null; then
  top="$(nvcc --dryrun -c -x cu /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1)"
  if [[ -n "$top" && -f "$top/include/cuda_runtime_api.h" ]]; then
    CUDA_HOME="$(cd "$top" && pwd)"
    export CUDA_HOME
  fi
fi
read -r TORCH_KEY WITH_CUDA CUDA_ARCHES < <("$PY" - <<'PY'
import os, re, shutil, sys, torch
from torch.utils.cpp_extension import CUDA_HOME
forced = os.environ.get('FORCE_CUDA') == '1'
nvcc = bool(CUDA_HOME) and os.path.isfile(os.path.join(CUDA_HOME, 'bin', 'nvcc'))
cuda = torch.version.cuda if torch.cuda.is_available() or forced else None
visible = sorted({'%d.%d' % torch.cuda.get_device_capability(i)
                  for i in range(torch.cuda.device_count())})
arches = os.environ.get('TORCH_CUDA_ARCH_LIST', '').strip()
if arches == 'native':  # torch's spelling of "the visible GPUs'"
    arches = ';'.join(visible)
if forced and torch.version.cuda is None:
    sys.exit(f'FORCE_CUDA=1 asks for mmcv CUDA ops, but torch {torch.__version__} is a '
             'CPU-only build: install a CUDA build of torch (or unset FORCE_CUDA)')
if forced and not nvcc:
    sys.exit(f'FORCE_CUDA=1 asks for mmcv CUDA ops, but there is no nvcc in CUDA_HOME '
             f'({CUDA_HOME}): install the CUDA toolkit {torch.version.cuda} or set CUDA_HOME '
             'to it (or unset FORCE_CUDA)')
if forced and not (arches or visible):
    sys.exit('FORCE_CUDA=1 without a visible GPU needs the GPUs to compile for: set '
             'TORCH_CUDA_ARCH_LIST, e.g. "8.0;9.0" for A100 and H100')
if cuda and not nvcc:
    where = f'no nvcc in CUDA_HOME ({CUDA_HOME})' if CUDA_HOME else 'no nvcc (CUDA_HOME, PATH)'
    print(f'[setup] warning: a GPU is visible but there is {where}: mmcv gets CPU ops only, '
          'and detection on the GPU fails in RoIAlign. Install the CUDA toolkit '
          f'{torch.version.cuda} (or set CUDA_HOME to it) and run this script again.',
          file=sys.stderr)
    cuda = None
if cuda and not os.path.isfile(os.path.join(CUDA_HOME, 'include', 'cuda_runtime_api.h')):
    sys.exit(f'CUDA_HOME ({CUDA_HOME}) has nvcc but not the CUDA headers '
             '(include/cuda_runtime_api.h): set CUDA_HOME to the CUDA toolkit '
             f'{torch.version.cuda} (e.g. /usr/local/cuda) and run this script again')
arches = re.split(r'[;\s]+', arches) if arches else visible
# An architecture-specific target (9.0a; 10.0f, a family's) gains mmcv nothing, whose kernels
# use none of those features, and a build for 9.0a failed its op check on an H200 where one for
# 9.0 worked: mmcv is built for the plain architecture, which runs on the same GPUs.
plain = list(dict.fromkeys(re.sub(r'^(\d+\.\d+)[af]', r'\1', a) for a in arches))
if cuda and plain != list(dict.fromkeys(arches)):
    print(f"[setup] building mmcv's CUDA ops for {';'.join(plain)} rather than "
          f"TORCH_CUDA_ARCH_LIST's {';'.join(arches)}: the same GPUs run them", file=sys.stderr)
arches = ';'.join(plain)
device = f'cu{cuda}-sm{re.sub(r"[^0-9A-Za-z]+", "_", arches)}' if cuda else 'cpu'
key = f"torch{torch.__version__}-{torch.version.git_version[:10]}-{device}-py{sys.version_info.major}{sys.version_info.minor}"
print(key.replace('+', '_'), int(cuda is not None), arches if cuda else '-')
PY
) || die "could not choose the mmcv build (see above)"
# The build compiles for exactly the architectures the key names.
[[ "$WITH_CUDA" == 0 ]] || export TORCH_CUDA_ARCH_LIST="$CUDA_ARCHES"

# Exit status 0 when mmcv is $MMCV_VERSION and its ops load and compute with this torch: NMS
# and RoIAlign on the CPU, and on the GPU too when CUDA ops are wanted. Otherwise the last
# line says why.
check_mmcv() {
  "$PY" - "$MMCV_VERSION" "$WITH_CUDA" <<'PY'
import sys
wanted, cuda = sys.argv[1], sys.argv[2] == '1'
try:
    import mmcv
except ImportError as error:
    sys.exit('mmcv is not installed' if getattr(error, 'name', '') == 'mmcv'
             else f'mmcv cannot be imported ({error})')
if mmcv.__version__ != wanted:
    sys.exit(f'mmcv {mmcv.__version__} is installed; mmdet 3.3 needs mmcv < 2.2.0 '
             f'and mmc2f is tested with {wanted}')
import torch
try:
    from mmcv.ops import RoIAlign, get_compiling_cuda_version, nms
    if cuda and get_compiling_cuda_version() == 'not available':
        sys.exit(f'mmcv {wanted} is installed without the CUDA ops this machine can build')
    # The GPU ops run where there is a GPU (FORCE_CUDA=1 builds them without one).
    for device in ['cpu'] + ['cuda'] * (cuda and torch.cuda.is_available()):
        boxes = torch.tensor([[0., 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]],
                             device=device)
        _, keep = nms(boxes, torch.tensor([.9, .8, .7], device=device), 0.5)
        assert keep.tolist() == [0, 2], f'nms on {device} kept {keep.tolist()}'
        # Over the whole map of 4y+x, bilinear samples average to the map's mean.
        feat = torch.arange(16., device=device).view(1, 1, 4, 4)
        rois = torch.tensor([[0., 0, 0, 4, 4]], device=device)
        pooled = RoIAlign((1, 1), 1.0, sampling_ratio=2, aligned=True)(feat, rois)
        assert abs(pooled.item() - 7.5) < 1e-4, f'RoIAlign on {device}: {pooled.item()}'
except Exception as error:  # an ABI mismatch shows as ImportError, OSError, ...
    sys.exit(f'mmcv {wanted} is installed but its compiled ops do not work with torch '
             f'{torch.__version__}: {type(error).__name__}: {error}')
PY
}

# Downloads the mmcv source and compiles a wheel into $1. Its text (`declare -f`) is hashed
# into the cache key below, so a changed recipe never reuses a wheel of an older one.
build_mmcv_wheel() {
  local wheel_dir="$1" build src start pid step
  # mmcv 2.1.0's setup.py imports pkg_resources (see requirements/build.txt).
  install_pinned "setuptools<82" wheel ninja
  build="$(mktemp -d)"
  trap "rm -rf '$build'" EXIT  # expanded now: the trap runs after this function's locals are gone
  "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$build" \
    || die "could not download the mmcv $MMCV_VERSION source"
  tar -xzf "$build/mmcv-$MMCV_VERSION.tar.gz" -C "$build"
  src="$build/mmcv-$MMCV_VERSION"
  # torch >= 2.14's headers require C++20; mmcv's setup.py hard-codes -std=c++17.
  if grep -rqs "C++20 or later compatible compiler is required" "$("$PY" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "include"))')"; then
    sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
    log "torch needs C++20: patched mmcv's -std flag"
  fi
  # No debug info: Python's CFLAGS carry -g, which nearly doubles each file's compile time and
  # makes _ext 40 times larger; the machine code is the same. Python's flags (-O3, -DNDEBUG)
  # are restated: setuptools 69 appends $CFLAGS to them, setuptools 80 replaces them with it.
  local py_cflags
  py_cflags="$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("CFLAGS") or "")')"
  export CFLAGS="$py_cflags ${CFLAGS:-} -g0"
  # With GCC, torch's headers (7 of the 8 s each file takes) are parsed once: the compiler
  # wrapper below precompiles mmcv's pytorch_cpp_helper.hpp with the flags of the build's
  # first compile and puts it first on the include path. GCC uses it where that header is
  # the first include (63 of the 77 files) and its flags and macros match, otherwise reads
  # the header as usual; the object code is identical. The .gch (~0.5 GB) lives in $build.
  # torch's CUDA headers include the CUDA libraries' (cusparse.h, cublas_v2.h, ...). A toolkit
  # without them (nvcc alone) is completed by the nvidia-* packages that torch's wheel brought;
  # CPATH comes after the -I folders, so a complete toolkit's own headers still win.
  if ((WITH_CUDA)); then
    local nvidia_includes
    nvidia_includes="$("$PY" -c 'import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit
print(os.pathsep.join(sorted(d for p in nvidia.__path__ for d in glob.glob(os.path.join(p, "*", "include")))))')"
    [[ -z "$nvidia_includes" ]] || export CPATH="${CPATH:+$CPATH:}$nvidia_includes"
  fi
  local cxx="${CXX:-c++}"
  if command -v flock >/dev/null && $cxx -v 2>&1 | grep -q '^gcc version'; then
    mkdir "$build/pch"
    cat >"$build/pch-cxx" <<'SH'
#!/usr/bin/env bash
set -u
real=($MMC2F_REAL_CXX)
[[ " $* " == *" -c "* ]] || exec "${real[@]}" "$@"  # linking, -v, ...
gch="$MMC2F_PCH_DIR/pytorch_cpp_helper.hpp.gch"
if [[ ! -e "$gch" && ! -e "$gch.failed" ]]; then
  flags=() skip=0
  for arg in "$@"; do  # this compile's flags, without its source, object and depfile
    if ((skip)); then skip=0; continue; fi
    case "$arg" in
      -o|-MF) skip=1 ;;
      -c|-MMD|*.cpp|*.cc|*.cxx) ;;
      *) flags+=("$arg") ;;
    esac
  done
  exec 9>"$MMC2F_PCH_DIR/lock"
  flock 9
  if [[ ! -e "$gch" && ! -e "$gch.failed" ]]; then
    if "${real[@]}" "${flags[@]}" -x c++-header "$MMC2F_PCH_HEADER" -o "$gch.tmp"; then
      mv "$gch.tmp" "$gch"
    else
      touch "$gch.failed"  # compile without it
    fi
  fi
  exec 9>&-
fi
exec "${real[@]}" -I"$MMC2F_PCH_DIR" -Winvalid-pch "$@"
SH
    chmod +x "$build/pch-cxx"
    export MMC2F_REAL_CXX="$cxx" MMC2F_PCH_DIR="$build/pch" CXX="$build/pch-cxx" \
      MMC2F_PCH_HEADER="$src/mmcv/ops/csrc/common/pytorch_cpp_helper.hpp"
  fi
  log "compiling mmcv $MMCV_VERSION ops for $TORCH_KEY (CUDA ops: $WITH_CUDA, $JOBS jobs; ~3 min on 2 cores without CUDA)"
  mkdir -p "$wheel_dir.partial"
  # The build log goes to a file; its ninja '[n/N]' lines are the progress shown.
  (cd "$src" && MMCV_WITH_OPS=1 FORCE_CUDA="$WITH_CUDA" MAX_JOBS="$JOBS" \
    "${PIP[@]}" wheel -v --no-deps --no-build-isolation --no-cache-dir -w "$wheel_dir.partial" . \
    >"$build/build.log" 2>&1) &
  pid=$!
  start=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    sleep 15
    step="$(grep -oE '\[[0-9]+/[0-9]+\]' "$build/build.log" | tail -1 || true)"
    log "  compiling mmcv ops: ${step:-preparing} ($((SECONDS - start)) s)"
  done
  if ! wait "$pid"; then
    tail -40 "$build/build.log" >&2
    die "mmcv build failed; full log above (last 40 lines)"
  fi
  # build.ninja joins the flags with one space; Python's CFLAGS may hold runs of them (Debian's).
  local flags
  read -ra flags <<<"$py_cflags"
  cat "$src"/build/temp*/build.ninja | tr -s ' ' | grep -F -- "${flags[*]}" >/dev/null \
    || die "mmcv was compiled without Python's flags ($py_cflags)"
  if [[ -e "$build/pch/pytorch_cpp_helper.hpp.gch.failed" ]]; then
    log "  (GCC could not precompile torch's headers; compiled without them)"
  fi
  # Publish the wheel atomically so an interrupted build is never mistaken for a finished one.
  rm -rf "$wheel_dir" && mv "$wheel_dir.partial" "$wheel_dir"
  log "mmcv built in $((SECONDS - start)) s, cached in $wheel_dir"
}

# An installed mmcv gets its own dependencies first, so that it can be imported and checked.
INSTALLED_MMCV="$("$PY" -c 'from importlib.metadata import version; print(version("mmcv"))' 2>/dev/null || true)"
if [[ -n "$INSTALLED_MMCV" ]]; then
  install_pinned "mmcv==$INSTALLED_MMCV"
fi
# check_mmcv, with why it failed in $REASON: its last line, or, where Python itself died (a crash
# in compiled code says nothing), the signal and the output before it.
mmcv_works() {
  local out status=0
  out="$(check_mmcv 2>&1)" || status=$?
  REASON="${out##*$'\n'}"
  if (( status > 128 )); then
    REASON="the check of mmcv's ops died of SIG$(kill -l $((status - 128))) (exit status $status), \
a crash in compiled code; its output: ${out:-(none)}"
  fi
  return "$status"
}

if mmcv_works; then
  log "keeping the installed mmcv $MMCV_VERSION: its ops run with torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
  log "installing mmcv $MMCV_VERSION with ops: $REASON"
  RECIPE="$(declare -f build_mmcv_wheel | sha1sum | cut -c1-8)"
  WHEEL_DIR="$CACHE/mmcv-$MMCV_VERSION/$TORCH_KEY-$RECIPE"
  if ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    log "reusing the mmcv wheel built for $TORCH_KEY from $WHEEL_DIR"
  else
    (build_mmcv_wheel "$WHEEL_DIR")  # a subshell: its CFLAGS, CXX and trap stay there
  fi
  "${PIP[@]}" install -q --force-reinstall --no-deps "$WHEEL_DIR"/mmcv-*.whl
  install_pinned "$WHEEL_DIR"/mmcv-*.whl  # its dependencies
  mmcv_works || die "the mmcv just installed does not work: $REASON"
fi

# 4. The OpenMMLab libraries, what they import without declaring, and mmc2f.
log "installing mmengine, mmdet, mmsegmentation, mmpretrain and mmc2f"
install_pinned \
  -r "$ROOT/requirements/mminstall.txt" -r "$ROOT/requirements/tests.txt" -r "$ROOT/requirements/optional.txt"
# PEP 660: setuptools >= 80 runs `setup.py develop` as a pip call with build isolation, which
# would fetch setuptools from the index again.
"${PIP[@]}" install -q --no-build-isolation --no-deps --use-pep517 -e "$ROOT"
if [[ -n "$HEADLESS_ONLY" ]]; then
  # What no resolver checked: requirements this environment does not meet, less opencv-python.
  "${PIP[@]}" check 2>&1 | grep -v "requires opencv-python, which is not installed" \
    | sed 's/^/[setup] pip check: /' || true
fi
"$PY" -c "import mmc2f, mmdet.models, mmseg.models, mmpretrain.models; from mmcv.ops import RoIAlign; \
print('mmc2f', mmc2f.__version__, 'ready')"
log "done. Activate with: source $VENV/bin/activate"
