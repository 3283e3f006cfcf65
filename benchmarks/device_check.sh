#!/usr/bin/env bash
# Device check for a bare GPU machine without network: install the carried wheels, report what
# the driver offers, run the cuda-marked tests and the GPU benchmarks, write OUTDIR/device_check.json.
#
#   benchmarks/device_check.sh OUTDIR [WHEELDIRS] [--dry-run]
#
# WHEELDIRS (default .whl) is one folder, or several separated by ':', holding the wheels the
# machine lacks: cp312 manylinux x86_64, fetched on a machine with network access.
#
# The wheels (av 35.8 MB, PyNvVideoCodec 26.9 MB, nvImageCodec 25.0 MB, nvJPEG 3.7 MB) do not fit
# in one device-tool call (64 MiB with the tree, about 1.5 MB), but each half of the check fits
# with its own: GPUVIO_CHECK_PART=video (cuda tests + gpu_video.py) with av + PyNvVideoCodec, and
# GPUVIO_CHECK_PART=image (cuda tests but NVDEC's + gpu_image.py) with av + nvImageCodec + nvJPEG;
# a cuda test whose backend is missing skips itself (@pytest.mark.cuda("nvdec")).
# Two self-contained calls, then: neither depends on what the other left on the machine (it goes
# back after 30 s idle). benchmarks/prepare_device_run.sh downloads the wheels into .whl-av,
# .whl-nvdec and .whl-img, keeps them out of git, and prints both calls with the commit written in
# (the tree travels without .git). They look like:
#
#   run(command="GPUVIO_COMMIT=<hash> GPUVIO_NO_INSTALL=1 GPUVIO_CHECK_PART=video GPUVIO_CHECK_BUDGET_S=330
#                bash benchmarks/device_check.sh $OUT/video .whl-av:.whl-nvdec",
#       carry=[".whl-av", ".whl-nvdec"], timeout_s=420)
#   run(command="GPUVIO_COMMIT=<hash> GPUVIO_NO_INSTALL=1 GPUVIO_CHECK_PART=image GPUVIO_CHECK_BUDGET_S=220
#                bash benchmarks/device_check.sh $OUT/image .whl-av:.whl-img",
#       carry=[".whl-av", ".whl-img"], timeout_s=300)
#
# (GPUVIO_NO_INSTALL=1: PYTHONPATH is enough, and an editable install there only adds noise.)
# Commit both records: benchmarks/results/device-<gpu>-<date>-video.json and -image.json.
#
# Time: GPUVIO_CHECK_BUDGET_S (default 480) bounds device_check.py; each stage has its own limit,
# cut so that every later stage keeps a share: GPUVIO_TIMEOUT_TESTS_NVDEC (150), GPUVIO_TIMEOUT_TESTS_CUDA
# (150), GPUVIO_TIMEOUT_VIDEO (300), GPUVIO_TIMEOUT_IMAGE (150). The install before it takes well
# under a minute, so timeout_s must be at least the budget plus 60. The record is rewritten after
# every stage (and the benchmarks' figures after every figure), so a kill keeps what was measured.
# Files under OUTDIR (the device tool returns 8 at most): device_check.json, cuda_tests.log,
# benchmarks.log, wheel_install.log, and install_errors.txt / pip_install_gpuvio.log when needed.
#
# The machine already has torch 2.11 + CUDA 13, CuPy, Pillow, numpy and pytest. "--dry-run"
# rehearses everything that runs without a GPU.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

OUT=${1:?usage: benchmarks/device_check.sh OUTDIR [WHEELDIRS] [--dry-run]}
WHEELS=${2:-.whl}
DRY=""
for arg in "$@"; do [ "$arg" = "--dry-run" ] && DRY="--dry-run"; done
[ "$WHEELS" = "--dry-run" ] && WHEELS=.whl
mkdir -p "$OUT"
# a rerun into the same OUTDIR must not report the last run's install problems
rm -f "$OUT/install_errors.txt" "$OUT/wheel_install.log" "$OUT/pip_install_gpuvio.log"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
START=$(date +%s)

echo "== wheels from $WHEELS"
WHEEL_FILES=()
IFS=':' read -r -a WHEEL_DIRS <<< "$WHEELS"
for dir in "${WHEEL_DIRS[@]}"; do
  for wheel in "$dir"/*.whl; do [ -f "$wheel" ] && WHEEL_FILES+=("$wheel"); done
done
if [ ${#WHEEL_FILES[@]} -gt 0 ]; then
  printf '  %s\n' "${WHEEL_FILES[@]}"
  SITE=${GPUVIO_SITE:-/tmp/gpuvio-site}
  PIP=("$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade)
  # All in one call: with --target, pip replaces whole top-level folders, so installing one wheel
  # at a time would delete what an earlier one put in a shared folder (nvimgcodec and nvjpeg
  # both install into nvidia/).
  if ! "${PIP[@]}" --target "$SITE" "${WHEEL_FILES[@]}" >>"$OUT/wheel_install.log" 2>&1; then
    # one wheel that does not fit this Python must not keep the others out: each on its own, then
    # merged into SITE. Separate folders on the path would not do: nvimgcodec's nvidia/ is a
    # regular package (no namespace merging), and it finds libnvjpeg through its RUNPATH
    # ($ORIGIN/../../cu13/lib), so nvjpeg's nvidia/cu13/lib must sit in the same tree.
    echo "  one-call install failed (see wheel_install.log); installing wheel by wheel"
    mkdir -p "$SITE"
    n=0
    for wheel in "${WHEEL_FILES[@]}"; do
      n=$((n + 1))
      PART="$SITE.parts/$n"
      rm -rf "$PART"
      if ! { "${PIP[@]}" --target "$PART" "$wheel" >>"$OUT/wheel_install.log" 2>&1 && cp -a "$PART/." "$SITE/"; }; then
        echo "  FAILED: $wheel (see wheel_install.log)"
        echo "wheel install failed: $(basename "$wheel")" >>"$OUT/install_errors.txt"
      fi
    done
  fi
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "no wheels in $WHEELS; using what is installed"
fi

echo "== gpuvio from this checkout"
# a dry run (a shared development machine) leaves the environment alone: PYTHONPATH only
if [ -z "$DRY" ] && [ -z "${GPUVIO_NO_INSTALL:-}" ]; then
  if ! "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$OUT/pip_install_gpuvio.log" 2>&1; then
    echo "editable install failed (see pip_install_gpuvio.log); using PYTHONPATH"
    echo "pip install -e . failed (PYTHONPATH used instead)" >>"$OUT/install_errors.txt"
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

echo "== driver libraries and GPU"
"$PY" - <<'EOF'
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
"$PY" benchmarks/device_check.py "$OUT" --part "${GPUVIO_CHECK_PART:-all}" ${DRY:+"$DRY"}
STATUS=$?
echo "device check finished in $(( $(date +%s) - START )) s (exit $STATUS); record: $OUT/device_check.json"
[ -f "$OUT/device_check.json" ] || exit 1
exit 0
