"""GPU video benchmark: gpuvio's NVDEC backend vs raw PyNvVideoCodec vs the CPU backend.

Run by ``benchmarks/device_check.py`` (which calls :func:`run`), or alone::

    python benchmarks/gpu_video.py [--dry-run] [--json out.json]

It generates its own media (a 1080p H.264 clip of realistic bitrate, plus small HEVC/VP9 clips
for parity), then measures, each after a warm-up run, as the median of a few runs:

* ``read_video_cuda_1080p_h264_fps``: ``gpuvio.read_video(device="cuda")`` on the whole clip;
* ``read_video_cuda_torchops_1080p_h264_fps``: the same with the fused kernel disabled;
* ``raw_pynvvideocodec_1080p_h264_fps``: PyNvVideoCodec's own demuxer + core decoder, NV12 left
  in device memory, nothing else (the ceiling); ``overhead_vs_raw_percent`` compares the two;
* ``decode_videos_cuda_1080p_h264_fps``: frames per second over 2 files per NVDEC engine at once,
  and ``raw_pynvvideocodec_multi_1080p_h264_fps`` for the same work with raw decoders in threads;
* ``read_video_cpu_1080p_h264_fps``: the CPU backend on the same file and machine;
* ``parity_max_abs_diff`` / ``parity_mean_abs_diff``: GPU vs CPU pixels (worst over H.264 1080p,
  and H.264/HEVC/VP9 small clips), plus one entry per codec.

With ``dry_run`` only the CPU parts run (to check the script on a machine without a GPU).
Every figure is appended as ``{"name", "value", "unit"}``; a failing part is recorded in
``errors`` and the rest goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

import gpuvio  # noqa: E402
from gpuvio._samples import make_sample_video  # noqa: E402

__all__ = ["run"]


def _median_time(fn: Callable[[], Any], *, repeats: int, sync: bool) -> tuple[float, Any]:
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


def _diff(a: torch.Tensor, b: torch.Tensor) -> tuple[int, float]:
    if a.shape != b.shape:
        raise AssertionError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    d = (a.cpu().int() - b.cpu().int()).abs()
    return int(d.max()), float(d.float().mean())


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


class _Recorder:
    def __init__(self, results: list, errors: list, log: Callable[[str], None]) -> None:
        self.results, self.errors, self.log = results, errors, log

    def add(self, name: str, value: float, unit: str) -> None:
        value = round(float(value), 3)
        self.results.append({"name": name, "value": value, "unit": unit})
        self.log(f"  {name} = {value} {unit}")

    def guard(self, part: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:
            self.errors.append({"part": part, "error": f"{type(exc).__name__}: {exc}",
                                "trace": traceback.format_exc(limit=6)})
            self.log(f"  [{part}] FAILED: {type(exc).__name__}: {exc}")


def run(results: list, *, dry_run: bool = False, workdir: str | os.PathLike[str] | None = None,
        errors: list | None = None, log: Callable[[str], None] = print) -> list:
    """Append this benchmark's measurements to ``results``; return the list of errors."""
    errors = [] if errors is None else errors
    rec = _Recorder(results, errors, log)
    work = Path(workdir or tempfile.mkdtemp(prefix="gpuvio-gpu-video-"))
    work.mkdir(parents=True, exist_ok=True)
    cuda = not dry_run and torch.cuda.is_available()
    if not dry_run and not cuda:
        errors.append({"part": "gpu_video", "error": "torch sees no CUDA device"})
    # the GPU needs 1080p; a dry run on a small CPU machine checks the code path on 640x360
    width, height, seconds = (1920, 1080, 4.0) if cuda else (640, 360, 1.0)
    tag = "1080p_h264" if (width, height) == (1920, 1080) else f"{height}p_h264"
    media: dict[str, Path] = {}

    def make_media() -> None:
        start = time.perf_counter()
        media["main"] = make_sample_video(work / f"main_{height}p.mp4", width=width, height=height,
                                          seconds=seconds, gop=60, audio=False)
        for codec, name in (("libx264", "small_h264.mp4"), ("libx265", "small_hevc.mp4"),
                            ("libvpx-vp9", "small_vp9.webm")):
            media[codec] = make_sample_video(work / name, width=640, height=360, seconds=1.0, codec=codec,
                                             gop=30, audio=False)
        log(f"  media generated in {time.perf_counter() - start:.1f} s ({width}x{height}, {seconds} s)")

    rec.guard("media", make_media)
    if "main" not in media:
        return errors
    main = media["main"]
    frames = len(gpuvio.read_video_timestamps(main)[0])
    rec.add(f"benchmark_clip_{tag}_frames", frames, "frames")

    def cpu_fps() -> None:
        elapsed, video = _median_time(lambda: gpuvio.read_video(main)[0], repeats=2 if cuda else 1, sync=False)
        rec.add(f"read_video_cpu_{tag}_fps", video.shape[0] / elapsed, "fps")

    rec.guard("cpu read_video", cpu_fps)
    if not cuda:
        return errors

    from gpuvio import _dispatch
    from gpuvio._backends._cuda import load_notes, load_pynvvideocodec
    from gpuvio._backends._nvdec_color import fused_kernel_status
    from gpuvio._multi import decode_videos

    backend = _dispatch.get_backend("nvdec")
    device = torch.device("cuda", 0)
    state: dict[str, Any] = {}

    def gpu_fps() -> None:
        elapsed, (video, _, info) = _median_time(lambda: gpuvio.read_video(main, device="cuda"), repeats=5,
                                                 sync=True)
        if info["backend"] != "nvdec":
            raise RuntimeError(f"the benchmark clip fell back to the CPU: {info['fallback_reason']}")
        state["ours"] = video.shape[0] / elapsed
        rec.add(f"read_video_cuda_{tag}_fps", state["ours"], "fps")
        status = fused_kernel_status()
        rec.add("fused_kernel_used", float(bool(status) and all(v == "fused" for v in status.values())), "bool")
        for key, value in status.items():
            if value != "fused":
                errors.append({"part": "fused kernel", "error": f"{key}: {value}"})

    rec.guard("cuda read_video", gpu_fps)

    def torchops_fps() -> None:
        os.environ["GPUVIO_NVDEC_FUSED"] = "0"
        try:
            elapsed, video = _median_time(lambda: gpuvio.read_video(main, device="cuda")[0], repeats=3, sync=True)
        finally:
            os.environ.pop("GPUVIO_NVDEC_FUSED", None)
        rec.add(f"read_video_cuda_torchops_{tag}_fps", video.shape[0] / elapsed, "fps")

    rec.guard("cuda read_video, torch ops", torchops_fps)

    def raw_fps() -> None:
        nvc = load_pynvvideocodec()
        for note in load_notes():
            errors.append({"part": "PyNvVideoCodec import", "error": note})
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
        total = frames * len(files)
        elapsed, _ = _median_time(lambda: decode_videos(files, device="cuda"), repeats=3, sync=True)
        rec.add(f"decode_videos_cuda_{tag}_fps", total / elapsed, "fps")
        rec.add("decode_videos_files", len(files), "files")
        stats = backend.pool_stats()
        rec.add("nvdec_sessions_created", stats["created"], "count")
        rec.add("nvdec_sessions_reused", stats["reused"], "count")
        nvc = load_pynvvideocodec()
        streams = [torch.cuda.Stream(device) for _ in files]

        def raw_all() -> int:
            counts = [0] * len(files)

            def work(i: int) -> None:
                counts[i] = _raw_decode(nvc, files[i], 0, streams[i].cuda_stream)

            threads = [threading.Thread(target=work, args=(i,)) for i in range(len(files))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return sum(counts)

        elapsed, count = _median_time(raw_all, repeats=3, sync=True)
        rec.add(f"raw_pynvvideocodec_multi_{tag}_fps", count / elapsed, "fps")

    rec.guard("decode_videos", multi_fps)

    def parity() -> None:
        worst, worst_mean = 0, 0.0
        for name, path in (("h264_1080p", main), ("h264", media["libx264"]), ("hevc", media["libx265"]),
                           ("vp9", media["libvpx-vp9"])):
            gpu, _, info = gpuvio.read_video(path, device="cuda")
            if info["backend"] != "nvdec":
                raise RuntimeError(f"{name} fell back to the CPU: {info['fallback_reason']}")
            d_max, d_mean = _diff(gpu, gpuvio.read_video(path)[0])
            rec.add(f"parity_max_abs_diff_{name}", d_max, "levels")
            rec.add(f"parity_mean_abs_diff_{name}", d_mean, "levels")
            worst, worst_mean = max(worst, d_max), max(worst_mean, d_mean)
        rec.add("parity_max_abs_diff", worst, "levels")
        rec.add("parity_mean_abs_diff", worst_mean, "levels")

    rec.guard("parity", parity)
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU parts only")
    parser.add_argument("--json", help="write {results, errors} here")
    args = parser.parse_args()
    results: list = []
    errors = run(results, dry_run=args.dry_run)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "errors": errors}, indent=2))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
