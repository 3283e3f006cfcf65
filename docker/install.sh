#!/usr/bin/env bash
# Install gpuvio and what it needs into a virtual environment: the steps both Docker images run,
# and that CI can run too (so they are exercised although no Docker engine runs there).
#
# usage: docker/install.sh [--venv DIR] [--src DIR] [--no-apt] [--dry-run] cpu|cuda
#
#   cpu    torch (CPU wheels when TORCH_INDEX_URL points at them), gpuvio with the test and bench
#          extras. No CUDA library is needed at run time.
#   cuda   torch with CUDA, gpuvio[cu13,bench,test] (PyNvVideoCodec, nvImageCodec, CuPy). The NVIDIA
#          driver libraries (libcuda, libnvcuvid) are NOT installed here: the container runtime
#          mounts them from the host at run time; docker/preflight.sh checks they arrived.
#
#   --venv DIR   where the virtual environment goes (default /opt/gpuvio)
#   --src DIR    the gpuvio source tree to install (default: the folder above this script)
#   --no-apt     do not install system packages (python3-venv...); for CI and non-Debian hosts
#   --dry-run    print the commands instead of running them
#
# Environment: TORCH_SPEC (default "torch"), TORCH_INDEX_URL (optional pip index for torch, e.g.
# PyTorch's CPU-only wheel index to keep the CPU image small), GPUVIO_EXTRAS (overrides the extras).
set -euo pipefail

venv=/opt/gpuvio
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
use_apt=1
dry_run=0
flavour=""

die() { echo "install.sh: error: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --venv) [ $# -ge 2 ] || die "--venv needs a directory"; venv="$2"; shift 2 ;;
    --src) [ $# -ge 2 ] || die "--src needs a directory"; src="$2"; shift 2 ;;
    --no-apt) use_apt=0; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    cpu|cuda) [ -z "$flavour" ] || die "give one flavour, got '$flavour' and '$1'"; flavour="$1"; shift ;;
    *) die "unknown argument '$1' (expected cpu, cuda, --venv DIR, --src DIR, --no-apt, --dry-run)" ;;
  esac
done
[ -n "$flavour" ] || die "which flavour? cpu or cuda (see --help)"
[ -f "$src/pyproject.toml" ] || die "--src $src has no pyproject.toml"

run() {
  echo "+ $*"
  if [ "$dry_run" -eq 0 ]; then "$@"; fi
}

# 1. system packages: a Python with venv support (the python images already have it)
if [ "$use_apt" -eq 1 ] && command -v apt-get >/dev/null 2>&1 && ! python3 -c "import ensurepip, venv" 2>/dev/null; then
  run apt-get update
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv python3-pip ca-certificates
  run rm -rf /var/lib/apt/lists/*
fi

# 2. the virtual environment
run python3 -m venv "$venv"
py="$venv/bin/python"
run "$py" -m pip install --no-cache-dir --upgrade pip

# 3. torch first, so that gpuvio's loose "torch>=2.4" keeps the build chosen here
torch_spec="${TORCH_SPEC:-torch}"
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  run "$py" -m pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" "$torch_spec"
else
  run "$py" -m pip install --no-cache-dir "$torch_spec"
fi

# 4. gpuvio with the flavour's extras
if [ "$flavour" = cpu ]; then
  extras="${GPUVIO_EXTRAS:-test,bench}"
else
  extras="${GPUVIO_EXTRAS:-cu13,bench,test}"
fi
run "$py" -m pip install --no-cache-dir "${src}[${extras}]"

# 5. smoke check: gpuvio imports, lists its backends, and (cpu) decodes generated media
run "$py" -c "import gpuvio; print(gpuvio.__version__); print(gpuvio.backends())"
if [ "$flavour" = cpu ]; then
  run "$venv/bin/gpuvio" demo --small --device cpu
else
  # no GPU during 'docker build': check only that the GPU libraries are installed
  run "$py" -c "import importlib.util as u, sys; missing = [m for m in ('PyNvVideoCodec', 'nvidia.nvimgcodec', 'cupy') if u.find_spec(m) is None]; sys.exit('missing: %s' % missing if missing else 0)"
fi
echo "install.sh: gpuvio ($flavour) installed in $venv"
