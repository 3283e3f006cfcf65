"""The workloads and their contenders: gpuvio and every installed peer doing the same work.

Each :class:`Contender` is a zero-argument callable that does one unit of work (decode the whole
clip, decode one image...) and returns its output, so the runner can time it and check that the
peers agree with gpuvio. Peers are found at run time; one that is missing or fails to start is
recorded with the reason instead of silently left out.

The torchvision 0.8 ``read_video`` algorithm is re-implemented here (torchvision removed it in
0.26): PyAV decodes with its default settings, frames are kept in a dict keyed by pts, then each
is converted with ``frame.to_rgb().to_ndarray()`` and the list is ``np.stack``-ed. torchvision 0.8
set no thread option on the stream (neither ``thread_type`` nor ``thread_count``), so the decoder
runs with PyAV's defaults: slice threading with an automatic count (FFmpeg's own frame threading
stays off), which for one-slice-per-frame H.264 (x264's default) means decoding on one core.

Performance targets (:class:`Target`) are attached to the workloads they are measured on and
checked by ``_report``: gpuvio's speed-up over a named peer, gpuvio's fraction of a ceiling (the
decode-only row), or pixel identity with a peer.
"""

from __future__ import annotations

import bisect
import importlib
import io
import math
import random
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from ._media import MediaFile

__all__ = ["Contender", "Target", "Workload", "build_workloads"]


@dataclass
class Contender:
    """One way of doing a workload's work.

    ``view`` turns the output into a CPU uint8 tensor in the workload's canonical layout
    (``[N, H, W, C]`` for video, ``[C, H, W]`` or ``[N, C, H, W]`` for images) for the agreement check;
    None means the output is not compared (e.g. encoded bytes of another encoder).
    """

    name: str
    library: str
    device: str
    fn: Callable[[], Any]
    is_gpuvio: bool = False
    note: str = ""
    view: Callable[[Any], torch.Tensor] | None = None


@dataclass(frozen=True)
class Target:
    """A performance (or agreement) target of an issue, checked on one workload's results.

    ``peer`` is the start of the contender name it is measured against. ``kind``:

    - ``"speedup"``: gpuvio's throughput / the peer's must be at least ``needs``;
    - ``"ceiling"``: the same ratio, read as the fraction of a ceiling that gpuvio reaches (the
      decode-only row: ``needs=0.75`` is "within 25% of it");
    - ``"identical"``: the peer's pixels must equal gpuvio's (agreement max |diff| 0).
    """

    issue: int
    text: str
    peer: str
    needs: float = 1.0
    kind: Literal["speedup", "ceiling", "identical"] = "speedup"


@dataclass
class Workload:
    """A piece of work measured for several contenders on one media file."""

    name: str
    media: MediaFile
    unit: Literal["frames/s", "images/s"]
    items: int  # frames or images produced by one call
    contenders: list[Contender]
    skipped: list[dict[str, str]] = field(default_factory=list)
    short: bool = False  # calls of a few ms: the runner repeats them to fill each timed run
    compare: Literal["pixels", "bytes"] = "pixels"  # what the agreement column compares
    targets: list[Target] = field(default_factory=list)  # the issue targets checked on this workload


def _sync_fn(device: str) -> Callable[[], None]:
    if device.startswith("cuda"):
        return torch.cuda.synchronize
    return lambda: None


def _synced(fn: Callable[[], Any], device: str) -> Callable[[], Any]:
    """Wrap ``fn`` so that queued GPU work is finished when it returns (timings include it)."""
    if not device.startswith("cuda"):
        return fn
    sync = _sync_fn(device)

    def run() -> Any:
        out = fn()
        sync()
        return out

    return run


def _import(module: str) -> tuple[Any, str | None]:
    """(module, None), or (None, the reason it cannot be used: first line of the error)."""
    try:
        return importlib.import_module(module), None
    except ImportError as exc:
        top = module.split(".")[0]
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == top:
            return None, f"{top} is not installed"
        return None, f"{module}: {_first_line(exc)}"
    except Exception as exc:  # noqa: BLE001 -- torchcodec without FFmpeg libraries raises RuntimeError
        return None, f"{module}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _sample_frames(video: torch.Tensor) -> torch.Tensor:
    """Six frames of ``[N, H, W, C]`` spread over the clip (the first two, so a B-frame of the
    first GOP, a third, half, two thirds, the last), on the CPU: enough to compare."""
    n = video.shape[0]
    picks = sorted({min(i, n - 1) for i in (0, 1, n // 3, n // 2, 2 * n // 3, n - 1)}) if n else []
    return video[picks].cpu()


def _nhwc(t: torch.Tensor) -> torch.Tensor:
    return _sample_frames(t)


def _nchw(t: torch.Tensor) -> torch.Tensor:
    return _sample_frames(t.permute(0, 2, 3, 1))


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

def _gpuvio_label(operation: str, device: str) -> str:
    from .._dispatch import select_backend

    backend, target = select_backend(operation, device)  # type: ignore[arg-type]
    return f"gpuvio ({backend.name} backend, {target.type})"


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


def _video_workloads(media: MediaFile, device: str, quick: bool, cpu_peers: bool) -> list[Workload]:
    import av

    import gpuvio

    path = str(media.path)
    pts, _fps = gpuvio.read_video_timestamps(path, pts_unit="pts")
    if not pts:
        return []
    sec_pts, _ = gpuvio.read_video_timestamps(path, pts_unit="sec")
    seconds = [float(p) for p in sec_pts]
    n = len(pts)
    tc, tc_reason = _import("torchcodec.decoders")
    nvc, nvc_reason = _import("PyNvVideoCodec") if device.startswith("cuda") else (None, None)
    gpu_index = torch.device(device).index or 0 if device.startswith("cuda") else 0

    def tc_decoder(dev: str, threads: int | None = 0) -> Any:
        # 0 lets FFmpeg pick the thread count (best for one decoder at a time); None leaves
        # torchcodec's default (1 in 0.17, which suits many decoders in parallel workers)
        kwargs = {} if threads is None else {"num_ffmpeg_threads": threads}
        return tc.VideoDecoder(path, dimension_order="NHWC", device=dev, **kwargs)

    def add_peer(contenders: list[Contender], make: Callable[[], Contender], library: str,
                 reason: str | None, skip: list[dict[str, str]]) -> None:
        if reason is not None:
            skip.append({"contender": library, "reason": reason})
            return
        try:
            contenders.append(make())
        except Exception as exc:  # noqa: BLE001
            skip.append({"contender": library, "reason": f"failed to set up: {_first_line(exc)}"})

    # 1. read_video of the whole clip
    with av.open(path) as probe:
        vs = probe.streams.video[0]
        codec, size = vs.codec_context.name, f"{vs.codec_context.width}x{vs.codec_context.height}"
    gpuvio_name = _gpuvio_label("read_video", device)
    rv: list[Contender] = [Contender(
        gpuvio_name, "gpuvio", device,
        _synced(lambda: gpuvio.read_video(path, pts_unit="sec", device=device)[0], device),
        is_gpuvio=True, view=_nhwc, note='default colour (color="torchvision": torchvision 0.8\'s pixels)')]
    rv_skip: list[dict[str, str]] = []
    rv.append(Contender(
        f'{gpuvio_name}, color="accurate"', "gpuvio", device,
        _synced(lambda: gpuvio.read_video(path, pts_unit="sec", device=device, color="accurate")[0], device),
        view=_nhwc, note="bilinear chroma at the codec's siting, exact rounding: not torchvision's pixels"))
    if device.startswith("cuda"):
        rv.append(Contender("gpuvio (cpu backend, cpu)", "gpuvio", "cpu",
                            lambda: gpuvio.read_video(path, pts_unit="sec")[0], view=_nhwc))
    if cpu_peers:
        rv.append(Contender(TV08, "PyAV", "cpu", lambda: torchvision08_read_video(path), view=_nhwc,
                            note="torchvision 0.8's read_video, re-implemented; no thread option set, "
                                 "as torchvision 0.8 (PyAV's default: slice threads)"))
        rv.append(Contender(CEILING, "PyAV", "cpu", lambda: pyav_decode_only(path),
                            note="thread_type AUTO (frame+slice, FFmpeg's thread count); converts "
                                 "nothing: an upper bound, not a peer"))
        rv.append(Contender("PyAV to_ndarray(rgb24) + stack", "PyAV", "cpu",
                            lambda: pyav_rgb24_stack(path), view=_nhwc, note="thread_type AUTO"))
        add_peer(rv, lambda: Contender(
            f"{TC_AUTO} (get_frames_in_range)", "torchcodec", "cpu",
            lambda: tc_decoder("cpu", 0).get_frames_in_range(0, n).data, view=_nhwc,
            note="num_ffmpeg_threads=0, seek_mode exact; decoder created in each run"),
            "torchcodec CPU, FFmpeg threads auto", tc_reason, rv_skip)
        add_peer(rv, lambda: Contender(
            f"{TC_DEFAULT} (num_ffmpeg_threads={_tc_default_threads(tc)}; get_frames_in_range)",
            "torchcodec", "cpu", lambda: tc_decoder("cpu", None).get_frames_in_range(0, n).data,
            view=_nhwc, note="torchcodec's default settings; decoder created in each run"),
            "torchcodec CPU, default", tc_reason, rv_skip)
    if device.startswith("cuda"):
        add_peer(rv, lambda: Contender(
            "torchcodec CUDA (get_frames_in_range)", "torchcodec", device,
            _synced(lambda: tc_decoder(device).get_frames_in_range(0, n).data, device), view=_nhwc),
            "torchcodec CUDA", tc_reason, rv_skip)
        add_peer(rv, lambda: Contender(
            "PyNvVideoCodec SimpleDecoder (RGB)", "PyNvVideoCodec", device,
            _synced(lambda: _nvc_frames(nvc, path, gpu_index, list(range(n))), device), view=_nhwc),
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

    sk: list[Contender] = [Contender(_gpuvio_label("open_video", device), "gpuvio", device,
                                     _synced(gpuvio_seek, device), is_gpuvio=True, view=_nchw)]
    sk_skip: list[dict[str, str]] = []
    if cpu_peers:
        sk.append(Contender("PyAV seek + decode to the time", "PyAV", "cpu",
                            lambda: pyav_seek_read(path, times, per_seek), view=_nhwc))
        add_peer(sk, lambda: Contender(
            "torchcodec CPU, FFmpeg threads auto (get_frames_in_range per seek)", "torchcodec", "cpu",
            lambda: _tc_ranges(tc_decoder("cpu"), starts, per_seek), view=_nhwc),
            "torchcodec CPU", tc_reason, sk_skip)
    if device.startswith("cuda"):
        add_peer(sk, lambda: Contender(
            "torchcodec CUDA (get_frames_in_range per seek)", "torchcodec", device,
            _synced(lambda: _tc_ranges(tc_decoder(device), starts, per_seek), device), view=_nhwc),
            "torchcodec CUDA", tc_reason, sk_skip)
    workloads.append(Workload(f"VideoReader seek + next ({n_seeks} seeks x {per_seek} frames)",
                              media, "frames/s", n_seeks * per_seek, sk, sk_skip))

    # 3. batched random access
    k = min(n, 8 if quick else 16)
    indices = random.Random(1).sample(range(n), k)
    ra: list[Contender] = [Contender(
        _gpuvio_label("open_video", device), "gpuvio", device,
        _synced(lambda: _gpuvio_frames_at(path, device, indices), device), is_gpuvio=True, view=_nchw)]
    ra_skip: list[dict[str, str]] = []
    if cpu_peers:
        ra.append(Contender("PyAV seek + decode per frame", "PyAV", "cpu",
                            lambda: pyav_frames_at(path, pts, indices), view=_nhwc))
        add_peer(ra, lambda: Contender(
            "torchcodec CPU, FFmpeg threads auto (get_frames_at)", "torchcodec", "cpu",
            lambda: tc_decoder("cpu").get_frames_at(indices).data, view=_nhwc),
            "torchcodec CPU", tc_reason, ra_skip)
    if device.startswith("cuda"):
        add_peer(ra, lambda: Contender(
            "torchcodec CUDA (get_frames_at)", "torchcodec", device,
            _synced(lambda: tc_decoder(device).get_frames_at(indices).data, device), view=_nhwc),
            "torchcodec CUDA", tc_reason, ra_skip)
        add_peer(ra, lambda: Contender(
            "PyNvVideoCodec get_batch_frames_by_index (RGB)", "PyNvVideoCodec", device,
            _synced(lambda: _nvc_frames(nvc, path, gpu_index, indices), device), view=_nhwc),
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


# --------------------------------------------------------------------------- image workloads

def _pil_decode(raw: bytes) -> torch.Tensor:
    """The naive Pillow path: open, load, wrap as CHW (a view of the HWC array)."""
    from PIL import Image

    with Image.open(io.BytesIO(raw)) as im:
        arr = np.asarray(im)
    with warnings.catch_warnings():  # the array is read-only; the tensor is only read
        warnings.simplefilter("ignore", UserWarning)
        t = torch.from_numpy(arr)
    return t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)


def _pil_encode(image: torch.Tensor, fmt: str, **kwargs: Any) -> bytes:
    from PIL import Image

    arr = image.permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _chw(t: torch.Tensor) -> torch.Tensor:
    return t.cpu()


def _nchw_list(ts: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([t.cpu() for t in ts[:2]])


def _hwc_to_chw(t: torch.Tensor) -> torch.Tensor:
    return t.permute(2, 0, 1).cpu()


def _image_workloads(media: MediaFile, device: str, quick: bool, cpu_peers: bool) -> list[Workload]:
    import gpuvio

    raw = media.path.read_bytes()
    data = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    tv, tv_reason = _import("torchvision.io")
    cuda = device.startswith("cuda")
    gpu_index = torch.device(device).index or 0 if cuda else 0
    workloads: list[Workload] = []
    image = gpuvio.decode_image(data)
    size = f"{image.shape[2]}x{image.shape[1]}"

    def peer(contenders: list[Contender], skip: list[dict[str, str]], label: str, reason: str | None,
             make: Callable[[], Contender]) -> None:
        if reason is not None:
            skip.append({"contender": label, "reason": reason})
            return
        try:
            contenders.append(make())
        except Exception as exc:  # noqa: BLE001
            skip.append({"contender": label, "reason": f"failed to set up: {_first_line(exc)}"})

    if media.role == "jpeg":
        nvi, nvi_reason = _import("nvidia.nvimgcodec") if cuda else (None, None)
        _dali, dali_reason = _import("nvidia.dali") if cuda else (None, None)
        batch = 8 if quick else 16
        for n_images in (1, batch):
            items = raw if n_images == 1 else [raw] * n_images
            tensors = data if n_images == 1 else [data] * n_images
            view = _chw if n_images == 1 else _nchw_list
            cs: list[Contender] = [Contender(
                _gpuvio_label("decode_image", device), "gpuvio", device,
                _synced(lambda t=tensors: gpuvio.decode_image(t, device=device), device),
                is_gpuvio=True, view=view)]
            skip: list[dict[str, str]] = []
            if cuda:
                cs.append(Contender("gpuvio (cpu backend, cpu)", "gpuvio", "cpu",
                                    lambda t=tensors: gpuvio.decode_image(t), view=view))
            # peer() calls these makers at once; the defaults bind this iteration's values anyway
            peer(cs, skip, "torchvision.io.decode_jpeg", tv_reason, lambda t=tensors, v=view: Contender(
                f"torchvision.io.decode_jpeg ({'cuda' if cuda else 'cpu'})", "torchvision", device,
                _synced(lambda: tv.decode_jpeg(t, device=device), device), view=v))
            if cuda:
                peer(cs, skip, "torchvision.io.decode_jpeg (cpu)", tv_reason, lambda t=tensors, v=view: Contender(
                    "torchvision.io.decode_jpeg (cpu)", "torchvision", "cpu",
                    lambda: tv.decode_jpeg(t), view=v))
            if cpu_peers:
                cs.append(Contender("Pillow (libjpeg-turbo) -> tensor", "Pillow", "cpu",
                                    (lambda: _pil_decode(raw)) if n_images == 1
                                    else (lambda k=n_images: [_pil_decode(raw) for _ in range(k)]),
                                    view=view))
            if cuda:
                peer(cs, skip, "nvImageCodec", nvi_reason,
                     lambda it=items, v=view: _nvimgcodec_contender(nvi, it, device, gpu_index, v))
                peer(cs, skip, "DALI", dali_reason,
                     lambda k=n_images, v=view: _dali_contender(raw, k, device, gpu_index, v))
            title = f"decode_image JPEG {size}" + (f" (list of {n_images})" if n_images > 1 else "")
            targets = []
            if n_images == 1 and media.params.get("width") == 1920 and not cuda:
                jpeg_peer = "torchvision.io.decode_jpeg" if tv is not None else "Pillow"
                targets = [Target(2, f"decode_image JPEG 1080p at least as fast as {jpeg_peer}", jpeg_peer)]
            workloads.append(Workload(title, media, "images/s", n_images, cs, skip, short=True,
                                      targets=targets))
    if media.role == "png":
        cs = [Contender(_gpuvio_label("decode_image", device), "gpuvio", device,
                        _synced(lambda: gpuvio.decode_image(data, device=device), device),
                        is_gpuvio=True, view=_chw)]
        skip = []
        if cpu_peers:
            peer(cs, skip, "torchvision.io.decode_png", tv_reason, lambda: Contender(
                "torchvision.io.decode_png", "torchvision", "cpu", lambda: tv.decode_png(data), view=_chw))
            cs.append(Contender("Pillow (libpng) -> tensor", "Pillow", "cpu", lambda: _pil_decode(raw),
                                view=_chw))
        workloads.append(Workload(f"decode_image PNG {size}", media, "images/s", 1, cs, skip, short=True))

    # encoding: the decoded image back to JPEG (quality 75) or PNG (level 6)
    cpu_image = image[:3].contiguous() if image.shape[0] >= 3 else image
    if media.role == "jpeg":
        dev_image = cpu_image.to(device) if cuda else cpu_image
        cs = [Contender("gpuvio encode_jpeg " + ("(cuda tensor)" if cuda else "(cpu backend)"), "gpuvio",
                        device, _synced(lambda: gpuvio.encode_jpeg(dev_image, quality=75), device),
                        is_gpuvio=True)]
        skip = []
        if cuda:
            cs.append(Contender("gpuvio encode_jpeg (cpu tensor)", "gpuvio", "cpu",
                                lambda: gpuvio.encode_jpeg(cpu_image, quality=75)))
        peer(cs, skip, "torchvision.io.encode_jpeg", tv_reason, lambda: Contender(
            f"torchvision.io.encode_jpeg ({'cuda' if cuda else 'cpu'})", "torchvision", device,
            _synced(lambda: tv.encode_jpeg(dev_image, quality=75), device)))
        if cpu_peers:
            cs.append(Contender("Pillow save(JPEG, quality=75)", "Pillow", "cpu",
                                lambda: _pil_encode(cpu_image, "JPEG", quality=75)))
        if cuda:
            peer(cs, skip, "nvImageCodec encoder", _import("nvidia.nvimgcodec")[1],
                 lambda: _nvimgcodec_encoder(dev_image, gpu_index, device))
        for c in cs:
            c.view = _bytes_view
        workloads.append(Workload(f"encode_jpeg {size} quality 75", media, "images/s", 1, cs, skip,
                                  short=True, compare="bytes"))
    if media.role == "png":
        cs = [Contender("gpuvio encode_png (cpu backend)", "gpuvio", "cpu",
                        lambda: gpuvio.encode_png(cpu_image, compression_level=6), is_gpuvio=True)]
        skip = []
        if cpu_peers:
            peer(cs, skip, "torchvision.io.encode_png", tv_reason, lambda: Contender(
                "torchvision.io.encode_png", "torchvision", "cpu",
                lambda: tv.encode_png(cpu_image, compression_level=6)))
            cs.append(Contender("Pillow save(PNG, compress_level=6)", "Pillow", "cpu",
                                lambda: _pil_encode(cpu_image, "PNG", compress_level=6)))
        for c in cs:
            c.view = _bytes_view
        workloads.append(Workload(f"encode_png {size} level 6", media, "images/s", 1, cs, skip, short=True,
                                  compare="bytes"))
    return workloads


def _bytes_view(out: Any) -> torch.Tensor | None:
    """Encoded output of any library as a flat CPU uint8 tensor (None if it cannot be read)."""
    if isinstance(out, torch.Tensor):
        return out.cpu().flatten()
    try:
        return torch.frombuffer(bytearray(memoryview(out)), dtype=torch.uint8)
    except (TypeError, ValueError):
        return None


def _nvimgcodec_contender(nvi: Any, items: Any, device: str, gpu: int,
                          view: Callable[[Any], torch.Tensor]) -> Contender:
    decoder = nvi.Decoder(device_id=gpu)

    def run() -> Any:
        out = decoder.decode(items)
        if isinstance(out, list):
            return [torch.as_tensor(o, device=device).permute(2, 0, 1) for o in out]
        return torch.as_tensor(out, device=device).permute(2, 0, 1)

    return Contender("nvImageCodec Decoder.decode (raw)", "nvImageCodec", device, _synced(run, device),
                     view=view)


def _nvimgcodec_encoder(image: torch.Tensor, gpu: int, device: str) -> Contender:
    import nvidia.nvimgcodec as nvi

    encoder = nvi.Encoder(device_id=gpu)
    hwc = image.permute(1, 2, 0).contiguous()
    params = nvi.EncodeParams(quality_type=nvi.QualityType.QUALITY, quality_value=75)
    return Contender("nvImageCodec Encoder.encode (raw)", "nvImageCodec", device,
                     _synced(lambda: encoder.encode(nvi.as_image(hwc), "jpeg", params=params), device))


def _dali_contender(raw: bytes, batch: int, device: str, gpu: int,
                    view: Callable[[Any], torch.Tensor]) -> Contender:
    """DALI's mixed (nvJPEG) decoder in a pipeline fed from Python, outputs copied into torch."""
    from nvidia.dali import fn, pipeline_def, types
    from nvidia.dali.plugin.pytorch import feed_ndarray

    @pipeline_def(batch_size=batch, num_threads=2, device_id=gpu, prefetch_queue_depth=1)
    def pipe() -> Any:
        jpegs = fn.external_source(name="jpegs", device="cpu")
        return fn.decoders.image(jpegs, device="mixed", output_type=types.RGB)

    pipeline = pipe()
    pipeline.build()
    encoded = [np.frombuffer(raw, dtype=np.uint8)] * batch

    def run() -> Any:
        pipeline.feed_input("jpegs", encoded)
        (out,) = pipeline.run()
        images = []
        for i in range(batch):
            t = out[i]
            dst = torch.empty(t.shape(), dtype=torch.uint8, device=device)
            feed_ndarray(t, dst)
            images.append(dst.permute(2, 0, 1))
        return images[0] if batch == 1 else images

    return Contender("DALI fn.decoders.image (mixed)", "DALI", device, _synced(run, device), view=view)


# --------------------------------------------------------------------------- entry

def build_workloads(media: list[MediaFile], *, device: str, quick: bool,
                    only: list[str] | None = None) -> list[Workload]:
    """Every workload for the media on ``device`` ("cpu" or "cuda[:N]"), peers included.

    On a CUDA device the CPU-only peers (PyAV, Pillow) are still measured once, so the GPU
    numbers have a CPU baseline in the same record.
    """
    workloads: list[Workload] = []
    for m in media:
        if m.kind == "video":
            workloads += _video_workloads(m, device, quick, cpu_peers=True)
        else:
            workloads += _image_workloads(m, device, quick, cpu_peers=True)
    # several --media files can give the same workload name: tell them apart by the file
    counts: dict[str, int] = {}
    for w in workloads:
        counts[w.name] = counts.get(w.name, 0) + 1
    for w in workloads:
        if counts[w.name] > 1:
            w.name = f"{w.name} [{w.media.path.name}]"
    if only:
        workloads = [w for w in workloads if any(o.lower() in w.name.lower() for o in only)]
    return workloads
