"""read_video and read_video_timestamps over any frame source: torchvision's semantics, once.

Frame selection is torchvision 0.8's PyAV algorithm, step for step: seek a little before the
start (further back when packed B-frames may reorder pts), decode, keep one frame per pts in the
inclusive range ``[start, end]``, decode up to five frames past the end when buffering, and when
no frame has exactly the start pts add the last frame before it. 'sec' times convert to stream
units with floor (start) and ceil (end), in torchvision's arithmetic.

Unlike torchvision, a range always gives what a full decode filtered by those rules gives: a
seek that lands after the start (MPEG-TS, AVI without an index, B-frames seeked by dts), delivers
nothing or fails is retried further back, then replaced by a decode from the start of a freshly
opened container (a seek to the start would lose what an edit list discards); MPEG-PS, whose
timestamps are wrong for a while after a seek, is always decoded from the start. This is logged
at DEBUG level on the ``gpuvio`` logger. Audio is decoded from a little before the start, so that
the first frame's samples are those of a full decode too (each audio frame overlaps the one
before). Audio is always ``float32 [K, L]`` and always decoded on the CPU.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from .._protocols import Frame, FrameSink, FrameSource, Layout, SourceUnsupported, VideoDecoder
from .._types import ColorPolicy
from ..transforms import Geometry, Transform, plan
from ._container import (
    PtsFiller,
    audio_to_float,
    capacity_hint,
    empty_audio,
    empty_video,
    open_container,
    should_buffer,
    source_name,
    stream_index,
    to_stream_units,
)
from ._decoding import PyAVPackets, decoded_frames
from ._seeking import MAX_BUFFER, close_frames, preroll, rewind, seek_offset, seek_to_range
from ._sources import cpu_decoder, fall_back, place, video_source

__all__ = ["Selection", "frame_geometry", "frame_size", "read_video", "read_video_timestamps"]

_log = logging.getLogger("gpuvio")


class Selection:
    """torchvision's frame selection, fed one decoded frame at a time.

    ``keep(pts, frame)`` is called for every frame in ``[start, end]`` in decode order (a pts seen
    twice is kept again: the later frame wins, as in torchvision's dict). The last frame before
    ``start`` is held in :attr:`before`, through ``retain`` (a frame source's frames may not
    outlive the next decoder call); :meth:`needs_before` says whether it belongs in the result.
    """

    def __init__(self, start: Any, end: Any, buffer: bool, keep: Callable[[int, Any], None],
                 retain: Callable[[Any], Any] = lambda frame: frame) -> None:
        self.start, self.end, self.buffer = start, end, buffer
        self._keep, self._retain = keep, retain
        self.before: tuple[int, Any] | None = None
        self.kept: set[int] = set()
        self._buffered = 0

    def feed(self, frame: Frame) -> bool:
        """Take one frame; False once torchvision would stop decoding."""
        pts = frame.pts
        if pts is None:  # torchvision would fail on it; such frames cannot be placed anyway
            return True
        if pts < self.start:
            if self.before is None or pts >= self.before[0]:
                self.before = (pts, self._retain(frame))
            return True
        if pts <= self.end:
            self.kept.add(pts)
            self._keep(pts, frame)
        if pts >= self.end:
            if self.buffer and self._buffered < MAX_BUFFER:
                self._buffered += 1
                return True
            return False
        return True

    def needs_before(self) -> bool:
        return self.before is not None and self.start > 0 and self.start not in self.kept


def _decode_range(container: Any, stream: Any, selection: Selection, source: Any,
                  reopen: Callable[[], Any] | None, *, fresh: bool) -> bool:
    """Decode the frames ``selection`` needs with ``source`` and feed them to it.

    False if nothing could be read. Seeks like torchvision (:func:`seek_to_range`); where the
    seek does not reach back to the start (or cannot be trusted, or fails), decodes from the
    start of the stream: from ``container`` itself when ``fresh`` (opened and not read yet), else
    from ``reopen()``, else from :func:`rewind`.
    """
    import av

    start = selection.start
    opened = None

    def frames_here() -> Any:
        return decoded_frames(container, stream, source, skip_bad=False)

    from_start = fresh and seek_offset(start, selection.buffer) - preroll(stream) <= (stream.start_time or 0)
    if from_start:
        frames = frames_here()  # a seek would land at the start anyway
    else:
        frames = seek_to_range(container, stream, start, selection.buffer, frames_here, before_seek=source.reset)
    if frames is None:
        _log.debug("read_video: the seek for start %s in %s stream %d (%s) did not reach back to it; "
                   "decoding from the start", start, stream.type, stream.index, container.format.name)
        from_start = True
        source.reset()
        if reopen is not None:
            thread_type = stream.thread_type
            container = opened = reopen()
            stream = container.streams[stream.index]
            stream.thread_type = thread_type
            frames = frames_here()
        else:
            frames = rewind(container, stream, frames_here, before_seek=source.reset)
            if frames is None:
                return False
    fill = PtsFiller(stream) if from_start else (lambda frame: frame)
    try:
        for frame in frames:
            if not selection.feed(fill(frame)):
                break
    except av.FFmpegError as exc:
        # torchvision keeps what it decoded before the error, silently; we say so
        warnings.warn(f"decoding stopped early at a corrupt packet: {exc}", RuntimeWarning, stacklevel=5)
    finally:
        close_frames(frames)
        if opened is not None:
            opened.close()
    return True


def _read_video_stream(container: Any, stream: Any, start: Any, end: Any, layout: Layout, source: FrameSource,
                       reopen: Callable[[], Any] | None, *, fresh: bool,
                       transforms: tuple[Transform, ...] = (), drawn: list[Geometry | None] | None = None
                       ) -> torch.Tensor:
    """The selected frames of ``stream``: ``Tensor[T, H, W, 3]`` (or ``[T, 3, H, W]``) uint8 on
    the source's device, converted (and transformed) as they come.

    ``drawn``: where the resolved transforms are kept (or taken from, when it already holds
    them), so that a read started over gives the same random window."""
    reserve_front = start > 0  # slot 0 waits for the frame before start, if it turns out needed
    capacity = capacity_hint(stream, start, end) + int(reserve_front)
    sinks: list[FrameSink] = []
    slots: dict[int, int] = {}

    def sink_for(frame: Any) -> FrameSink:
        if not sinks:  # made at the first frame kept: random windows are drawn once per read
            if drawn:
                geometry = drawn[0]
            else:
                geometry = frame_geometry(transforms, stream, frame)
                if drawn is not None:
                    drawn.append(geometry)
            sinks.append(source.sink(capacity=capacity, layout=layout, geometry=geometry))
        return sinks[0]

    def keep(pts: int, frame: Any) -> None:
        slot = slots.get(pts)
        if slot is None:
            slot = slots[pts] = len(slots) + int(reserve_front)
        sink_for(frame).put(slot, frame)

    selection = Selection(start, end, should_buffer(stream), keep, source.retain)
    try:
        if not _decode_range(container, stream, selection, source, reopen, fresh=fresh):
            return empty_video(layout)
        if selection.needs_before():
            pts, frame = selection.before  # type: ignore[misc]
            slots[pts] = 0
            sink_for(frame).put(0, frame)
        for sink in sinks:
            sink.finish()
    except BaseException:
        for sink in sinks:
            sink.abort()
        raise
    if not slots:
        return empty_video(layout)
    return sinks[0].result([slots[p] for p in sorted(slots)])


def frame_geometry(transforms: tuple[Transform, ...], stream: Any, frame: Any) -> Geometry | None:
    """``transforms`` resolved for the frames of one read (random windows drawn now), or None.

    Planned for the size of ``frame``, the first one kept: an untransformed read returns every
    frame at that size (frames of another size, after a resolution change mid-stream, are
    scaled to it), so the transformed read starts from the same frames. A frame that carries no
    size (an NVDEC surface) has the stream's declared size."""
    if not transforms:
        return None
    size = frame_size(frame)
    if not all(size):
        size = (stream.codec_context.height, stream.codec_context.width)
    return plan(transforms, *size)


def frame_size(frame: Any) -> tuple[int, int]:
    """``(height, width)`` of a decoded frame, ``(0, 0)`` for one that carries no size (an NVDEC
    surface, whose size is fixed by the decoder)."""
    return getattr(frame, "height", 0), getattr(frame, "width", 0)


def read_audio_stream(container: Any, stream: Any, start: Any, end: Any,
                      reopen: Callable[[], Any] | None = None, *, fresh: bool = False) -> np.ndarray | None:
    """``ndarray[K, L] float32`` of the selected audio frames, aligned like torchvision, or None."""
    frames: dict[int, Any] = {}
    selection = Selection(start, end, should_buffer(stream), frames.__setitem__)
    if not _decode_range(container, stream, selection, PyAVPackets(), reopen, fresh=fresh):
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


def _units(stream: Any, start_pts: Any, end_pts: Any, pts_unit: str) -> tuple[Any, Any]:
    if pts_unit == "sec":
        return to_stream_units(start_pts, stream, ceil=False), to_stream_units(end_pts, stream, ceil=True)
    return start_pts, end_pts


def read_video(source: Any, *, start_pts: Any, end_pts: Any, pts_unit: str, decoder: VideoDecoder,
               device: torch.device, layout: Layout = "HWC", color: ColorPolicy = "torchvision",
               audio: bool = True, consumer: Any = None, transforms: tuple[Transform, ...] = ()
               ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """See :func:`gpuvio.read_video`; ``end_pts`` is ``inf`` for 'to the end'.

    ``transforms`` (checked, see :func:`gpuvio.transforms.as_transforms`) are applied to every
    frame while it is converted, with one random window for the whole read.

    ``decoder`` decodes the video stream (the CPU backend when it cannot); ``layout="CHW"``
    gives a contiguous ``Tensor[T, 3, H, W]``. Without ``audio`` the audio tensor is empty.
    ``info`` is torchvision's (``video_fps``, ``audio_fps``); when ``decoder`` is a GPU backend
    it also has ``backend`` (who decoded the frames: ``"cpu"`` when there were none, or after a
    fallback), ``fallback`` (a :class:`~gpuvio._fallback.Fallback`, or None) and
    ``fallback_reason`` (its reason, or None).
    """
    import av

    info: dict[str, Any] = {}
    served: dict[str, Any] = {"backend": "cpu", "fallback": None}  # for a GPU decoder's info
    video = empty_video(layout)
    samples: np.ndarray | None = None
    try:
        container = open_container(source)
    except av.FFmpegError as exc:
        warnings.warn(f"Failed to open container for {source_name(source)}; Caught error: {exc}",
                      RuntimeWarning, stacklevel=3)
        return video, empty_audio(), _served(info, served, decoder)

    def reopen() -> Any:
        return open_container(source)

    with container:
        video_read = False
        if container.streams.video and container.streams.video[0].codec_context is None:
            warnings.warn(f"no decoder for the video stream of {source_name(source)}; returning no frames",
                          RuntimeWarning, stacklevel=3)
        elif container.streams.video:
            vstream = container.streams.video[0]
            start, end = _units(vstream, start_pts, end_pts, pts_unit)
            frames, fallback = video_source(decoder, vstream, source=source, operation="read_video",
                                            device=device, color=color, purpose="range", consumer=consumer)
            drawn: list[Geometry | None] = []  # should the read start over on the CPU: the same window
            try:
                video = _read_video_stream(container, vstream, start, end, layout, frames, reopen, fresh=True,
                                           transforms=transforms, drawn=drawn)
            except SourceUnsupported as exc:  # found out while decoding: again, on the CPU
                frames.close()
                fallback = fall_back(decoder.name, "read_video", source, str(exc))
                frames = cpu_decoder().frame_source(vstream, device=device, color=color, purpose="range")
                with reopen() as fresh:
                    video = _read_video_stream(fresh, fresh.streams.video[0], start, end, layout, frames,
                                               reopen, fresh=True, transforms=transforms, drawn=drawn)
            finally:
                frames.close()
            served.update(backend=frames.backend if fallback is None else "cpu", fallback=fallback)
            video = place(video, device)
            video_read = True
            if vstream.average_rate is not None:
                info["video_fps"] = float(vstream.average_rate)
        if audio and container.streams.audio and container.streams.audio[0].codec_context is not None:
            astream = container.streams.audio[0]
            start, end = _units(astream, start_pts, end_pts, pts_unit)
            samples = read_audio_stream(container, astream, start, end, reopen, fresh=not video_read)
            info["audio_fps"] = astream.rate
    aframes = torch.from_numpy(np.ascontiguousarray(samples)) if samples is not None else empty_audio()
    return video, aframes, _served(info, served, decoder)


def _served(info: dict[str, Any], served: dict[str, Any], decoder: VideoDecoder) -> dict[str, Any]:
    # the CPU backend's info stays torchvision's exactly; a GPU backend's says who did the work
    if decoder.name != "cpu":
        fallback = served["fallback"]
        info.update(served, fallback_reason=fallback.reason if fallback is not None else None)
    return info


def read_video_timestamps(source: Any, pts_unit: str) -> tuple[list[Any], float | None]:
    """See :func:`gpuvio.read_video_timestamps` (demuxing only: the same on every device)."""
    import av

    pts: list[Any] = []
    fps = None
    time_base = None
    try:
        container = open_container(source)
    except av.FFmpegError as exc:
        warnings.warn(f"Failed to open container for {source_name(source)}; Caught error: {exc}",
                      RuntimeWarning, stacklevel=3)
        return pts, fps
    with container:
        if container.streams.video:
            stream = container.streams.video[0]
            time_base = stream.time_base
            try:
                pts = stream_index(container, stream, reopen=lambda: open_container(source))[0]
            except av.FFmpegError:
                warnings.warn(f"Failed decoding frames for file {source_name(source)}", RuntimeWarning,
                              stacklevel=3)
            if stream.average_rate is not None:
                fps = float(stream.average_rate)
    if pts_unit == "sec" and time_base is not None:
        pts = [Fraction(p) * time_base for p in pts]
    return pts, fps
