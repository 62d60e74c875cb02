#!/usr/bin/env bash
# What tools/setup_env.sh installs besides torch, as files, for a machine without network
# access (a cluster's compute nodes, an air-gapped GPU server). On a machine with network:
#
#   bash tools/make_wheelhouse.sh DIR [--python 3.12] [NAME ...]
#
# then copy DIR over and, on the offline machine (its torch and torchvision installed):
#
#   PIP_NO_INDEX=1 PIP_FIND_LINKS=DIR bash tools/setup_env.sh
#
# DIR gets the mmcv 2.1.0 source (setup_env.sh compiles it there, against that machine's
# torch), and a Linux x86-64 wheel for CPython --python (default: this python3's) of each
# build tool (requirements/build.txt) and each pin of requirements/lock.txt. NAMEs keep only
# those packages (plus the mmcv source): the ones the offline environment lacks, since
# setup_env.sh keeps what is installed there when the requirements allow its version.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { printf '[wheelhouse] error: %s\n' "$*" >&2; exit 1; }
log() { printf '[wheelhouse] %s\n' "$*"; }

PY="${PYTHON:-python3}"
[[ $# -ge 1 && "$1" != -* ]] || die "usage: bash tools/make_wheelhouse.sh DIR [--python 3.X] [NAME ...]"
DIR="$1"
shift
TARGET="$("$PY" -c 'import sys; print(f"{sys.version_info.major}.{sys.version_info.minor}")')"
if [[ "${1:-}" == --python ]]; then
  [[ "${2:-}" =~ ^3\.[0-9]+$ ]] || die "--python takes a CPython version such as 3.12, not '${2:-}'"
  TARGET="$2"
  shift 2
fi
ONLY=("$@")
PIP=("$PY" -m pip --disable-pip-version-check)
mkdir -p "$DIR"
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT

# The pins: build tools first, then the lock file; NAMEs (any case, - or _) select.
SELECTED="$("$PY" - "$ROOT/requirements/build.txt" "$ROOT/requirements/lock.txt" "${ONLY[@]}" <<'PY'
import re, sys
build, lock, only = sys.argv[1], sys.argv[2], sys.argv[3:]
def norm(name): return re.sub(r'[-_.]+', '-', name).lower()
pins = {}
for path in (build, lock):
    for line in open(path):
        pin = line.split('#')[0].strip()
        if pin:
            pins[norm(re.split(r'[=<>!~;\[ ]', pin, maxsplit=1)[0])] = pin
unknown = [n for n in only if norm(n) not in pins]
if unknown:
    sys.exit(f'not pinned in requirements/build.txt or lock.txt: {", ".join(unknown)} '
             '(torch and torchvision come from the offline machine itself)')
wanted = {norm(n) for n in only}
print('\n'.join(p for n, p in pins.items() if not wanted or n in wanted))
PY
)" || exit 1
mapfile -t PINS <<<"$SELECTED"

PLATFORM=()
# pip matches each glibc level exactly: list them all, newest first.
for glibc in $(seq 39 -1 17); do
  PLATFORM+=(--platform "manylinux_2_${glibc}_x86_64")
done
PLATFORM+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
for pin in "${PINS[@]}"; do
  # A wheel for the target; failing that (a package published as source only), one built
  # here, which must be pure Python to serve another interpreter.
  if "${PIP[@]}" download -q --no-deps --only-binary=:all: --python-version "$TARGET" \
      --implementation cp "${PLATFORM[@]}" -d "$DIR" "$pin" 2>/dev/null; then
    log "$pin"
    continue
  fi
  built="$SCRATCH/$pin"
  "${PIP[@]}" wheel -q --no-deps --no-binary :all: -w "$built" "$pin" \
    || die "$pin: no wheel for CPython $TARGET on Linux x86-64, and its source does not build"
  wheel="$(ls "$built"/*.whl)"
  [[ "$wheel" == *-none-any.whl ]] \
    || die "$pin: no wheel for CPython $TARGET on Linux x86-64, and it builds into a compiled one ($(basename "$wheel")); install it on the offline machine by hand"
  mv "$wheel" "$DIR/"
  log "$pin (built here: pure Python)"
done

# The source that setup_env.sh compiles there (it reads its version from there too).
MMCV="mmcv==$(grep -m1 '^MMCV_VERSION=' "$ROOT/tools/setup_env.sh" | cut -d= -f2)"
# pip reads its metadata, running its setup.py, which imports pkg_resources: the build
# environment pip makes for it gets the pinned setuptools (PIP_BUILD_CONSTRAINT from pip 25.3,
# PIP_CONSTRAINT, which older pips pass on to it).
constraint="$SCRATCH/setuptools.txt"
grep '^setuptools==' "$ROOT/requirements/build.txt" >"$constraint"
PIP_CONSTRAINT="$constraint" PIP_BUILD_CONSTRAINT="$constraint" "${PIP[@]}" download -q --no-deps --no-binary :all: -d "$DIR" "$MMCV" \
  || die "could not download the $MMCV source"
log "$MMCV (source)"
log "done: $(ls "$DIR" | wc -l) files, $(du -sh "$DIR" | cut -f1) in $DIR"
