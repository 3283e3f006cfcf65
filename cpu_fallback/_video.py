"""read_video, read_video_timestamps and write_video with PyAV: torchvision's semantics.

Frame selection follows torchvision's PyAV implementation exactly: seek a little before the
start, decode, keep frames whose pts lie in the inclusive range ``[start, end]``, and when no
frame has exactly the start pts also keep the last frame before it. The differences are in the
engineering: colour conversion runs on worker threads while the decoder goes on, only frames
that are kept get converted, frames are copied once into the output, and audio is always
float32.
"""

from __future__ import annotations

import math
import re
import warnings
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from gpuvio._errors import DecodeError, InvalidArgumentError
from gpuvio._source import atomic_output

from ._frames import audio_to_float, convert_async, frame_to_rgb, open_container

__all__ = ["read_video", "read_video_timestamps", "write_video"]

# torchvision decodes a few frames past the end for DivX packed B-frames, whose pts arrive out of order
_MAX_BUFFER = 5


def _name(source: Any) -> str:
    return source if isinstance(source, str) else "<bytes>"


def _divx_flag(stream: Any) -> bytes | None:
    """The DivX build flag from the extradata (b"p" marks packed B-frames), or None if absent."""
    extradata = stream.codec_context.extradata
    if not extradata or b"DivX" not in extradata:
        return None
    tail = extradata[extradata.find(b"DivX"):]
    match = re.search(rb"DivX(\d+)Build(\d+)(\w)", tail) or re.search(rb"DivX(\d+)b(\d+)(\w)", tail)
    return None if match is None else match.group(3)


def _should_buffer(stream: Any) -> bool:
    # torchvision buffers unless a DivX build string says the stream is not packed
    flag = _divx_flag(stream)
    return flag is None or flag == b"p"


def _to_stream_units(value: Any, stream: Any, *, ceil: bool) -> Any:
    # torchvision's exact arithmetic, so that boundaries agree with it bit for bit
    if value == float("inf"):
        return value
    scaled = value * (1 / stream.time_base)
    return int(math.ceil(scaled)) if ceil else int(math.floor(scaled))


def _read_from_stream(container: Any, start: Any, end: Any, pts_unit: str, stream: Any,
                      convert: bool) -> tuple[list[Any], list[Any]]:
    """Frames of ``stream`` in ``[start, end]`` sorted by pts, plus the pts themselves.

    With ``convert`` the returned items are futures of RGB arrays (video); else raw frames.
    """
    import av

    if pts_unit == "sec":
        start = _to_stream_units(start, stream, ceil=False)
        end = _to_stream_units(end, stream, ceil=True)
    should_buffer = stream.type == "video" and _should_buffer(stream)
    seek_offset = max(start - 1, 0)
    if should_buffer:
        seek_offset = max(seek_offset - _MAX_BUFFER, 0)
    try:
        container.seek(seek_offset, any_frame=False, backward=True, stream=stream)
    except av.FFmpegError:
        return [], []
    kept: dict[int, Any] = {}
    before: tuple[int, Any] | None = None  # the last frame before start
    seen_start = False
    buffered = 0
    try:
        for frame in container.decode(stream):
            pts = frame.pts
            if pts is None:
                continue
            if pts < start:
                if before is None or pts >= before[0]:
                    before = (pts, frame)
            else:
                seen_start = seen_start or pts == start
                if pts <= end:
                    kept[pts] = convert_async(frame) if convert else frame
                if pts >= end:
                    if should_buffer and buffered < _MAX_BUFFER:
                        buffered += 1
                        continue
                    break
    except av.FFmpegError as exc:
        warnings.warn(f"decoding stopped early at a corrupt packet: {exc}", RuntimeWarning, stacklevel=4)
    order = sorted(kept)
    items = [kept[p] for p in order]
    if (kept or before) and start > 0 and not seen_start and before is not None:
        order.insert(0, before[0])
        items.insert(0, convert_async(before[1]) if convert else before[1])
    return items, order


def _align_audio(aframes: np.ndarray, first_pts: int, last_pts: int, start: Any, end: Any) -> np.ndarray:
    # torchvision's _align_audio_frames, including its arithmetic
    total = aframes.shape[1]
    step = (last_pts - first_pts + 1) / total
    s_idx, e_idx = 0, total
    if first_pts < start:
        s_idx = int((start - first_pts) / step)
    if last_pts > end:
        e_idx = int((end - last_pts) / step)
    return aframes[:, s_idx:e_idx]


def read_video(source: Any, start_pts: Any, end_pts: Any, pts_unit: str
               ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    import av

    info: dict[str, Any] = {}
    futures: list[Any] = []
    audio: np.ndarray | None = None
    try:
        container = open_container(source)
    except av.FFmpegError as exc:
        warnings.warn(f"Failed to open container for {_name(source)}; Caught error: {exc}",
                      RuntimeWarning, stacklevel=3)
        return _empty_video(), _empty_audio(), info
    with container:
        if container.streams.video:
            vstream = container.streams.video[0]
            vstream.thread_type = "AUTO"
            futures, _ = _read_from_stream(container, start_pts, end_pts, pts_unit, vstream, True)
            if vstream.average_rate is not None:
                info["video_fps"] = float(vstream.average_rate)
        if container.streams.audio:
            astream = container.streams.audio[0]
            frames, order = _read_from_stream(container, start_pts, end_pts, pts_unit, astream, False)
            info["audio_fps"] = astream.rate
            if frames:
                audio = np.concatenate([audio_to_float(f) for f in frames], axis=1)
                start, end = start_pts, end_pts
                if pts_unit == "sec":
                    start = _to_stream_units(start, astream, ceil=False)
                    end = _to_stream_units(end, astream, ceil=True)
                audio = _align_audio(audio, order[0], order[-1], start, end)
        rgb = [f.result() for f in futures]
    video = _stack(rgb)
    aframes = torch.from_numpy(np.ascontiguousarray(audio)) if audio is not None else _empty_audio()
    return video, aframes, info


def _stack(frames: list[np.ndarray]) -> torch.Tensor:
    if not frames:
        return _empty_video()
    height, width = frames[0].shape[:2]
    out = torch.empty((len(frames), height, width, 3), dtype=torch.uint8)
    target = out.numpy()
    for i, frame in enumerate(frames):
        if frame.shape[:2] != (height, width):
            raise DecodeError(
                f"the frame size changes inside the clip ({width}x{height} at first, "
                f"{frame.shape[1]}x{frame.shape[0]} at frame {i}); read it with VideoReader instead")
        target[i] = frame
    return out


def _empty_video() -> torch.Tensor:
    return torch.empty((0, 1, 1, 3), dtype=torch.uint8)


def _empty_audio() -> torch.Tensor:
    return torch.empty((1, 0), dtype=torch.float32)


def video_pts(container: Any, stream: Any) -> list[int]:
    """Every frame's pts in ``stream``, from packets when they can be trusted, else by decoding.

    Packets flagged for discard (edit lists) are dropped, as the decoder drops their frames.
    """
    # packed B-frames put two frames in one packet: their packets undercount the frames
    usable = _divx_flag(stream) != b"p"
    if usable:
        pts: list[int] = []
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if packet.pts is None:
                usable = False
                break
            if not packet.is_discard:
                pts.append(packet.pts)
        if usable:
            return sorted(pts)
        container.seek(0, stream=stream, backward=True, any_frame=False)
    return sorted(f.pts for f in container.decode(stream) if f.pts is not None)


def read_video_timestamps(source: Any, pts_unit: str) -> tuple[list[Any], float | None]:
    import av

    pts: list[Any] = []
    fps = None
    time_base = None
    try:
        container = open_container(source)
    except av.FFmpegError as exc:
        warnings.warn(f"Failed to open container for {_name(source)}; Caught error: {exc}",
                      RuntimeWarning, stacklevel=3)
        return pts, fps
    with container:
        if container.streams.video:
            stream = container.streams.video[0]
            time_base = stream.time_base
            try:
                pts = video_pts(container, stream)
            except av.FFmpegError:
                warnings.warn(f"Failed decoding frames for file {_name(source)}", RuntimeWarning, stacklevel=3)
            if stream.average_rate is not None:
                fps = float(stream.average_rate)
    if pts_unit == "sec" and time_base is not None:
        pts = [Fraction(p) * time_base for p in pts]
    return pts, fps


_AUDIO_DTYPES = {"dbl": "<f8", "dblp": "<f8", "flt": "<f4", "fltp": "<f4", "s16": "<i2", "s16p": "<i2",
                 "s32": "<i4", "s32p": "<i4", "u8": "u1", "u8p": "u1"}


def write_video(filename: str, video: torch.Tensor, fps: Fraction, *, video_codec: str,
                options: dict[str, Any] | None, audio_array: torch.Tensor | None, audio_fps: int | None,
                audio_codec: str | None, audio_options: dict[str, Any] | None) -> None:
    import av

    frames = video.numpy()
    with atomic_output(filename) as tmp:
        try:
            # the temporary name keeps the suffix, from which FFmpeg picks the container
            with av.open(tmp, mode="w") as container:
                stream = container.add_stream(video_codec, rate=fps)
                stream.width = frames.shape[2]
                stream.height = frames.shape[1]
                stream.pix_fmt = "rgb24" if video_codec == "libx264rgb" else "yuv420p"
                stream.options = {str(k): str(v) for k, v in (options or {}).items()}
                if audio_array is not None:
                    _write_audio(container, audio_array, audio_fps, audio_codec or "aac", audio_options)
                for index, image in enumerate(frames):
                    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                    frame.pts = index
                    for packet in stream.encode(frame):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
        except av.FFmpegError as exc:
            raise InvalidArgumentError(f"encoding {filename!r} with {video_codec!r} failed: {exc}") from None
        except (ValueError, TypeError) as exc:
            raise InvalidArgumentError(f"encoding {filename!r} with {video_codec!r} failed: {exc}") from None


def _write_audio(container: Any, audio: torch.Tensor, rate: int | None, codec: str,
                 options: dict[str, Any] | None) -> None:
    import av

    stream = container.add_stream(codec, rate=rate)
    stream.options = {str(k): str(v) for k, v in (options or {}).items()}
    channels = audio.shape[0]
    layout = "stereo" if channels > 1 else "mono"
    if channels > 2:
        raise InvalidArgumentError(f"audio_array has {channels} channels; write_video supports 1 or 2")
    sample_format = stream.format.name
    samples = audio.numpy().astype(np.dtype(_AUDIO_DTYPES[sample_format]))
    if not stream.format.is_planar:
        samples = samples.T.reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format=sample_format, layout=layout)
    frame.sample_rate = rate
    for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
