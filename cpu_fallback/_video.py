"""read_video, read_video_timestamps and write_video with PyAV: torchvision's semantics.

Frame selection is torchvision 0.8's PyAV algorithm, step for step: seek a little before the
start (further back when packed B-frames may reorder pts), decode, keep one frame per pts in the
inclusive range ``[start, end]``, decode up to five frames past the end when buffering, and when
no frame has exactly the start pts add the last frame before it. 'sec' times convert to stream
units with floor (start) and ceil (end), in torchvision's arithmetic.

Unlike torchvision, a range always gives what a full decode filtered by those rules gives: a
seek that lands after the start (MPEG-TS, AVI without an index, B-frames seeked by dts), delivers
nothing or fails is retried further back, then replaced by a decode from the start of the stream
(logged at DEBUG level on the ``gpuvio`` logger); MPEG-PS, whose timestamps are wrong for a
while after a seek, is always decoded from the start. Audio is decoded from a little before the
start, so that the first frame's samples are those of a full decode too (each audio frame
overlaps the one before).

What differs is the engineering: only kept frames are converted, on worker threads while the
decoder goes on, each straight into its slot of the output tensor (no per-frame arrays, no
``stack``); audio is always ``float32 [K, L]``; and frames whose size changes mid-stream are
scaled to the size of the first frame kept instead of failing.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from ._frames import (
    ColorPolicy,
    FrameStack,
    Layout,
    RgbConverter,
    audio_to_float,
    conversion_pool,
    conversion_workers,
    converter_for,
    open_container,
)
from ._seeking import MAX_BUFFER, close_frames, preroll, rewind, seek_offset, seek_to_range
from ._video_writer import write_video

# Selection, capacity_hint, read_audio_stream, empty_audio and MAX_BUFFER are shared with the
# NVDEC backend, which reuses this module's frame selection rather than re-implementing it.
__all__ = ["MAX_BUFFER", "PtsFiller", "Selection", "capacity_hint", "empty_audio", "read_audio_stream",
           "read_video", "read_video_timestamps", "should_buffer", "stream_index", "to_stream_units",
           "video_pts", "write_video"]

_log = logging.getLogger("gpuvio")

# How the decoder uses threads in read_video, per colour policy. The default conversion (swscale's
# unscaled SIMD path) costs a fraction of a decode, so FFmpeg's own threads ("AUTO": frame
# threads) get the cores. The "accurate" one costs more than decoding: there "SLICE", a
# single-threaded decode with one slice per frame (most H.264), leaves the other cores to the
# conversion (measured on 2 cores, 720p H.264: SLICE ahead of AUTO/FRAME for "accurate").
DECODER_THREAD_TYPE: dict[str, str] = {"torchvision": "AUTO", "accurate": "SLICE"}


def _name(source: Any) -> str:
    return source if isinstance(source, str) else "<bytes>"


def _divx_flag(stream: Any) -> bytes | None:
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
    flag = _divx_flag(stream)
    return flag is None or flag == b"p"


def to_stream_units(value: Any, stream: Any, *, ceil: bool) -> Any:
    """Seconds -> ``stream`` time-base units, in torchvision's exact arithmetic (inf stays inf)."""
    if value == float("inf"):
        return value
    scaled = value * (1 / stream.time_base)
    return int(math.ceil(scaled)) if ceil else int(math.floor(scaled))


class Selection:
    """torchvision's frame selection, fed one decoded frame at a time.

    ``keep(pts, frame)`` is called for every frame in ``[start, end]`` in decode order (a pts seen
    twice is kept again: the later frame wins, as in torchvision's dict). The last frame before
    ``start`` is held in :attr:`before`; :meth:`needs_before` says whether it belongs in the result.
    """

    def __init__(self, start: Any, end: Any, buffer: bool, keep: Callable[[int, Any], None]) -> None:
        self.start, self.end = start, end
        self._buffer, self._keep = buffer, keep
        self.before: tuple[int, Any] | None = None
        self.kept: set[int] = set()
        self._buffered = 0

    def feed(self, frame: Any) -> bool:
        """Take one frame; False once torchvision would stop decoding."""
        pts = frame.pts
        if pts is None:  # torchvision would fail on it; such frames cannot be placed anyway
            return True
        if pts < self.start:
            if self.before is None or pts >= self.before[0]:
                self.before = (pts, frame)
            return True
        if pts <= self.end:
            self.kept.add(pts)
            self._keep(pts, frame)
        if pts >= self.end:
            if self._buffer and self._buffered < MAX_BUFFER:
                self._buffered += 1
                return True
            return False
        return True

    def needs_before(self) -> bool:
        return self.before is not None and self.start > 0 and self.start not in self.kept


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
            self._elapsed += self._unit * (frame.samples if self._audio else 1)
        return frame


def _decode_range(container: Any, stream: Any, selection: Selection,
                  reopen: Callable[[], Any] | None = None, *, fresh: bool = False) -> bool:
    """Decode the frames ``selection`` needs and feed them to it. False if nothing could be read.

    Seeks like torchvision (:func:`seek_to_range`), but where the seek does not reach back to
    the range's start (or cannot be trusted, or fails: a raw elementary stream cannot seek), the
    stream is decoded from its start instead: from ``container`` itself when ``fresh`` (opened
    and not read yet), else from ``reopen()`` (a fresh container; a seek to the start may lose
    what an edit list discards), else from :func:`rewind`. Slower, the same frames as a full
    decode: torchvision returned nothing or too few frames there.
    """
    import av

    start = selection.start
    frames = None
    opened = None
    from_start = fresh and seek_offset(start, selection._buffer) - preroll(stream) <= (stream.start_time or 0)
    if from_start:
        frames = container.decode(stream)  # a seek would land at the start anyway
    else:
        frames = seek_to_range(container, stream, start, selection._buffer, lambda: container.decode(stream))
    if frames is None:
        _log.debug("read_video: the seek for start %s in %s stream %d (%s) did not reach back to it; "
                   "decoding from the start", start, stream.type, stream.index, container.format.name)
        from_start = True
        if reopen is not None:
            thread_type = stream.thread_type
            container = opened = reopen()
            stream = container.streams[stream.index]
            stream.thread_type = thread_type
            frames = container.decode(stream)
        else:
            frames = rewind(container, stream, lambda: container.decode(stream))
            if frames is None:
                return False
    fill = PtsFiller(stream) if from_start else (lambda frame: frame)
    try:
        for frame in frames:
            if not selection.feed(fill(frame)):
                break
    except av.FFmpegError as exc:
        # torchvision keeps what it decoded before the error, silently; we say so
        warnings.warn(f"decoding stopped early at a corrupt packet: {exc}", RuntimeWarning, stacklevel=4)
    finally:
        close_frames(frames)
        if opened is not None:
            opened.close()
    return True


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


class _Conversions:
    """Converts kept frames into their slots of a :class:`FrameStack`, beside the decoder.

    Frames go to the pool's threads while they have room. When all are busy, the decoding thread
    converts the next frame itself rather than queueing it: with one thread per core, decoding
    is never starved of CPU by the converters (a decoder thread sharing cores with as many
    converters as cores loses a third of its time) and no core waits.
    """

    def __init__(self, converter: RgbConverter, layout: Layout, size: tuple[int, int] | None = None) -> None:
        self._converter = converter
        self._layout = layout
        self._size = size  # (height, width) of the output; default: the first frame's
        self._pool = conversion_pool()
        self._workers = conversion_workers()
        self._pending: deque[list[Any]] = deque()  # [slot, frame], not handed out yet
        self._running: list[Future] = []
        self._writes: dict[int, Future] = {}
        self.stack: FrameStack | None = None

    def put(self, slot: int, frame: Any, capacity: int) -> None:
        if self.stack is None:
            height, width = self._size or (frame.height, frame.width)
            self.stack = FrameStack(height, width, capacity, self._layout)
        self.stack.reserve(slot + 1, self.finish)
        for item in self._pending:
            if item[0] == slot:  # a repeated pts not converted yet: the later frame wins
                item[1] = frame
                return
        previous = self._writes.pop(slot, None)
        if previous is not None:
            previous.result()  # a repeated pts already converting: let it finish first
        self._pending.append([slot, frame])
        self._pump()

    def _pump(self) -> None:
        still = []
        for future in self._running:
            if future.done():
                future.result()  # a conversion error surfaces here
            else:
                still.append(future)
        self._running = still
        # each pool thread gets a frame to work on and two waiting, so that it never idles
        # while the decoding thread is busy converting
        while self._pending and len(self._running) < 3 * self._workers:
            slot, frame = self._pending.popleft()
            future = self._pool.submit(self._converter.convert_into, frame, self.stack.slot(slot),  # type: ignore[union-attr]
                                       self._layout)
            self._running.append(future)
            self._writes[slot] = future
        while self._pending:
            slot, frame = self._pending.popleft()
            self._converter.convert_into(frame, self.stack.slot(slot), self._layout)  # type: ignore[union-attr]

    def finish(self) -> None:
        """Wait until every frame put so far is in the stack."""
        self._pump()
        for future in self._running:
            future.result()
        self._running = []

    def abort(self) -> None:
        """Stop converting: cancel what has not started, wait for what has (it writes our memory)."""
        self._pending.clear()
        for future in self._running:
            future.cancel()
        for future in self._running:
            if not future.cancelled():
                future.exception()
        self._running = []


def _read_video_stream(container: Any, stream: Any, start: Any, end: Any, layout: Layout,
                       reopen: Callable[[], Any] | None = None, *, fresh: bool = False,
                       color: ColorPolicy = "torchvision") -> torch.Tensor:
    """The selected frames of ``stream`` as ``Tensor[T, H, W, 3]`` (or ``[T, 3, H, W]``) uint8,
    converted as they come."""
    conversions = _Conversions(converter_for(stream.codec_context.name, color), layout)
    reserve_front = start > 0  # slot 0 waits for the frame before start, if it turns out needed
    capacity = capacity_hint(stream, start, end) + int(reserve_front)
    slots: dict[int, int] = {}

    def keep(pts: int, frame: Any) -> None:
        slot = slots.get(pts)
        if slot is None:
            slot = slots[pts] = len(slots) + int(reserve_front)
        conversions.put(slot, frame, capacity)

    selection = Selection(start, end, should_buffer(stream), keep)
    try:
        if not _decode_range(container, stream, selection, reopen, fresh=fresh):
            return _empty_video(layout)
        if selection.needs_before():
            pts, frame = selection.before  # type: ignore[misc]
            slots[pts] = 0
            conversions.put(0, frame, 2)
        conversions.finish()
    except BaseException:
        conversions.abort()
        raise
    if not slots:
        return _empty_video(layout)
    order = [slots[p] for p in sorted(slots)]
    first = order[0]
    stack = conversions.stack
    assert stack is not None
    if order == list(range(first, first + len(order))):
        return stack.result(first, first + len(order))
    return stack.result(0, 0, order=order)


def read_audio_stream(container: Any, stream: Any, start: Any, end: Any,
                      reopen: Callable[[], Any] | None = None, *, fresh: bool = False) -> np.ndarray | None:
    """``ndarray[K, L] float32`` of the selected audio frames, aligned like torchvision, or None.

    ``reopen()`` gives a fresh container, for when the seek does not reach back to ``start``;
    without it the container is seeked back to the start of the stream instead.
    """
    frames: dict[int, Any] = {}
    selection = Selection(start, end, should_buffer(stream), frames.__setitem__)
    if not _decode_range(container, stream, selection, reopen, fresh=fresh):
        return None
    order = sorted(frames)
    items = [frames[p] for p in order]
    if selection.needs_before():
        pts, frame = selection.before  # type: ignore[misc]
        order.insert(0, pts)
        items.insert(0, frame)
    if not items:
        return None
    audio = np.concatenate([audio_to_float(f) for f in items], axis=1)
    return _align_audio(audio, order[0], order[-1], start, end)


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


def read_video(source: Any, start_pts: Any, end_pts: Any, pts_unit: str, layout: Layout = "HWC",
               color: ColorPolicy = "torchvision") -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """See :func:`gpuvio.read_video`; ``end_pts`` is ``inf`` for 'to the end'.

    ``layout="CHW"`` gives ``Tensor[T, 3, H, W]``, contiguous, written that way directly: it
    skips interleaving the colour planes, about 15% of the CPU time of a 720p read.
    """
    import av

    info: dict[str, Any] = {}
    video = _empty_video(layout)
    audio: np.ndarray | None = None
    try:
        container = open_container(source)
    except av.FFmpegError as exc:
        warnings.warn(f"Failed to open container for {_name(source)}; Caught error: {exc}",
                      RuntimeWarning, stacklevel=3)
        return video, empty_audio(), info

    def reopen() -> Any:
        return open_container(source)

    with container:
        video_read = False
        if container.streams.video and container.streams.video[0].codec_context is None:
            warnings.warn(f"no decoder for the video stream of {_name(source)}; returning no frames",
                          RuntimeWarning, stacklevel=3)
        elif container.streams.video:
            vstream = container.streams.video[0]
            vstream.thread_type = DECODER_THREAD_TYPE[color]
            start, end = start_pts, end_pts
            if pts_unit == "sec":
                start = to_stream_units(start_pts, vstream, ceil=False)
                end = to_stream_units(end_pts, vstream, ceil=True)
            video = _read_video_stream(container, vstream, start, end, layout, reopen, fresh=True, color=color)
            video_read = True
            if vstream.average_rate is not None:
                info["video_fps"] = float(vstream.average_rate)
        if container.streams.audio and container.streams.audio[0].codec_context is not None:
            astream = container.streams.audio[0]
            start, end = start_pts, end_pts
            if pts_unit == "sec":
                start = to_stream_units(start_pts, astream, ceil=False)
                end = to_stream_units(end_pts, astream, ceil=True)
            audio = read_audio_stream(container, astream, start, end, reopen, fresh=not video_read)
            info["audio_fps"] = astream.rate
    aframes = torch.from_numpy(np.ascontiguousarray(audio)) if audio is not None else empty_audio()
    return video, aframes, info


def _empty_video(layout: Layout = "HWC") -> torch.Tensor:
    # torchvision's empty result, permuted like the frames would be
    return torch.empty((0, 3, 1, 1) if layout == "CHW" else (0, 1, 1, 3), dtype=torch.uint8)


def empty_audio() -> torch.Tensor:
    return torch.empty((1, 0), dtype=torch.float32)


def video_pts(container: Any, stream: Any) -> list[int]:
    """Every frame's pts in ``stream``, sorted, from packets when they can be trusted, else by decoding.

    Packets flagged for discard (edit lists) are dropped, as the decoder drops their frames;
    packed B-frames (DivX) put two frames in one packet, so those streams are decoded.
    """
    return stream_index(container, stream)[0]


def stream_index(container: Any, stream: Any, reopen: Callable[[], Any] | None = None
                 ) -> tuple[list[int], list[int]]:
    """``(pts, keyframe_pts)`` of ``stream``, both sorted; one pass over the packets.

    Falls back to decoding the stream when packets lack timestamps or are packed (DivX), from a
    seek to the start or, when the container cannot seek, from ``reopen()`` (a fresh container).
    """
    import av

    usable = stream.type != "video" or _divx_flag(stream) != b"p"
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


def read_video_timestamps(source: Any, pts_unit: str) -> tuple[list[Any], float | None]:
    """See :func:`gpuvio.read_video_timestamps`."""
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
                pts = stream_index(container, stream, reopen=lambda: open_container(source))[0]
            except av.FFmpegError:
                warnings.warn(f"Failed decoding frames for file {_name(source)}", RuntimeWarning, stacklevel=3)
            if stream.average_rate is not None:
                fps = float(stream.average_rate)
    if pts_unit == "sec" and time_base is not None:
        pts = [Fraction(p) * time_base for p in pts]
    return pts, fps
