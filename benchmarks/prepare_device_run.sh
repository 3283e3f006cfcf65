#!/usr/bin/env bash
# Before a device session: fetch the wheels the device check carries (cp312 manylinux x86_64) into
# .whl-av, .whl-nvdec and .whl-img, keep them out of git (or the tree would exceed the device
# tool's 64 MiB), check that each call's load fits, and print the two device-tool calls with this
# checkout's commit written in (the tree travels without .git). Needs network access.
set -euo pipefail
cd "$(dirname "$0")/.."

for dir in .whl-av .whl-nvdec .whl-img; do
  grep -qxF "/$dir/" .git/info/exclude 2>/dev/null || echo "/$dir/" >> .git/info/exclude
done

fetch() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$@"
}
fetch .whl-av av==18.1.0
fetch .whl-nvdec PyNvVideoCodec==2.2.4
fetch .whl-img nvidia-nvimgcodec-cu13==0.9.0.20 nvidia-nvjpeg==13.0.4.44

# what travels: tracked and untracked-not-ignored files, plus the carried folders
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null | tail -n 1 | cut -f1)
limit=$((64 * 1024 * 1024))
for pair in "video .whl-av .whl-nvdec" "image .whl-av .whl-img"; do
  read -r part a b <<< "$pair"
  size=$((tree + $(du -cb "$a" "$b" | tail -n 1 | cut -f1)))
  echo "$part call: $((size / 1000000)) MB of $((limit / 1000000)) MB"
  [ "$size" -lt "$limit" ] || { echo "  too large: the $part call would be refused" >&2; exit 1; }
done

if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "note: uncommitted changes; commit first so that the record names the code that ran" >&2
fi
commit=$(git describe --always --dirty --abbrev=40 --exclude='*')
env="GPUVIO_COMMIT=$commit GPUVIO_NO_INSTALL=1"
cat <<CALLS
Device-tool calls, one after the other (each is self-contained; the JSON comes back under video/ and image/):
  run(command="$env GPUVIO_CHECK_PART=video GPUVIO_CHECK_BUDGET_S=330 bash benchmarks/device_check.sh \$OUT/video .whl-av:.whl-nvdec", carry=[".whl-av", ".whl-nvdec"], timeout_s=420)
  run(command="$env GPUVIO_CHECK_PART=image GPUVIO_CHECK_BUDGET_S=220 bash benchmarks/device_check.sh \$OUT/image .whl-av:.whl-img", carry=[".whl-av", ".whl-img"], timeout_s=300)
CALLS
