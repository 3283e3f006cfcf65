"""The CPU side of ``VideoReader``: frame-by-frame decoding, precise seeking and random access.

Seeking is precise whatever the container does: FFmpeg seeks to a keyframe at or before the
target, but some demuxers land on a keyframe *after* it (seeking by dts with B-frames, HEVC
open-GOP leading pictures that cannot be decoded from the keyframe alone). After every seek the
first decoded frame is checked, and when it starts after the target the seek is repeated further
back, so that no frame at or after the target is skipped.
"""

from __future__ import annotations

import bisect
import heapq
import math
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from gpuvio._errors import DecodeError, InvalidArgumentError

from ._frames import ColorPolicy, FrameStack, OwnedContainers, audio_to_float, conversion_pool, converter_for, open_container
from ._video import PtsFiller, _Conversions, _divx_flag, stream_index

__all__ = ["FrameIndex", "PyAVVideoSource", "frame_with_pts", "stream_metadata"]

# how far back (seconds) the successive retries of a seek that landed after its target go
_SEEK_BACKOFF = (1.0, 4.0, 16.0)
# packed B-frames (DivX): the decoder gives the frames in display order, but the timestamps the
# AVI attaches to them come up to one frame out of order
_REORDER_WINDOW = 2
# a packet the decoder rejects is skipped (FFmpeg's own tools do the same); this many in a row
# mean the data is not video the decoder can read
_MAX_BAD_PACKETS = 16


@dataclass(frozen=True)
class FrameIndex:
    """Presentation timestamps of every frame of one stream, in display order."""

    pts: list[int]
    seconds: list[float]
    end_seconds: float  # when the last frame stops being shown
    keyframes: list[int]  # pts of the keyframes, sorted

    def __len__(self) -> int:
        return len(self.pts)


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


def _seconds(pts: int, time_base: Fraction) -> float:
    # the one conversion used for every timestamp the reader reports or compares
    return float(pts * time_base)


def _decode(container: Any, stream: Any) -> Iterator[Any]:
    """``container.decode(stream)``, packet by packet, skipping packets the decoder rejects."""
    import av

    bad = 0
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:
                bad += 1
                if bad >= _MAX_BAD_PACKETS:
                    raise DecodeError(f"decoding failed: {bad} packets in a row were rejected ({exc})") from None
                continue
            bad = 0
            yield from frames
    except av.FFmpegError as exc:  # a demuxing error: the rest of the file is unreadable
        raise DecodeError(f"reading the file failed: {exc}") from None


class _Frames:
    """Decoded frames of one stream from the current position: push-back, timestamps, errors.

    With ``reorder`` (packed DivX B-frames), frames keep the decoder's order, which is the
    display order (consecutive frames differ least that way), and take the timestamps of a window
    of ``reorder + 1`` frames in sorted order: so pts increase, as torchvision's VideoReader gives
    the frames, and random access by pts agrees with sequential reading.
    """

    def __init__(self, container: Any, stream: Any, reorder: int, *, from_start: bool = False) -> None:
        self._decoded = _decode(container, stream)
        # raw streams carry no timestamps: number the frames, when decoding from the start
        self._fill = PtsFiller(stream) if from_start else None
        self._reorder = reorder
        self._queue: deque[Any] = deque()  # frames in decoder order
        self._heap: list[int] = []  # their timestamps
        self._back: list[Any] = []

    def _pull(self) -> Any:
        while True:
            frame = next(self._decoded)
            if self._fill is not None:
                self._fill(frame)
            if frame.pts is not None:  # a frame without a timestamp cannot be placed
                return frame

    def __next__(self) -> Any:
        if self._back:
            return self._back.pop()
        if not self._reorder:
            return self._pull()
        while len(self._queue) <= self._reorder:
            try:
                frame = self._pull()
            except StopIteration:
                break
            self._queue.append(frame)
            heapq.heappush(self._heap, frame.pts)
        if not self._queue:
            raise StopIteration
        frame = self._queue.popleft()
        frame.pts = heapq.heappop(self._heap)
        return frame

    @classmethod
    def empty(cls) -> _Frames:
        """An exhausted iterator (a seek past any possible frame)."""
        frames = cls.__new__(cls)
        frames._decoded, frames._reorder, frames._heap, frames._back = iter(()), 0, [], []
        frames._fill = None
        frames._queue = deque()
        return frames

    def push_back(self, frame: Any) -> None:
        self._back.append(frame)

    def __iter__(self) -> Iterator[Any]:
        return self


def seek_to_keyframe(container: Any, stream: Any, target_pts: int, open_frames: Callable[[], Any],
                     *, before_seek: Callable[[], None] | None = None) -> Any | None:
    """Frames from a keyframe at or before ``target_pts``; shared by the CPU and NVDEC readers.

    Seeks, takes the first frame, and seeks further back (by ``_SEEK_BACKOFF`` seconds) when it
    starts after the target, since some demuxers land on a later keyframe. ``open_frames()``
    makes the frame iterator for the current position; it must have ``push_back(frame)`` and
    may have ``close()``. ``before_seek()`` runs before every seek (e.g. to flush a decoder).
    Returns None to mean: decode from the start (the target is at or before the stream's first
    frame, or every seek landed after it).
    """
    import av

    time_base = stream.time_base
    floor = stream.start_time if stream.start_time is not None else 0
    offset = target_pts
    for backoff in (0.0, *_SEEK_BACKOFF):
        offset = min(offset, target_pts - int(backoff / time_base))
        if offset <= floor:
            return None
        if before_seek is not None:
            before_seek()
        try:
            container.seek(offset, stream=stream, backward=True, any_frame=False)
        except av.FFmpegError:
            return None
        frames = open_frames()
        try:
            first = next(frames)
        except StopIteration:
            _close(frames)
            continue  # some demuxers seek past the last keyframe to nothing: go further back
        frames.push_back(first)
        if first.pts <= target_pts:
            return frames
        _close(frames)
    return None


def _close(frames: Any) -> None:
    close = getattr(frames, "close", None)
    if close is not None:
        close()


def _seek_frames(container: Any, stream: Any, target_pts: int, reorder: int) -> _Frames | None:
    """The CPU reader's :func:`seek_to_keyframe`."""
    return seek_to_keyframe(container, stream, target_pts, lambda: _Frames(container, stream, reorder))


def frame_with_pts(frames: Iterable[Any], target: int, wanted: Sequence[int]) -> Any:
    """The frame of ``frames`` whose pts is ``target``, the earlier ones skipped.

    ``wanted`` (``target`` first) only names what is missing in the error: a :class:`DecodeError`
    when the decoder goes past ``target`` or runs out, i.e. a frame the container lists does not
    come out of the decoder. Shared by the CPU reader and the NVDEC pipeline.
    """
    for frame in frames:
        if frame.pts < target:
            continue
        if frame.pts > target:
            raise DecodeError(f"the frame with pts {target}, listed by the container, could not be decoded "
                              f"(the decoder went on to pts {frame.pts})")
        return frame
    raise DecodeError(f"frames with pts {list(wanted)} could not be decoded (end of stream)")


class _RandomAccess:
    """The container ``get_frames_at`` decodes from, kept between calls with its position."""

    def __init__(self, source: Any, stream_index: int, reorder: int, owned: OwnedContainers) -> None:
        self._source = source
        self._owned = owned
        self.stream_index = stream_index
        self._reorder = reorder
        self._container: Any = None
        self._frames: _Frames | None = None
        self._used = False  # whether the open container has been read or seeked
        self.last: int | None = None  # pts of the last frame taken from self._frames

    def _open(self) -> None:
        if self._container is not None:
            self._owned.close(self._container)
        self._container = self._owned.open(self._source)
        self._stream = self._container.streams[self.stream_index]
        self._stream.thread_type = "SLICE"
        self._used = False
        self._frames, self.last = None, None

    def declared_size(self) -> tuple[int, int]:
        if self._container is None:
            self._open()
        return self._stream.codec_context.height, self._stream.codec_context.width

    def frames_towards(self, target: int, keyframes: list[int]) -> _Frames:
        """Frames that reach ``target``: the current ones when it lies ahead with no keyframe
        in between, else from a new position."""
        if self._container is None:
            self._open()
        last = self.last
        k = bisect.bisect_right(keyframes, target) - 1
        if self._frames is not None and last is not None and last < target and not (k >= 0 and keyframes[k] > last):
            return self._frames
        frames = None
        if target > (self._stream.start_time or 0):
            self._used = True  # _seek_frames seeks the container
            frames = _seek_frames(self._container, self._stream, target, self._reorder)
        if frames is None:
            # from the very start: a fresh container (a seek there would skip what an edit
            # list discards, which the first frames may depend on)
            if self._used:
                self._open()
            frames = _Frames(self._container, self._stream, self._reorder, from_start=True)
        self._used = True
        self._frames, self.last = frames, None
        return frames

    def forget(self) -> None:
        self._frames, self.last = None, None

    def close(self) -> None:
        if self._container is not None:
            self._owned.close(self._container)
            self._container = None
        self._frames = None


class PyAVVideoSource:
    """One open container and a current stream, decoded on demand with PyAV.

    Video frames come out as ``Tensor[C, H, W] uint8`` (gpuvio's colour policy), audio frames as
    ``Tensor[samples, channels] float32``; timestamps are seconds (float).
    """

    backend_name = "cpu"

    def __init__(self, source: Any, *, stream: tuple[str, int], num_threads: int = 0,
                 device: torch.device | None = None, color: ColorPolicy = "torchvision") -> None:
        self._source = source
        self._color = color
        self._num_threads = num_threads
        self._device = device if device is not None and device.type != "cpu" else None
        # every container this reader opens is closed with it, or when it is collected unclosed
        # (never in a forked child: see gpuvio._forksafe)
        self._owned = OwnedContainers()
        weakref.finalize(self, self._owned.close_all)
        self._container = self._open()
        self._fresh = True  # nothing read or seeked since the container was opened
        self._index: dict[int, FrameIndex] = {}
        self._ahead: deque[tuple[Any, np.ndarray, float]] = deque()
        self._random: _RandomAccess | None = None  # get_frames_at's own container
        self.set_stream(*stream)

    def _open(self) -> Any:
        import av

        try:
            return self._owned.open(self._source)
        except av.FFmpegError as exc:
            name = self._source if isinstance(self._source, str) else "<bytes>"
            raise DecodeError(f"cannot open {name}: {exc}") from None

    # ------------------------------------------------------------------ streams
    def set_stream(self, kind: str, index: int) -> None:
        streams = {"video": self._container.streams.video, "audio": self._container.streams.audio}[kind]
        if index >= len(streams):
            available = [f"{t}:{i}" for t in ("video", "audio")
                         for i, _ in enumerate(getattr(self._container.streams, t))]
            if not available:  # not a wrong argument: the data holds nothing to decode
                raise DecodeError("no video or audio stream could be found in this data (corrupt, or not media)")
            raise InvalidArgumentError(
                f"stream {kind}:{index} does not exist; this file has "
                f"{', '.join(available) or 'no video or audio streams'}")
        self.kind = kind
        self._stream_number = index
        self._configure(streams[index])
        self._restart()

    def _configure(self, stream: Any) -> None:
        if stream.codec_context is None:
            raise DecodeError(f"FFmpeg has no decoder for {stream.type} stream {self._stream_number} "
                              "of this file")
        self._stream = stream
        self._time_base = stream.time_base
        self._reorder = _REORDER_WINDOW if stream.type == "video" and _divx_flag(stream) == b"p" else 0
        if stream.type == "video":
            self._converter = converter_for(stream.codec_context.name, self._color)
            if self._num_threads:
                stream.thread_type = "AUTO"
                stream.codec_context.thread_count = self._num_threads
            else:
                # one frame of lookahead converts on another core while this one decodes
                stream.thread_type = "SLICE"

    def metadata(self) -> dict[str, dict[str, list[float]]]:
        return stream_metadata(self._container)

    # ------------------------------------------------------------------ positioning
    def _restart(self) -> None:
        """Back to the very first frame of the current stream.

        A container that has been read from is reopened rather than seeked: a seek to the start
        skips what an edit list discards (AAC priming packets, say), which the decoder needs to
        produce the first samples exactly as a fresh decode does.
        """
        self._ahead.clear()
        self._skip_before: float | None = None
        if not self._fresh:
            self._owned.close(self._container)
            self._container = self._open()
            self._configure(self._container.streams.get(**{self.kind: self._stream_number})[0])
        self._fresh = False
        self._frames = _Frames(self._container, self._stream, self._reorder, from_start=True)

    def seek(self, time_s: float, *, keyframes_only: bool = False) -> None:
        """Next frame: the first with pts >= ``time_s`` (or, with ``keyframes_only``, the keyframe
        at or before it). ``time_s <= 0`` restarts from the first frame, negative pts included."""
        self._ahead.clear()
        if not time_s > 0 or math.isinf(time_s):  # <= 0 or NaN: from the start
            if math.isinf(time_s) and time_s > 0:
                self._frames = _Frames.empty()
                return
            self._restart()
            return
        if keyframes_only:
            # rounded to the nearest tick, as torchvision does: where a tick is a frame (AVI),
            # 8.0 s must reach the keyframe at tick 240 even if 8.0 / time_base is 239.9999
            target = round(Fraction(time_s) / self._time_base)
            import av

            self._fresh = False
            try:
                self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
            except av.FFmpegError:
                self._restart()
                return
            self._frames = _Frames(self._container, self._stream, self._reorder)
            self._skip_before = None
            return
        target = int(math.floor(Fraction(time_s) / self._time_base))
        self._fresh = False
        frames = _seek_frames(self._container, self._stream, target, self._reorder)
        if frames is None:
            self._restart()
        else:
            self._frames = frames
        self._skip_before = time_s

    # ------------------------------------------------------------------ sequential reading
    def _next_frame(self) -> tuple[Any, float]:
        while True:
            frame = next(self._frames)
            seconds = _seconds(frame.pts, self._time_base)
            if self._skip_before is not None and seconds < self._skip_before:
                continue
            self._skip_before = None
            return frame, seconds

    def next(self) -> tuple[torch.Tensor, float]:
        """The next frame of the current stream and its pts in seconds; StopIteration at the end."""
        if self.kind == "audio":
            frame, seconds = self._next_frame()
            data = torch.from_numpy(np.ascontiguousarray(audio_to_float(frame).T))
            return self._place(data), seconds
        # one frame of lookahead: its colour conversion runs while the caller uses this one
        if not self._ahead:
            frame, seconds = self._next_frame()
            self._ahead.append((*self._convert_ahead(frame), seconds))
        future, out, seconds = self._ahead.popleft()
        try:
            frame, upcoming = self._next_frame()
            self._ahead.append((*self._convert_ahead(frame), upcoming))
        except StopIteration:
            pass
        future.result()
        return self._place(torch.from_numpy(out)), seconds

    def _convert_ahead(self, frame: Any) -> tuple[Any, np.ndarray]:
        # The output is allocated here, on the caller's thread, which also frees it: memory
        # allocated on a pool thread and freed on another keeps glibc's RSS growing over
        # thousands of readers, though nothing leaks.
        out = np.empty((3, frame.height, frame.width), dtype=np.uint8)
        return conversion_pool().submit(self._converter.convert_into, frame, out, "CHW"), out

    def _place(self, tensor: torch.Tensor) -> torch.Tensor:
        if self._device is None:
            return tensor
        return tensor.to(self._device)

    # ------------------------------------------------------------------ random access
    def frame_index(self) -> FrameIndex:
        """Every frame's timestamp in the current stream, read once from the packets."""
        key = self._stream.index
        index = self._index.get(key)
        if index is None:
            import av

            try:
                with open_container(self._source) as container:
                    pts, keys = stream_index(container, container.streams[key],
                                             reopen=lambda: open_container(self._source))
            except av.FFmpegError as exc:
                raise DecodeError(f"cannot index the frames of this stream: {exc}") from None
            tb = self._time_base
            seconds = [_seconds(p, tb) for p in pts]
            if len(pts) >= 2:
                end = seconds[-1] + (seconds[-1] - seconds[-2])
            elif pts:
                rate = getattr(self._stream, "average_rate", None)
                end = seconds[-1] + (1 / float(rate) if rate else 0.0)
            else:
                end = 0.0
            index = FrameIndex(pts, seconds, end, keys)
            self._index[key] = index
        return index

    def __len__(self) -> int:
        return len(self.frame_index())

    def frame_positions(self, indices: list[int]) -> list[int]:
        """Display positions for frame numbers (negative ones count from the end); IndexError
        for any outside the video."""
        count = len(self.frame_index())
        positions = []
        for i in indices:
            j = int(i)
            if not -count <= j < count:
                raise IndexError(f"frame index {i} is out of range for a video of {count} frames")
            positions.append(j % count)
        return positions

    def get_frames_at(self, indices: list[int]) -> tuple[torch.Tensor, list[float]]:
        """Frames at display positions ``indices`` (negative counts from the end) as
        ``Tensor[N, 3, H, W] uint8``, each distinct frame decoded once, GOP by GOP.

        Frames are returned at the stream's declared size (a frame of another size is scaled).
        The sequential position of the reader is left unchanged.
        """
        if self.kind != "video":
            raise InvalidArgumentError("get_frames_at needs a video stream; call set_current_stream('video')")
        index = self.frame_index()
        positions = self.frame_positions(indices)
        if not positions:
            return self._place(torch.empty((0, 3, 0, 0), dtype=torch.uint8)), []
        wanted = sorted(set(index.pts[p] for p in positions))
        stack = self._decode_pts(wanted, index)
        slot_of = {pts: slot for slot, pts in enumerate(wanted)}
        order = [slot_of[index.pts[p]] for p in positions]
        if order == list(range(len(wanted))):
            frames = stack.result(0, len(wanted))
        else:
            frames = stack.result(0, 0, order=order)
        return self._place(frames), [index.seconds[p] for p in positions]

    def indices_played_at(self, seconds: list[float]) -> list[int]:
        """Display positions of the frames on screen at each time (the last frame with pts <= t)."""
        index = self.frame_index()
        out = []
        for t in seconds:
            t = float(t)
            if not index.seconds or not index.seconds[0] <= t < index.end_seconds:
                start = index.seconds[0] if index.seconds else 0.0
                raise IndexError(
                    f"time {t} s is outside the video, which plays from {start} s to {index.end_seconds} s")
            out.append(bisect.bisect_right(index.seconds, t) - 1)
        return out

    def _decode_pts(self, wanted: list[int], index: FrameIndex) -> FrameStack:
        """Decode the frames with exactly these pts (sorted) into a stack, slot i = wanted[i].

        Runs on a second container, kept between calls, so the sequential position is
        untouched. Seeks only when the next wanted frame lies behind the decoder or beyond a
        keyframe not decoded yet; otherwise decoding goes on from the last frame returned.
        """
        import av

        if self._random is None or self._random.stream_index != self._stream.index:
            if self._random is not None:
                self._random.close()
            self._random = _RandomAccess(self._source, self._stream.index, self._reorder, self._owned)
        random = self._random
        conversions: _Conversions | None = None
        try:
            declared = random.declared_size()
            conversions = _Conversions(self._converter, "CHW", declared if all(declared) else None)
            for i, target in enumerate(wanted):
                frame = frame_with_pts(random.frames_towards(target, index.keyframes), target, wanted[i:])
                random.last = frame.pts
                conversions.put(i, frame, len(wanted))
            conversions.finish()
        except BaseException as exc:
            random.forget()  # start afresh next time
            if conversions is not None:
                conversions.abort()  # every write ends before the stack is dropped
            if isinstance(exc, av.FFmpegError):
                raise DecodeError(f"decoding failed: {exc}") from None
            raise
        assert conversions.stack is not None
        return conversions.stack

    def close(self) -> None:
        self._ahead.clear()
        if self._random is not None:
            self._random.close()
            self._random = None
        self._owned.close_all()
