"""Scratch benchmark: gpuvio.read_video (CPU backend) against torchvision 0.8's algorithm.

Usage::

    python benchmarks/_scratch_video_speed.py [--runs 5] [--clip PATH] [--seconds 10]
        [--thread-type SLICE|FRAME|AUTO] [--variants]

It generates (once, cached under $TMPDIR) the issue's clip: 1280x720 H.264 at about 4.5 Mbit/s,
10 s, textured and panning (gpuvio._samples.make_sample_video), then times, interleaved and
repeated, the reference (PyAV decode with the default threading, ``frame.to_rgb().to_ndarray()``
per frame, ``torch.as_tensor(np.stack(...))``: torchvision 0.8's read_video, audio included),
``gpuvio.read_video(path, pts_unit="sec")`` (THWC, and TCHW), the CPU backend writing planar
TCHW directly, and PyAV's decode alone (the ceiling). Reports the median and best fps of each,
the median of the per-round ratios to the reference and the ratio of the best runs (contention
only ever slows a run down, so best-of-N approximates an idle machine). The numbers are
indicative: on a shared machine, run it when the load is low and look at the spread.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_clip(seconds: float) -> Path:
    from gpuvio._samples import make_sample_video

    path = Path(tempfile.gettempdir()) / f"gpuvio_bench_720p_{seconds:g}s.mp4"
    if not path.exists():
        tmp = path.with_suffix(".part.mp4")
        make_sample_video(tmp, width=1280, height=720, seconds=seconds)
        os.replace(tmp, path)
    return path


def reference(path: str) -> int:
    """torchvision 0.8's read_video with pts_unit='sec', whole clip (video and audio)."""
    import av

    with av.open(path, metadata_errors="ignore") as container:
        frames: dict[int, object] = {}
        stream = container.streams.video[0]
        container.seek(0, any_frame=False, backward=True, stream=stream)
        for frame in container.decode(video=0):
            frames[frame.pts] = frame
        video_frames = [frames[p] for p in sorted(frames)]
        aframes = []
        if container.streams.audio:
            astream = container.streams.audio[0]
            container.seek(0, any_frame=False, backward=True, stream=astream)
            aframes = [f.to_ndarray() for f in container.decode(audio=0)]
    vframes = torch.as_tensor(np.stack([f.to_rgb().to_ndarray() for f in video_frames]))
    if aframes:
        torch.as_tensor(np.concatenate(aframes, 1))
    return vframes.shape[0]


def decode_only(path: str) -> int:
    import av

    with av.open(path) as container:
        return sum(1 for _ in container.decode(video=0))


def gpuvio_read(path: str) -> int:
    import gpuvio

    return gpuvio.read_video(path, pts_unit="sec")[0].shape[0]


def gpuvio_read_tchw(path: str) -> int:
    import gpuvio

    return gpuvio.read_video(path, pts_unit="sec", output_format="TCHW")[0].shape[0]


def cpu_backend_planar(path: str) -> int:
    """The CPU backend writing TCHW directly (what read_video(output_format="TCHW") does once
    the backend interface passes output_format down)."""
    from cpu_fallback import _video

    return _video.read_video(path, 0, float("inf"), "sec", layout="CHW")[0].shape[0]


def timed(fn, path: str) -> float:
    gc.collect()
    start = time.perf_counter()
    count = fn(path)
    elapsed = time.perf_counter() - start
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clip", type=str, default=None)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--thread-type", default=None, help="override the decoder thread type in read_video")
    parser.add_argument("--no-decode-only", action="store_true")
    args = parser.parse_args()

    path = str(args.clip or make_clip(args.seconds))
    if args.thread_type:
        import cpu_fallback._video as cv

        cv.DECODER_THREAD_TYPE = args.thread_type
    import av

    with av.open(path) as c:
        s = c.streams.video[0]
        print(f"clip: {path}: {s.codec_context.name} {s.width}x{s.height}, {s.frames} frames, "
              f"{(s.bit_rate or 0) / 1e6:.2f} Mbit/s; cores: {len(os.sched_getaffinity(0))}; "
              f"load: {os.getloadavg()[0]:.2f}")
    gpuvio_read(path)  # warm-up: imports, thread pool
    ref_name = "reference (torchvision 0.8 algorithm)"
    variants = [(ref_name, reference), ("gpuvio.read_video THWC", gpuvio_read),
                ("gpuvio.read_video TCHW", gpuvio_read_tchw), ("CPU backend, planar TCHW", cpu_backend_planar)]
    if not args.no_decode_only:
        variants.append(("PyAV decode only", decode_only))
    results: dict[str, list[float]] = {name: [] for name, _ in variants}
    ratios: dict[str, list[float]] = {name: [] for name, _ in variants if name != ref_name}
    for run in range(args.runs):
        row = {}
        for name, fn in variants:
            row[name] = timed(fn, path)
            results[name].append(row[name])
        for name in ratios:
            ratios[name].append(row[name] / row[ref_name])
        print(f"run {run + 1}: " + ", ".join(f"{n} {v:.0f}" for n, v in row.items())
              + f" fps; load {os.getloadavg()[0]:.2f}", flush=True)
    print()
    for name, values in results.items():
        print(f"{name:40s} fps: median {statistics.median(values):5.0f}, best {max(values):5.0f}, "
              f"worst {min(values):5.0f}")
    for name, values in ratios.items():
        print(f"{name + ' / reference':50s} median {statistics.median(values):5.2f}x "
              f"(min {min(values):.2f}, max {max(values):.2f}); best/best "
              f"{max(results[name]) / max(results[ref_name]):.2f}x")


if __name__ == "__main__":
    main()
