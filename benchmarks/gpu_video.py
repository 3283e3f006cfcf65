"""GPU video benchmark: gpuvio's NVDEC backend vs raw PyNvVideoCodec vs the CPU backend.

Run by ``benchmarks/device_check.py`` as a child process (so that a driver abort or a hang
costs only this script's figures), or alone::

    python benchmarks/gpu_video.py [--dry-run] [--json OUT.json] [--workdir DIR]

It generates its own media (a 1080p H.264 clip of realistic bitrate, plus small H.264/HEVC/VP9
clips for parity), then measures, each after a warm-up run, as the median of a few runs:

* ``read_video_cuda_1080p_h264_fps``: ``gpuvio.read_video(device="cuda")`` on the whole clip;
* ``read_video_cuda_torchops_1080p_h264_fps``: the same with the fused kernel disabled;
* ``raw_pynvvideocodec_1080p_h264_fps``: PyNvVideoCodec's own demuxer + core decoder, NV12 left
  in device memory, nothing else (the ceiling); ``overhead_vs_raw_percent`` compares the two;
* ``decode_videos_cuda_1080p_h264_fps``: frames per second over 2 files per NVDEC engine at once,
  and ``raw_pynvvideocodec_multi_1080p_h264_fps`` for the same work with raw decoders in threads;
* ``read_video_cpu_1080p_h264_fps``: the CPU backend on the same file and machine;
* ``parity_max_abs_diff_<clip>`` / ``parity_mean_abs_diff_<clip>``: GPU vs CPU pixels per clip
  (``h264_1080p``, ``h264``, ``hevc``, ``vp9``), each measured on its own; ``parity_max_abs_diff``
  / ``parity_mean_abs_diff`` are the worst of those over the clips NVDEC decoded, and
  ``parity_clips_on_nvdec`` says how many that was.

A figure is a GPU figure only when NVDEC decoded every frame of it: a call that gpuvio handed to
the CPU backend (its "NVDEC cannot decode" warning, or ``info["backend"] == "cpu"``) is recorded
in ``errors`` instead. With ``--dry-run`` only the CPU parts run (to check the script without a
GPU). ``--json`` is rewritten after every figure (see ``_record.py``). Exit status: 0 when every
part ran, 1 when some failed (they are in ``errors``), anything else when the script died.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _path in (str(REPO), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from _record import Recorder, caught_warnings  # noqa: E402

__all__ = ["run"]

# gpuvio's RuntimeWarning when a file goes to the CPU backend (gpuvio/_backends/_nvdec.py)
_FALLBACK_WARNING = "NVDEC cannot decode"


class CpuServed(RuntimeError):
    """The CPU backend decoded (part of) what was meant to be an NVDEC measurement."""


def _median_time(fn: Callable[[], Any], *, repeats: int, sync: bool) -> tuple[float, Any]:
    import torch

    fn()  # warm-up: decoder creation, kernel compilation, caches
    if sync:
        torch.cuda.synchronize()
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        if sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _on_nvdec(what: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, raising :class:`CpuServed` if gpuvio handed any file in it to the CPU backend."""
    with caught_warnings() as messages:
        out = fn()
    fell = [m for m in messages if _FALLBACK_WARNING in m]
    if fell:
        raise CpuServed(f"{what}: {len(fell)} decode(s) fell back to the CPU, so this is no GPU figure; "
                        f"first: {fell[0]}")
    return out


def _read_nvdec(path: Path) -> Any:
    """``gpuvio.read_video(path, device="cuda")``'s frames, raising :class:`CpuServed` unless NVDEC decoded them."""
    import gpuvio

    video, _, info = gpuvio.read_video(path, device="cuda")
    if info.get("backend") != "nvdec":
        raise CpuServed(f"{path.name} was decoded by the {info.get('backend')!r} backend: "
                        f"{info.get('fallback_reason')}")
    return video


def _diff(a: Any, b: Any) -> tuple[int, float]:
    """(max, mean) |a - b| of two uint8 videos, in chunks on ``a``'s device (a 1080p clip as int32 is GBs)."""
    import torch

    if a.shape != b.shape or a.numel() == 0:
        raise AssertionError(f"shapes differ or are empty: {tuple(a.shape)} vs {tuple(b.shape)}")
    worst, total = 0, 0
    for i in range(0, a.shape[0], 16):
        d = (a[i:i + 16].to(torch.int16) - b[i:i + 16].to(a.device, torch.int16)).abs()
        worst = max(worst, int(d.max()))
        total += int(d.sum(dtype=torch.int64))
    return worst, total / a.numel()


def _raw_decode(nvc: Any, path: Path, gpu: int, stream_handle: int) -> int:
    """PyNvVideoCodec alone: its demuxer, its core decoder, NV12 surfaces left on the device."""
    demuxer = nvc.CreateDemuxer(filename=str(path))
    decoder = nvc.CreateDecoder(gpuid=gpu, codec=demuxer.GetNvCodecId(), cudacontext=0,
                                cudastream=stream_handle, usedevicememory=True)
    count = 0
    for packet in demuxer:  # its last packet is empty, which flushes the decoder
        count += len(decoder.Decode(packet))
    count += len(decoder.Decode(nvc.PacketData()))  # in case the iteration stopped before that
    return count


def run(rec: Recorder, *, dry_run: bool = False, workdir: str | os.PathLike[str] | None = None) -> None:
    """Measure and add every figure to ``rec``; a failing part becomes an error entry."""
    import torch

    import gpuvio
    from gpuvio._samples import make_sample_video

    log = rec.log
    work = Path(workdir or tempfile.mkdtemp(prefix="gpuvio-gpu-video-"))
    work.mkdir(parents=True, exist_ok=True)
    cuda = not dry_run and torch.cuda.is_available()
    if not dry_run and not cuda:
        rec.error("gpu_video", "torch sees no CUDA device: no GPU figure measured")
    # the GPU needs 1080p; a dry run on a small CPU machine checks the code path on 640x360
    width, height, seconds = (1920, 1080, 4.0) if cuda else (640, 360, 1.0)
    tag = "1080p_h264" if (width, height) == (1920, 1080) else f"{height}p_h264"
    media: dict[str, Path] = {}

    def make_main() -> None:
        start = time.perf_counter()
        media["main"] = make_sample_video(work / f"main_{height}p.mp4", width=width, height=height,
                                          seconds=seconds, gop=60, audio=False)
        log(f"  media generated in {time.perf_counter() - start:.1f} s ({width}x{height}, {seconds} s)")

    if not rec.guard("media", make_main):
        return
    main = media["main"]
    rec.guard("frame count", lambda: rec.add(f"benchmark_clip_{tag}_frames",
                                             len(gpuvio.read_video_timestamps(main)[0]), "frames"))

    def cpu_fps() -> None:
        elapsed, video = _median_time(lambda: gpuvio.read_video(main)[0], repeats=2 if cuda else 1, sync=False)
        rec.add(f"read_video_cpu_{tag}_fps", video.shape[0] / elapsed, "fps")

    rec.guard("cpu read_video", cpu_fps)
    if not cuda:
        return

    from gpuvio import _dispatch
    from gpuvio._backends._cuda import load_notes, load_pynvvideocodec
    from gpuvio._backends._nvdec_color import fused_kernel_status
    from gpuvio._multi import decode_videos

    backend: Any = _dispatch.get_backend("nvdec")  # NvdecBackend: engines(), pool_stats()
    device = torch.device("cuda", 0)
    state: dict[str, Any] = {}

    def gpu_fps() -> None:
        elapsed, video = _on_nvdec("read_video", lambda: _median_time(lambda: _read_nvdec(main), repeats=5,
                                                                      sync=True))
        state["ours"] = video.shape[0] / elapsed
        rec.add(f"read_video_cuda_{tag}_fps", state["ours"], "fps")
        status = fused_kernel_status()
        rec.add("fused_kernel_used", float(bool(status) and all(v == "fused" for v in status.values())), "bool")
        for key, value in status.items():
            if value != "fused":
                rec.error("fused kernel", f"{key}: {value}")

    rec.guard("cuda read_video", gpu_fps)

    def torchops_fps() -> None:
        os.environ["GPUVIO_NVDEC_FUSED"] = "0"
        try:
            elapsed, video = _on_nvdec("read_video, torch ops",
                                       lambda: _median_time(lambda: _read_nvdec(main), repeats=3, sync=True))
        finally:
            os.environ.pop("GPUVIO_NVDEC_FUSED", None)
        rec.add(f"read_video_cuda_torchops_{tag}_fps", video.shape[0] / elapsed, "fps")

    rec.guard("cuda read_video, torch ops", torchops_fps)

    def raw_fps() -> None:
        nvc = load_pynvvideocodec()
        for note in load_notes():
            rec.error("PyNvVideoCodec import", note)
        stream = torch.cuda.Stream(device)
        elapsed, count = _median_time(lambda: _raw_decode(nvc, main, 0, stream.cuda_stream), repeats=5, sync=True)
        state["raw"] = count / elapsed
        rec.add(f"raw_pynvvideocodec_{tag}_fps", state["raw"], "fps")
        rec.add("raw_pynvvideocodec_frames", count, "frames")
        elapsed0, _ = _median_time(lambda: _raw_decode(nvc, main, 0, 0), repeats=3, sync=True)
        rec.add(f"raw_pynvvideocodec_stream0_{tag}_fps", count / elapsed0, "fps")
        if "ours" in state:
            rec.add("overhead_vs_raw_percent", (state["raw"] / state["ours"] - 1.0) * 100.0, "%")

    rec.guard("raw PyNvVideoCodec", raw_fps)

    def multi_fps() -> None:
        engines = backend.engines(device)
        rec.add("nvdec_engines", engines, "count")
        files = [main] * max(8, 2 * engines)
        # count the frames and drop the clips at once: holding one call's output while the next
        # runs would double the peak (14 x 240 x 1080p is 21 GB)
        elapsed, total = _on_nvdec("decode_videos", lambda: _median_time(
            lambda: sum(v.shape[0] for v in decode_videos(files, device="cuda")), repeats=3, sync=True))
        rec.add(f"decode_videos_cuda_{tag}_fps", total / elapsed, "fps")
        rec.add("decode_videos_files", len(files), "files")
        stats = backend.pool_stats()
        rec.add("nvdec_sessions_created", stats["created"], "count")
        rec.add("nvdec_sessions_reused", stats["reused"], "count")
        nvc = load_pynvvideocodec()
        streams = [torch.cuda.Stream(device) for _ in files]

        def raw_all() -> int:
            counts = [0] * len(files)

            def one(i: int) -> None:
                counts[i] = _raw_decode(nvc, files[i], 0, streams[i].cuda_stream)

            threads = [threading.Thread(target=one, args=(i,)) for i in range(len(files))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return sum(counts)

        elapsed, count = _median_time(raw_all, repeats=3, sync=True)
        rec.add(f"raw_pynvvideocodec_multi_{tag}_fps", count / elapsed, "fps")

    rec.guard("decode_videos", multi_fps)

    # parity: each clip on its own, so that one clip NVDEC hands to the CPU (or an encoder
    # missing from PyAV's build) costs only its own entry, never the aggregates
    small = {"h264": ("libx264", "small_h264.mp4"), "hevc": ("libx265", "small_hevc.mp4"),
             "vp9": ("libvpx-vp9", "small_vp9.webm")}
    diffs: dict[str, tuple[int, float]] = {}

    def parity(name: str) -> None:
        if name in small:
            codec, filename = small[name]
            path = make_sample_video(work / filename, width=640, height=360, seconds=1.0, codec=codec, gop=30,
                                     audio=False)
        else:
            path = main
        gpu = _on_nvdec(f"parity {name}", lambda: _read_nvdec(path))
        d_max, d_mean = _diff(gpu, gpuvio.read_video(path)[0])
        rec.add(f"parity_max_abs_diff_{name}", d_max, "levels")
        rec.add(f"parity_mean_abs_diff_{name}", d_mean, "levels")
        diffs[name] = (d_max, d_mean)

    for name in ("h264_1080p", *small):
        rec.guard(f"parity {name}", functools.partial(parity, name))
    rec.add("parity_clips_on_nvdec", len(diffs), "count")
    if diffs:
        rec.add("parity_max_abs_diff", max(d[0] for d in diffs.values()), "levels")
        rec.add("parity_mean_abs_diff", max(d[1] for d in diffs.values()), "levels")
    else:
        rec.error("parity", "NVDEC decoded none of the parity clips: no parity figure")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU parts only")
    parser.add_argument("--json", help="write {results, errors, running, complete} here, after every figure")
    parser.add_argument("--workdir", help="where the generated clips go (default: a new temporary folder)")
    args = parser.parse_args()
    rec = Recorder(args.json)
    try:
        run(rec, dry_run=args.dry_run, workdir=args.workdir)
    except Exception as exc:  # noqa: BLE001 - e.g. an import error: recorded, like every other failure
        rec.error("gpu_video", f"{type(exc).__name__}: {exc}")
    return rec.finish()


if __name__ == "__main__":
    sys.exit(main())
