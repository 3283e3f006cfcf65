"""The video workloads: read_video, VideoReader seeks and batched random access, with their peers.

The torchvision 0.8 ``read_video`` algorithm is re-implemented here (torchvision removed it in
0.26): PyAV decodes with its default settings, frames are kept in a dict keyed by pts, then each
is converted with ``frame.to_rgb().to_ndarray()`` and the list is ``np.stack``-ed. torchvision 0.8
set no thread option on the stream (neither ``thread_type`` nor ``thread_count``), so the decoder
runs with PyAV's defaults: slice threading with an automatic count (FFmpeg's own frame threading
stays off), which for one-slice-per-frame H.264 (x264's default) means decoding on one core.
"""

from __future__ import annotations

import bisect
import math
import random
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ._media import MediaFile
from ._timing import synced
from ._workload import Contender, Target, Workload, add_peer, gpuvio_label, import_peer, nchw, nhwc

__all__ = ["CEILING", "TC_AUTO", "TC_DEFAULT", "TV08", "pyav_decode_only", "pyav_frames_at", "pyav_rgb24_stack",
           "pyav_seek_read", "torchvision08_read_video", "video_workloads"]


# --------------------------------------------------------------------------- PyAV algorithms

def _av_errors() -> tuple[type[BaseException], ...]:
    import av

    return (getattr(av, "FFmpegError", None) or av.error.FFmpegError,)


def torchvision08_read_video(path: str) -> torch.Tensor:
    """torchvision 0.8's ``read_video(path, pts_unit="sec")`` for the whole clip, video only.

    Faithful to its ``_read_from_stream``: default PyAV threading, frames buffered by pts (with
    the extra buffering for DivX packed B-frames), sorted, then ``to_rgb().to_ndarray()`` per
    frame and ``torch.as_tensor(np.stack(...))``.
    """
    import av

    start_offset, end_offset = 0, math.inf
    with av.open(path, metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        should_buffer, max_buffer = True, 5
        extradata = stream.codec_context.extradata
        if extradata and b"DivX" in extradata:
            d = extradata[extradata.find(b"DivX"):]
            o = re.search(rb"DivX(\d+)Build(\d+)(\w)", d) or re.search(rb"DivX(\d+)b(\d+)(\w)", d)
            if o is not None:
                should_buffer = o.group(3) == b"p"
        seek_offset = max(start_offset - 1, 0)
        if should_buffer:
            seek_offset = max(seek_offset - max_buffer, 0)
        frames: dict[int, Any] = {}
        try:
            container.seek(seek_offset, any_frame=False, backward=True, stream=stream)
            buffered = 0
            for frame in container.decode(video=0):
                frames[frame.pts] = frame
                if frame.pts >= end_offset:
                    if should_buffer and buffered < max_buffer:
                        buffered += 1
                        continue
                    break
        except _av_errors():
            pass
        result = [frames[p] for p in sorted(frames) if start_offset <= frames[p].pts <= end_offset]
    vframes = [frame.to_rgb().to_ndarray() for frame in result]
    return torch.as_tensor(np.stack(vframes))


def pyav_decode_only(path: str) -> int:
    """Decode every frame with frame+slice threads (``thread_type="AUTO"``, FFmpeg's automatic
    thread count) and convert nothing: the decode-only ceiling that read_video is measured against."""
    import av

    n = 0
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for _ in container.decode(stream):
            n += 1
    return n


def pyav_rgb24_stack(path: str) -> torch.Tensor:
    """Decode with threads, ``to_ndarray(format="rgb24")`` per frame, then stack."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        arrays = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    return torch.from_numpy(np.stack(arrays))


def pyav_seek_read(path: str, times: list[float], count: int) -> torch.Tensor:
    """For each time: seek to the keyframe before it, decode up to it, keep ``count`` RGB frames."""
    import av

    out = []
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = float(stream.time_base)
        for t in times:
            container.seek(int(t / tb), stream=stream, backward=True, any_frame=False)
            got = 0
            for frame in container.decode(stream):
                if frame.pts is not None and frame.pts * tb < t - 1e-6:
                    continue
                out.append(frame.to_ndarray(format="rgb24"))
                got += 1
                if got == count:
                    break
    return torch.from_numpy(np.stack(out))


def pyav_frames_at(path: str, pts: list[int], indices: list[int]) -> torch.Tensor:
    """Random access the naive way: one seek and decode per requested frame."""
    import av

    out = []
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i in indices:
            want = pts[i]
            container.seek(want, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts is not None and frame.pts >= want:
                    out.append(frame.to_ndarray(format="rgb24"))
                    break
    return torch.from_numpy(np.stack(out))


# --------------------------------------------------------------------------- video workloads

# contender names (and the name prefixes the targets find them by)
TV08 = "torchvision 0.8 algorithm (PyAV to_rgb + stack)"
CEILING = "PyAV decode only, no RGB (ceiling)"
TC_AUTO = "torchcodec CPU, FFmpeg threads auto"
TC_DEFAULT = "torchcodec CPU, default"


def _read_video_targets(which: str | None) -> list[Target]:
    """The read_video targets of a target clip: issue 12's (720p and 1080p) and issue 2's (720p)."""
    same_pixels = Target(12, "read_video pixels identical to the torchvision 0.8 algorithm (max |diff| 0)",
                         TV08, kind="identical")
    ceiling = Target(12, "read_video within 25% of the decode-only ceiling (>= 0.75x PyAV decode, "
                         "threads auto, no RGB)", CEILING, 0.75, kind="ceiling")
    if which == "720p":
        return [Target(12, "read_video 720p >= 1.8x the torchvision 0.8 algorithm", TV08, 1.8), ceiling,
                same_pixels,
                Target(2, "read_video ahead of torchcodec's CPU decoder (its default settings)", TC_DEFAULT),
                Target(2, "read_video ahead of torchcodec's CPU decoder (FFmpeg threads auto)", TC_AUTO)]
    if which == "1080p":
        return [Target(12, "read_video 1080p >= 1.5x the torchvision 0.8 algorithm", TV08, 1.5),
                Target(12, "read_video 1080p >= 1.2x torchcodec CPU with FFmpeg threads auto", TC_AUTO, 1.2),
                ceiling, same_pixels]
    return []


def _tc_default_threads(tc: Any) -> Any:
    """torchcodec's default ``num_ffmpeg_threads`` (1 in 0.17), read from its signature."""
    import inspect

    try:
        return inspect.signature(tc.VideoDecoder).parameters["num_ffmpeg_threads"].default
    except (KeyError, TypeError, ValueError):
        return "?"


def video_workloads(media: MediaFile, device: str, quick: bool, cpu_peers: bool) -> list[Workload]:
    import av

    import gpuvio

    path = str(media.path)
    pts, _fps = gpuvio.read_video_timestamps(path, pts_unit="pts")
    if not pts:
        return []
    sec_pts, _ = gpuvio.read_video_timestamps(path, pts_unit="sec")
    seconds = [float(p) for p in sec_pts]
    n = len(pts)
    tc, tc_reason = import_peer("torchcodec.decoders")
    nvc, nvc_reason = import_peer("PyNvVideoCodec") if device.startswith("cuda") else (None, None)
    gpu_index = torch.device(device).index or 0 if device.startswith("cuda") else 0

    def tc_decoder(dev: str, threads: int | None = 0) -> Any:
        # 0 lets FFmpeg pick the thread count (best for one decoder at a time); None leaves
        # torchcodec's default (1 in 0.17, which suits many decoders in parallel workers)
        kwargs = {} if threads is None else {"num_ffmpeg_threads": threads}
        return tc.VideoDecoder(path, dimension_order="NHWC", device=dev, **kwargs)

    def peer(contenders: list[Contender], make: Callable[[], Contender], library: str,
             reason: str | None, skip: list[dict[str, str]]) -> None:
        add_peer(contenders, skip, library, reason, make)

    # 1. read_video of the whole clip
    with av.open(path) as probe:
        vs = probe.streams.video[0]
        codec, size = vs.codec_context.name, f"{vs.codec_context.width}x{vs.codec_context.height}"
    gpuvio_name = gpuvio_label("read_video", device)
    rv: list[Contender] = [Contender(
        gpuvio_name, "gpuvio", device,
        synced(lambda: gpuvio.read_video(path, pts_unit="sec", device=device)[0], device),
        is_gpuvio=True, view=nhwc, note='default colour (color="torchvision": torchvision 0.8\'s pixels)')]
    rv_skip: list[dict[str, str]] = []
    rv.append(Contender(
        f'{gpuvio_name}, color="accurate"', "gpuvio", device,
        synced(lambda: gpuvio.read_video(path, pts_unit="sec", device=device, color="accurate")[0], device),
        view=nhwc, note="bilinear chroma at the codec's siting, exact rounding: not torchvision's pixels"))
    if device.startswith("cuda"):
        rv.append(Contender("gpuvio (cpu backend, cpu)", "gpuvio", "cpu",
                            lambda: gpuvio.read_video(path, pts_unit="sec")[0], view=nhwc))
    if cpu_peers:
        rv.append(Contender(TV08, "PyAV", "cpu", lambda: torchvision08_read_video(path), view=nhwc,
                            note="torchvision 0.8's read_video, re-implemented; no thread option set, "
                                 "as torchvision 0.8 (PyAV's default: slice threads)"))
        rv.append(Contender(CEILING, "PyAV", "cpu", lambda: pyav_decode_only(path),
                            note="thread_type AUTO (frame+slice, FFmpeg's thread count); converts "
                                 "nothing: an upper bound, not a peer"))
        rv.append(Contender("PyAV to_ndarray(rgb24) + stack", "PyAV", "cpu",
                            lambda: pyav_rgb24_stack(path), view=nhwc, note="thread_type AUTO"))
        peer(rv, lambda: Contender(
            f"{TC_AUTO} (get_frames_in_range)", "torchcodec", "cpu",
            lambda: tc_decoder("cpu", 0).get_frames_in_range(0, n).data, view=nhwc,
            note="num_ffmpeg_threads=0, seek_mode exact; decoder created in each run"),
            "torchcodec CPU, FFmpeg threads auto", tc_reason, rv_skip)
        peer(rv, lambda: Contender(
            f"{TC_DEFAULT} (num_ffmpeg_threads={_tc_default_threads(tc)}; get_frames_in_range)",
            "torchcodec", "cpu", lambda: tc_decoder("cpu", None).get_frames_in_range(0, n).data,
            view=nhwc, note="torchcodec's default settings; decoder created in each run"),
            "torchcodec CPU, default", tc_reason, rv_skip)
    if device.startswith("cuda"):
        peer(rv, lambda: Contender(
            "torchcodec CUDA (get_frames_in_range)", "torchcodec", device,
            synced(lambda: tc_decoder(device).get_frames_in_range(0, n).data, device), view=nhwc),
            "torchcodec CUDA", tc_reason, rv_skip)
        peer(rv, lambda: Contender(
            "PyNvVideoCodec SimpleDecoder (RGB)", "PyNvVideoCodec", device,
            synced(lambda: _nvc_frames(nvc, path, gpu_index, list(range(n))), device), view=nhwc),
            "PyNvVideoCodec", nvc_reason, rv_skip)
    label = f"read_video {codec} {size} whole clip ({n} frames)"
    # the targets are CPU ones: on a GPU the reference is the GPU backend
    cpu_target = media.role == "target_video" and not device.startswith("cuda")
    targets = _read_video_targets(media.target) if cpu_target else []
    workloads = [Workload(label, media, "frames/s", n, rv, rv_skip, targets=targets)]
    if media.target == "1080p":  # the 1080p clip is there for read_video alone
        return workloads

    # 2. VideoReader: seek to several times and read a few frames after each
    n_seeks, per_seek = (4, 5) if quick else (8, 10)
    last_start = seconds[max(n - per_seek - 1, 0)]
    times = [round(last_start * (i + 0.5) / n_seeks, 3) for i in range(n_seeks)]
    random.Random(0).shuffle(times)
    starts = [bisect.bisect_left(seconds, t - 1e-6) for t in times]

    def gpuvio_seek() -> torch.Tensor:
        frames = []
        with gpuvio.VideoReader(path, device=device) as reader:
            for t in times:
                reader.seek(t)
                frames += [next(reader)["data"] for _ in range(per_seek)]
        return torch.stack(frames)

    sk: list[Contender] = [Contender(gpuvio_label("open_video", device), "gpuvio", device,
                                     synced(gpuvio_seek, device), is_gpuvio=True, view=nchw)]
    sk_skip: list[dict[str, str]] = []
    if cpu_peers:
        sk.append(Contender("PyAV seek + decode to the time", "PyAV", "cpu",
                            lambda: pyav_seek_read(path, times, per_seek), view=nhwc))
        peer(sk, lambda: Contender(
            "torchcodec CPU, FFmpeg threads auto (get_frames_in_range per seek)", "torchcodec", "cpu",
            lambda: _tc_ranges(tc_decoder("cpu"), starts, per_seek), view=nhwc),
            "torchcodec CPU", tc_reason, sk_skip)
    if device.startswith("cuda"):
        peer(sk, lambda: Contender(
            "torchcodec CUDA (get_frames_in_range per seek)", "torchcodec", device,
            synced(lambda: _tc_ranges(tc_decoder(device), starts, per_seek), device), view=nhwc),
            "torchcodec CUDA", tc_reason, sk_skip)
    workloads.append(Workload(f"VideoReader seek + next ({n_seeks} seeks x {per_seek} frames)",
                              media, "frames/s", n_seeks * per_seek, sk, sk_skip))

    # 3. batched random access
    k = min(n, 8 if quick else 16)
    indices = random.Random(1).sample(range(n), k)
    ra: list[Contender] = [Contender(
        gpuvio_label("open_video", device), "gpuvio", device,
        synced(lambda: _gpuvio_frames_at(path, device, indices), device), is_gpuvio=True, view=nchw)]
    ra_skip: list[dict[str, str]] = []
    if cpu_peers:
        ra.append(Contender("PyAV seek + decode per frame", "PyAV", "cpu",
                            lambda: pyav_frames_at(path, pts, indices), view=nhwc))
        peer(ra, lambda: Contender(
            "torchcodec CPU, FFmpeg threads auto (get_frames_at)", "torchcodec", "cpu",
            lambda: tc_decoder("cpu").get_frames_at(indices).data, view=nhwc),
            "torchcodec CPU", tc_reason, ra_skip)
    if device.startswith("cuda"):
        peer(ra, lambda: Contender(
            "torchcodec CUDA (get_frames_at)", "torchcodec", device,
            synced(lambda: tc_decoder(device).get_frames_at(indices).data, device), view=nhwc),
            "torchcodec CUDA", tc_reason, ra_skip)
        peer(ra, lambda: Contender(
            "PyNvVideoCodec get_batch_frames_by_index (RGB)", "PyNvVideoCodec", device,
            synced(lambda: _nvc_frames(nvc, path, gpu_index, indices), device), view=nhwc),
            "PyNvVideoCodec", nvc_reason, ra_skip)
    workloads.append(Workload(f"VideoReader.get_frames_at ({k} random frames)", media, "frames/s",
                              k, ra, ra_skip))
    return workloads


def _gpuvio_frames_at(path: str, device: str, indices: list[int]) -> torch.Tensor:
    import gpuvio

    with gpuvio.VideoReader(path, device=device) as reader:
        return reader.get_frames_at(indices)


def _tc_ranges(decoder: Any, starts: list[int], count: int) -> torch.Tensor:
    return torch.cat([decoder.get_frames_in_range(s, s + count).data for s in starts])


def _nvc_frames(nvc: Any, path: str, gpu: int, indices: list[int]) -> torch.Tensor:
    """Raw PyNvVideoCodec: a SimpleDecoder producing interleaved RGB in device memory."""
    decoder = nvc.SimpleDecoder(path, gpu_id=gpu, use_device_memory=True,
                                output_color_type=nvc.OutputColorType.RGB)
    frames = decoder.get_batch_frames_by_index(indices)
    return torch.stack([torch.from_dlpack(f) for f in frames])
