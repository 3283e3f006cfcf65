#!/usr/bin/env bash
# Download the two source tarballs the harness runs from, into a cache folder (once; needs the
# network, i.e. Debian's package mirror; everything after this step runs offline):
#   pytorch-vision_0.21.0.orig.tar.gz  torchvision v0.21.0's source (its test/ folder and assets)
#   giflib_5.2.2.orig.tar.gz           GIFLIB's sample GIFs (pic/), which test_decode_gif downloads
# Both come from Debian's source packages (trixie), fetched with apt-get through a private apt
# configuration under the cache folder: the machine's own apt sources are not touched. The
# tarballs' SHA-256 are checked against the values below.
#
# Usage: bash benchmarks/torchvision_tests/fetch_sources.sh [CACHE_DIR]
#   CACHE_DIR defaults to $GPUVIO_TV_CACHE, else ~/.cache/gpuvio/torchvision-tests
set -euo pipefail

cache="${1:-${GPUVIO_TV_CACHE:-$HOME/.cache/gpuvio/torchvision-tests}}"
mkdir -p "$cache"
cd "$cache"

declare -A want=(
  [pytorch-vision_0.21.0.orig.tar.gz]=0a4a967bbb7f9810f792cd0289a07fb98c8fb5d1303fae8b63e3a6b05d720058
  [giflib_5.2.2.orig.tar.gz]=be7ffbd057cadebe2aa144542fd90c6838c6a083b5e8a9048b8ee3b66b29d5fb
)

have_all() {
  local f
  for f in "${!want[@]}"; do
    [[ -f "$f" ]] && [[ "$(sha256sum "$f" | cut -d' ' -f1)" == "${want[$f]}" ]] || return 1
  done
}

if have_all; then
  echo "sources already in $cache"
  exit 0
fi

apt_dir="$cache/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
  > "$apt_dir/sources.list"
apt_opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o "Dir::Etc::sourceparts=-"
          -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
apt-get "${apt_opts[@]}" update >/dev/null
# apt-get may fail on the .dsc/.debian.tar.xz of a superseded revision; only the orig tarballs
# matter, and their checksums are verified below
apt-get "${apt_opts[@]}" source --download-only pytorch-vision giflib || true

for f in "${!want[@]}"; do
  if [[ ! -f "$f" ]]; then
    echo "missing $f after download" >&2
    exit 1
  fi
  got="$(sha256sum "$f" | cut -d' ' -f1)"
  if [[ "$got" != "${want[$f]}" ]]; then
    echo "checksum mismatch for $f: $got" >&2
    exit 1
  fi
done
rm -f ./*.dsc ./*.debian.tar.*
echo "sources ready in $cache"
