"""Containers and streams: opening sources, timestamps, indexes and metadata.

Everything here is demuxer-side and device-neutral: PyAV reads the container on the host for
every backend, so timestamps, frame indexes and metadata are the same whichever backend decodes.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from .. import _forksafe as forksafe

__all__ = [
    "RESERVE_LIMIT",
    "FrameIndex",
    "OwnedContainers",
    "PtsFiller",
    "audio_to_float",
    "build_index",
    "capacity_hint",
    "divx_flag",
    "empty_audio",
    "empty_video",
    "initial_capacity",
    "open_container",
    "seconds",
    "should_buffer",
    "source_name",
    "stream_index",
    "stream_metadata",
    "to_stream_units",
]


def source_name(source: Any) -> str:
    """How messages name a source: its path, or ``<bytes>`` for data in memory."""
    return source if isinstance(source, str) else "<bytes>"


def open_container(source: Any, **kwargs: Any) -> Any:
    """``av.open`` for a path or in-memory bytes (a ``memoryview``, read without copying)."""
    import av

    if isinstance(source, memoryview):
        source = _MemoryReader(source)
    return av.open(source, metadata_errors="ignore", **kwargs)


class _MemoryReader(io.RawIOBase):
    """A seekable read-only file over a memoryview; ``io.BytesIO`` would copy the whole video."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view.cast("B") if view.format != "B" or view.ndim != 1 else view
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        chunk = self._view[self._pos : self._pos + target.nbytes]
        target[: chunk.nbytes] = chunk
        self._pos += chunk.nbytes
        return chunk.nbytes

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._view.nbytes}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


class OwnedContainers:
    """The containers a long-lived object (a reader) has open, closed with it.

    Each is held by :mod:`gpuvio._forksafe` while open, so a forked child never frees or closes
    one it inherited (its decoder's threads are gone there: freeing it would wait for them
    forever). :meth:`close_all` is safe to call from a ``weakref.finalize`` on the owner: in a
    child it leaves the inherited containers alone.
    """

    def __init__(self) -> None:
        self._open: list[Any] = []

    def open(self, source: Any) -> Any:
        """:func:`open_container`, held until :meth:`close`."""
        container = forksafe.hold(open_container(source))
        self._open.append(container)
        return container

    def close(self, container: Any) -> None:
        """Close ``container`` (one of ours); in a forked child, just forget it."""
        if container in self._open:
            self._open.remove(container)
        if forksafe.release(container):
            container.close()

    def close_all(self) -> None:
        while self._open:
            self.close(self._open[-1])


def seconds(pts: int, time_base: Fraction) -> float:
    """A timestamp in seconds: the one conversion used for every time a reader reports or compares."""
    return float(pts * time_base)


def divx_flag(stream: Any) -> bytes | None:
    """The DivX build flag from the extradata (b"p" marks packed B-frames), or None if absent."""
    if stream.codec_context is None:  # no decoder for this codec
        return None
    extradata = stream.codec_context.extradata
    if not extradata or b"DivX" not in extradata:
        return None
    tail = extradata[extradata.find(b"DivX"):]
    match = re.search(rb"DivX(\d+)Build(\d+)(\w)", tail) or re.search(rb"DivX(\d+)b(\d+)(\w)", tail)
    return None if match is None else match.group(3)


def should_buffer(stream: Any) -> bool:
    """torchvision buffers every stream (audio too) unless a DivX build string says 'not packed'."""
    if stream.type != "video":
        return True
    flag = divx_flag(stream)
    return flag is None or flag == b"p"


def to_stream_units(value: Any, stream: Any, *, ceil: bool) -> Any:
    """Seconds -> ``stream`` time-base units, in torchvision's exact arithmetic (inf stays inf)."""
    if value == float("inf"):
        return value
    scaled = value * (1 / stream.time_base)
    return int(math.ceil(scaled)) if ceil else int(math.floor(scaled))


def capacity_hint(stream: Any, start: Any, end: Any) -> int:
    """About how many frames ``[start, end]`` (stream units) holds: reserve that many slots."""
    rate = stream.average_rate or stream.guessed_rate
    total = stream.frames or 0
    if not total and rate and stream.duration and stream.time_base:
        total = int(math.ceil(float(stream.duration * stream.time_base * rate)))
    span = None
    if end != float("inf") and rate and stream.time_base:
        span = int(math.ceil(float((end - max(start, 0)) * stream.time_base * rate))) + 3
    if total and span:
        return min(total + 2, span)
    return total + 2 if total else (span or 64)


# The first reservation for a video's frames holds at most this many bytes: the frame count in a
# header can be wrong, or hostile (a corrupt AVI claimed 65,353 frames: 26 GB), and a longer read
# grows the buffer instead.
RESERVE_LIMIT = 2 << 30


def initial_capacity(capacity: int, frame_bytes: int) -> int:
    """How many frames to reserve first for an estimate of ``capacity`` frames of ``frame_bytes``."""
    return max(1, min(capacity, RESERVE_LIMIT // max(frame_bytes, 1)))


class PtsFiller:
    """Gives timestamps to the frames of a stream that has none (raw H.264/HEVC/MPEG-4 files).

    Used on decodes that start at the beginning of the stream: when the first frame comes
    without a pts, frame ``k`` gets ``k`` frame durations (from the stream's frame rate, in its
    time base; for audio, the samples so far), as FFmpeg's command-line tools do; otherwise
    frames are left alone (and one without a pts is skipped by the callers). Every path
    (read_video, timestamps, VideoReader) numbers frames the same way, so their pts agree.
    """

    def __init__(self, stream: Any) -> None:
        self._audio = stream.type == "audio"
        tb = stream.time_base
        if self._audio:
            rate = stream.rate
        else:
            rate = getattr(stream, "average_rate", None) or getattr(stream, "guessed_rate", None)
        self._unit = 1 / (rate * tb) if rate and tb else Fraction(1)  # time-base units per frame/sample
        self._elapsed = Fraction(0)
        self._active: bool | None = None  # decided by the first frame

    def __call__(self, frame: Any) -> Any:
        if self._active is None:
            self._active = frame.pts is None
        if self._active:
            frame.pts = round(self._elapsed)
            self._elapsed += self._unit * (getattr(frame, "samples", 1) if self._audio else 1)
        return frame


def stream_index(container: Any, stream: Any, reopen: Callable[[], Any] | None = None
                 ) -> tuple[list[int], list[int]]:
    """``(pts, keyframe_pts)`` of ``stream``, both sorted; one pass over the packets.

    Packets flagged for discard (edit lists) are left out, as the decoder drops their frames.
    Falls back to decoding the stream when packets lack timestamps or are packed (DivX), from a
    seek to the start or, when the container cannot seek, from ``reopen()`` (a fresh container).
    """
    import av

    usable = stream.type != "video" or divx_flag(stream) != b"p"
    pts: list[int] = []
    keys: list[int] = []
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        if packet.pts is None:
            usable = False  # the decoder will have to tell
            continue
        if packet.is_keyframe:
            keys.append(packet.pts)
        if not packet.is_discard:
            pts.append(packet.pts)
    if not usable:
        opened = None
        try:
            container.seek(0, stream=stream, backward=True, any_frame=False)
        except av.FFmpegError:
            if reopen is None:
                raise
            container = opened = reopen()
            stream = container.streams[stream.index]
        try:
            fill = PtsFiller(stream)
            pts = [f.pts for f in map(fill, container.decode(stream)) if f.pts is not None]
        finally:
            if opened is not None:
                opened.close()
        if not keys:
            keys = pts[:1]  # no keyframe flags to go by: only the start is a safe place to begin
    pts.sort()
    keys.sort()
    return pts, keys


@dataclass(frozen=True)
class FrameIndex:
    """Presentation timestamps of every frame of one stream, in display order."""

    pts: list[int]
    seconds: list[float]
    end_seconds: float  # when the last frame stops being shown
    keyframes: list[int]  # pts of the keyframes, sorted

    def __len__(self) -> int:
        return len(self.pts)


def build_index(source: Any, stream: Any) -> FrameIndex:
    """The :class:`FrameIndex` of ``stream`` (of a container opened from ``source``), from a
    container of its own so that the caller's position is untouched."""
    with open_container(source) as container:
        pts, keys = stream_index(container, container.streams[stream.index],
                                 reopen=lambda: open_container(source))
    tb = stream.time_base
    times = [seconds(p, tb) for p in pts]
    if len(pts) >= 2:
        end = times[-1] + (times[-1] - times[-2])
    elif pts:
        rate = getattr(stream, "average_rate", None)
        end = times[-1] + (1 / float(rate) if rate else 0.0)
    else:
        end = 0.0
    return FrameIndex(pts, times, end, keys)


def _duration_seconds(container: Any, stream: Any) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return 0.0


def stream_metadata(container: Any) -> dict[str, dict[str, list[float]]]:
    """torchvision's ``get_metadata()`` layout: duration and rate of every video and audio stream."""
    out: dict[str, dict[str, list[float]]] = {}
    for stream in container.streams:
        if stream.type == "video":
            entry = out.setdefault("video", {"duration": [], "fps": []})
            rate = stream.average_rate or stream.guessed_rate
            entry["fps"].append(float(rate) if rate else 0.0)
        elif stream.type == "audio":
            entry = out.setdefault("audio", {"duration": [], "framerate": []})
            entry["framerate"].append(float(stream.rate or 0))
        else:
            continue
        entry["duration"].append(_duration_seconds(container, stream))
    return out


def audio_to_float(frame: Any) -> np.ndarray:
    """``ndarray[channels, samples] float32`` in [-1, 1] from any PyAV audio frame."""
    array = frame.to_ndarray()
    fmt = frame.format
    channels = len(frame.layout.channels)
    if not fmt.is_planar:
        array = array.reshape(-1, channels).T
    kind = array.dtype
    if kind == np.uint8:
        out = (array.astype(np.float32) - 128.0) / 128.0
    elif kind == np.int16:
        out = array.astype(np.float32) / 32768.0
    elif kind == np.int32:
        out = array.astype(np.float32) / 2147483648.0
    elif kind == np.int64:
        out = (array.astype(np.float64) / 9223372036854775808.0).astype(np.float32)
    else:
        out = array.astype(np.float32, copy=False)
    return np.ascontiguousarray(out)


def empty_video(layout: str = "HWC") -> torch.Tensor:
    """torchvision's empty ``read_video`` result, permuted like the frames would be."""
    return torch.empty((0, 3, 1, 1) if layout == "CHW" else (0, 1, 1, 3), dtype=torch.uint8)


def empty_audio() -> torch.Tensor:
    return torch.empty((1, 0), dtype=torch.float32)
