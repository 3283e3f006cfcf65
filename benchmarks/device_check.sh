#!/usr/bin/env bash
# Device check for a bare GPU machine without network: install the carried wheels, report what
# the driver offers, run the cuda-marked tests and the GPU benchmarks, write OUTDIR/device_check.json.
#
#   benchmarks/device_check.sh OUTDIR [WHEELDIR] [--dry-run]
#
# WHEELDIR (default .whl) holds the wheels the machine lacks, cp312 manylinux x86_64, fetched on a
# machine with network access (from the repository root; add .whl/ to .git/info/exclude):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl PyNvVideoCodec==2.2.4 av==18.1.0
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl nvidia-nvimgcodec-cu13
#
# (about 27 + 35 + 25 MB; the machine already has torch 2.11 + CUDA 13, CuPy, Pillow, numpy, pytest.)
# With the device tool, carry the folder: run(command="benchmarks/device_check.sh $OUT/check .whl",
# carry=[".whl"]), or "--dry-run" to rehearse on a machine without a GPU.
# Set GPUVIO_COMMIT to the commit being checked when the tree travels without .git.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${1:?usage: benchmarks/device_check.sh OUTDIR [WHEELDIR] [--dry-run]}
WHEELS=${2:-.whl}
DRY=""
for arg in "$@"; do [ "$arg" = "--dry-run" ] && DRY="--dry-run"; done
[ "$WHEELS" = "--dry-run" ] && WHEELS=.whl
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
START=$(date +%s)

echo "== wheels from $WHEELS"
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  SITE=${GPUVIO_SITE:-/tmp/gpuvio-site}
  if $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl; then
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "wheel install failed; going on with what is installed"
  fi
else
  echo "no wheels in $WHEELS; using what is installed"
fi

echo "== gpuvio from this checkout"
# a dry run (a shared development machine) leaves the environment alone: PYTHONPATH only
if [ -z "$DRY" ] && [ -z "${GPUVIO_NO_INSTALL:-}" ]; then
  if ! $PY -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$OUT/pip_install_gpuvio.log" 2>&1; then
    echo "editable install failed (see pip_install_gpuvio.log); using PYTHONPATH"
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

echo "== driver libraries and GPU"
$PY - <<'EOF'
import ctypes
for name in ("libcuda.so.1", "libnvcuvid.so.1", "libnvidia-encode.so.1"):
    try:
        ctypes.CDLL(name)
        print(f"{name}: loads")
    except OSError as exc:
        print(f"{name}: DOES NOT LOAD ({exc})")
EOF
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
else
  echo "nvidia-smi: not found"
fi

echo "== tests and benchmarks"
$PY benchmarks/device_check.py "$OUT" $DRY
STATUS=$?
echo "device check finished in $(( $(date +%s) - START )) s (exit $STATUS); record: $OUT/device_check.json"
[ -f "$OUT/device_check.json" ] || exit 1
exit 0
