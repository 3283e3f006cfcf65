#!/usr/bin/env bash
# Entrypoint of the CUDA image: check that the GPU and NVDEC are really usable, loudly, then run
# the command. Without the "video" driver capability the container runtime does not mount
# libnvcuvid, and NVDEC decoding would otherwise fail later with an obscure error.
#
# GPUVIO_SKIP_PREFLIGHT=1 skips the checks (e.g. to run 'gpuvio info' on a machine without a GPU).
set -euo pipefail

fail() {
  {
    echo "=================================================================="
    echo "gpuvio preflight FAILED: $1"
    echo "$2"
    echo "NVIDIA_DRIVER_CAPABILITIES=${NVIDIA_DRIVER_CAPABILITIES:-<unset>}"
    echo "Run with: docker run --gpus all -e NVIDIA_DRIVER_CAPABILITIES=compute,utility,video ..."
    echo "(set GPUVIO_SKIP_PREFLIGHT=1 to skip this check)"
    echo "=================================================================="
  } >&2
  exit 70
}

if [ "${GPUVIO_SKIP_PREFLIGHT:-0}" != 1 ]; then
  case ",${NVIDIA_DRIVER_CAPABILITIES:-}," in
    *,all,*|*,video,*) ;;
    *) fail "NVIDIA_DRIVER_CAPABILITIES lacks 'video'" "NVDEC's library libnvcuvid is only mounted with the video capability." ;;
  esac
  python3 - <<'PY' || fail "an NVIDIA driver library cannot be loaded" "Is the NVIDIA Container Toolkit installed, and was the container started with --gpus?"
import ctypes, sys
for lib, why in (("libcuda.so.1", "the CUDA driver"), ("libnvcuvid.so.1", "NVDEC (video decoding)")):
    try:
        ctypes.CDLL(lib)
    except OSError as exc:
        print(f"cannot load {lib} ({why}): {exc}", file=sys.stderr)
        sys.exit(1)
print("preflight: libcuda and libnvcuvid load", file=sys.stderr)
PY
  if ! gpuvio_out="$(python3 -c "import gpuvio, sys; b = {x.name: x for x in gpuvio.backends()}; n = b['nvdec']; sys.exit(0 if n.usable else 'nvdec backend not usable: %s' % n.reason)" 2>&1)"; then
    fail "gpuvio's NVDEC backend cannot run" "$gpuvio_out"
  fi
fi
exec "$@"
