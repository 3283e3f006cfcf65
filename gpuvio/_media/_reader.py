"""VideoReader's engine over any frame source: sequential reading, precise seeking, random access.

Seeking is precise whatever the container does: FFmpeg seeks to a keyframe at or before the
target, but some demuxers land on a keyframe *after* it (seeking by dts with B-frames, HEVC
open-GOP leading pictures that cannot be decoded from the keyframe alone). After every seek the
first decoded frame is checked, and when it starts after the target the seek is repeated further
back, so that no frame at or after the target is skipped. Restarting reopens the file rather than
seeking to its start, so that what an edit list discards stays discarded.

The same code runs whichever backend decodes: the backend only supplies the frame source. When a
GPU source gives up (:class:`~gpuvio._protocols.SourceUnsupported`), the reader goes on with the
CPU backend's source from the same position.
"""

from __future__ import annotations

import bisect
import math
import weakref
from collections import deque
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from .._errors import DecodeError, InvalidArgumentError
from .._fallback import Fallback
from .._protocols import FrameSource, PendingFrame, Purpose, SourceUnsupported, VideoDecoder
from .._types import ColorPolicy
from ..transforms import Geometry, Transform, plan
from ._container import FrameIndex, OwnedContainers, audio_to_float, build_index, divx_flag, seconds, stream_metadata
from ._decoding import Frames, PyAVPackets
from ._range import frame_size
from ._seeking import frame_with_pts, seek_to_keyframe
from ._sources import cpu_decoder, fall_back, place, video_source

__all__ = ["MediaReader"]

# packed B-frames (DivX): the decoder gives the frames in display order, but the timestamps the
# AVI attaches to them come up to one frame out of order
_REORDER_WINDOW = 2


class _Sources:
    """The frame sources of one reader's video stream, one per purpose, with the fallback state."""

    def __init__(self, decoder: VideoDecoder, file: Any, *, device: torch.device, color: ColorPolicy,
                 threads: int) -> None:
        self.decoder, self.file, self.device, self.color, self.threads = decoder, file, device, color, threads
        self.fallback: Fallback | None = None

    def make(self, stream: Any, purpose: Purpose) -> FrameSource:
        if self.fallback is not None:  # once the GPU gave up on this file, the CPU does the rest
            return cpu_decoder().frame_source(stream, device=self.device, color=self.color, purpose=purpose,
                                              threads=self.threads)
        source, fallback = video_source(self.decoder, stream, source=self.file, operation="open_video",
                                        device=self.device, color=self.color, purpose=purpose,
                                        threads=self.threads)
        self.fallback = fallback
        return source

    def give_up(self, reason: str) -> None:
        if self.fallback is None:
            self.fallback = fall_back(self.decoder.name, "open_video", self.file, reason)


class _RandomAccess:
    """The container and frame source ``get_frames_at`` decodes from, kept between calls."""

    def __init__(self, file: Any, stream_index: int, reorder: int, owned: OwnedContainers,
                 sources: _Sources) -> None:
        self._file, self._owned, self._sources = file, owned, sources
        self.stream_index = stream_index
        self._reorder = reorder
        self._container: Any = None
        self._decoding: FrameSource | None = None
        self._frames: Frames | None = None
        self._used = False  # whether the open container has been read or seeked
        self.last: int | None = None  # pts of the last frame taken from self._frames

    @property
    def decoding(self) -> FrameSource:
        if self._container is None:
            self._open()
        if self._decoding is None:
            self._decoding = self._sources.make(self._stream, "random")
        return self._decoding

    def _open(self) -> None:
        if self._container is not None:
            self._owned.close(self._container)
        self._container = self._owned.open(self._file)
        self._stream = self._container.streams[self.stream_index]
        # the size the stream declares when opened: the codec context follows the decoder, so
        # after a resolution change it would size (and plan transforms for) batches by whichever
        # frames the last call happened to decode
        context = self._stream.codec_context
        self._declared = (context.height, context.width)
        self._used = False
        self._frames, self.last = None, None

    def declared_size(self) -> tuple[int, int]:
        """``(height, width)`` the stream declared when opened (zeros when it declares none)."""
        if self._container is None:
            self._open()
        return self._declared

    def frames_towards(self, target: int, keyframes: list[int]) -> Frames:
        """Frames that reach ``target``: the current ones when it lies ahead with no keyframe
        in between, else from a new position."""
        decoding = self.decoding
        last = self.last
        k = bisect.bisect_right(keyframes, target) - 1
        if self._frames is not None and last is not None and last < target and not (k >= 0 and keyframes[k] > last):
            return self._frames
        if self._frames is not None:
            self._frames.close()
        frames = None
        if target > (self._stream.start_time or 0):
            self._used = True
            frames = seek_to_keyframe(self._container, self._stream, target,
                                      lambda: Frames(self._container, self._stream, decoding, reorder=self._reorder),
                                      before_seek=decoding.reset)
        if frames is None:
            if self._used:  # from the very start: a fresh container keeps an edit list's discards
                self._open()
            decoding.reset()
            frames = Frames(self._container, self._stream, decoding, reorder=self._reorder, from_start=True)
        self._used = True
        self._frames, self.last = frames, None
        return frames

    def forget(self, *, source: bool = False) -> None:
        """Start afresh next time (``source``: with a new frame source too)."""
        if self._frames is not None:
            self._frames.close()
        self._frames, self.last = None, None
        if source and self._decoding is not None:
            self._decoding.close()
            self._decoding = None

    def close(self) -> None:
        self.forget(source=True)
        if self._container is not None:
            self._owned.close(self._container)
            self._container = None


class MediaReader:
    """One open file and a current stream, decoded on demand: what ``VideoReader`` drives.

    Video frames come out as ``Tensor[3, H, W] uint8`` on ``device`` (by the colour policy
    ``color``), audio frames as ``Tensor[samples, channels] float32``; timestamps are seconds.
    ``decoder`` is the backend asked for; :attr:`backend_name` says who decodes now, and
    :attr:`fallback` why the CPU does, if it does.
    """

    def __init__(self, source: Any, *, stream: tuple[str, int], decoder: VideoDecoder, device: torch.device,
                 num_threads: int = 0, color: ColorPolicy = "torchvision", transforms: tuple[Transform, ...] = (),
                 geometry: Geometry | None = None) -> None:
        self._source = source
        self._device = device
        self._transforms = transforms
        #: what sequential frames (:meth:`next`) are transformed by: drawn once, kept across
        #: reopening (pass the parent's to a reopened reader)
        self.geometry = geometry
        self._sources = _Sources(decoder, source, device=device, color=color, threads=num_threads)
        # every container this reader opens is closed with it, or when it is collected unclosed
        # (never in a forked child: see gpuvio._forksafe)
        self._owned = OwnedContainers()
        weakref.finalize(self, self._owned.close_all)
        self._container = self._open()
        self._fresh = True  # nothing read or seeked since the container was opened
        self._index: dict[int, FrameIndex] = {}
        self._ahead: deque[tuple[PendingFrame, float]] = deque()
        self._random: _RandomAccess | None = None
        self._decoding: Any = None
        self._frames: Frames | None = None
        # where the next frame comes from, to carry on there after a fallback
        self._position: tuple[str, float, bool] = ("seek", 0.0, False)
        self.set_stream(*stream)

    def _open(self) -> Any:
        import av

        try:
            return self._owned.open(self._source)
        except av.FFmpegError as exc:
            name = self._source if isinstance(self._source, str) else "<bytes>"
            raise DecodeError(f"cannot open {name}: {exc}") from None

    # ------------------------------------------------------------------ reporting
    @property
    def backend_name(self) -> str:
        """Who decodes the current stream: the GPU backend, or ``"cpu"`` (audio, or after a fallback)."""
        if self.kind != "video" or self._decoding is None:
            return "cpu"
        return self._decoding.backend

    @property
    def fallback(self) -> Fallback | None:
        """Why the CPU decodes this file's video instead of the backend asked for (None if it does not)."""
        return self._sources.fallback

    @property
    def fallback_reason(self) -> str | None:
        return None if self.fallback is None else self.fallback.reason

    # ------------------------------------------------------------------ streams
    def set_stream(self, kind: str, index: int) -> None:
        streams = {"video": self._container.streams.video, "audio": self._container.streams.audio}[kind]
        if index >= len(streams):
            available = [f"{t}:{i}" for t in ("video", "audio")
                         for i, _ in enumerate(getattr(self._container.streams, t))]
            if not available:  # not a wrong argument: the data holds nothing to decode
                raise DecodeError("no video or audio stream could be found in this data (corrupt, or not media)")
            raise InvalidArgumentError(
                f"stream {kind}:{index} does not exist; this file has {', '.join(available)}")
        self._close_decoding()
        self.kind = kind
        self._stream_number = index
        self._configure(streams[index])
        if kind == "video":
            if self._transforms:
                declared = self._declared_size(self._stream)
                if self.geometry is None or self.geometry.input_size != declared:
                    self.geometry = plan(self._transforms, *declared)
            self._decoding = self._sources.make(self._stream, "sequential")
        else:
            self._decoding = PyAVPackets()
        self._call(self._restart)

    @staticmethod
    def _declared_size(stream: Any) -> tuple[int, int]:
        context = stream.codec_context
        if not (context.height and context.width):
            raise DecodeError("this video stream does not declare its frame size, which transforms need")
        return context.height, context.width

    def _configure(self, stream: Any) -> None:
        if stream.codec_context is None:
            raise DecodeError(f"FFmpeg has no decoder for {stream.type} stream {self._stream_number} "
                              "of this file")
        self._stream = stream
        self._time_base = stream.time_base
        self._reorder = _REORDER_WINDOW if stream.type == "video" and divx_flag(stream) == b"p" else 0

    def metadata(self) -> dict[str, dict[str, list[float]]]:
        return stream_metadata(self._container)

    # ------------------------------------------------------------------ the fallback
    def _call(self, step: Any, *args: Any, **kwargs: Any) -> Any:
        """``step(...)``; when the GPU source gives up during it, carry on on the CPU and retry."""
        try:
            return step(*args, **kwargs)
        except SourceUnsupported as exc:
            self._sources.give_up(str(exc))
            self._close_decoding()
            self._decoding = self._sources.make(self._stream, "sequential")
            self._reposition()
            return step(*args, **kwargs)

    def _reposition(self) -> None:
        where, time_s, keyframes_only = self._position
        if where == "seek":
            self.seek(time_s, keyframes_only=keyframes_only)
            return
        index = self.frame_index()  # resume at the frame after the last one returned
        pos = bisect.bisect_right(index.seconds, time_s)
        self.seek(index.seconds[pos] if pos < len(index) else index.end_seconds)

    def _close_decoding(self) -> None:
        self._ahead.clear()
        if self._frames is not None:
            self._frames.close()
            self._frames = None
        if self._decoding is not None:
            self._decoding.close()
            self._decoding = None

    # ------------------------------------------------------------------ positioning
    def _new_frames(self) -> Frames:
        """Frames from where the container was just seeked to."""
        if self._frames is not None:
            self._frames.close()
        return Frames(self._container, self._stream, self._decoding, reorder=self._reorder)

    def _restart(self) -> None:
        """Back to the very first frame of the current stream.

        A container that has been read from is reopened rather than seeked: a seek to the start
        skips what an edit list discards (AAC priming packets, say), which the decoder needs to
        produce the first samples exactly as a fresh decode does.
        """
        self._ahead.clear()
        self._skip_before: float | None = None
        self._position = ("seek", 0.0, False)
        if self._frames is not None:
            self._frames.close()
            self._frames = None
        self._decoding.reset()  # while its container is still open
        if not self._fresh:
            self._owned.close(self._container)
            self._container = self._open()
            self._configure(self._container.streams.get(**{self.kind: self._stream_number})[0])
        self._fresh = False
        self._frames = Frames(self._container, self._stream, self._decoding, reorder=self._reorder, from_start=True)

    def seek(self, time_s: float, *, keyframes_only: bool = False) -> None:
        """Next frame: the first with pts >= ``time_s`` (or, with ``keyframes_only``, the keyframe
        at or before it). ``time_s <= 0`` restarts from the first frame, negative pts included."""
        self._call(self._seek, time_s, keyframes_only)

    def _seek(self, time_s: float, keyframes_only: bool) -> None:
        import av

        self._ahead.clear()
        if not time_s > 0 or math.isinf(time_s):  # <= 0 or NaN: from the start
            if math.isinf(time_s) and time_s > 0:
                self._position = ("seek", time_s, keyframes_only)
                self._frames = Frames.empty()
                return
            self._restart()
            return
        self._position = ("seek", float(time_s), keyframes_only)
        self._fresh = False
        if keyframes_only:
            # rounded to the nearest tick, as torchvision does: where a tick is a frame (AVI),
            # 8.0 s must reach the keyframe at tick 240 even if 8.0 / time_base is 239.9999
            target = round(Fraction(time_s) / self._time_base)
            self._decoding.reset()
            try:
                self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
            except av.FFmpegError:
                self._restart()
                return
            self._frames = self._new_frames()
            self._skip_before = None
            return
        target = int(math.floor(Fraction(time_s) / self._time_base))
        if self._frames is not None:
            self._frames.close()
        decoding = self._decoding
        frames = seek_to_keyframe(self._container, self._stream, target,
                                  lambda: Frames(self._container, self._stream, decoding, reorder=self._reorder),
                                  before_seek=decoding.reset)
        if frames is None:
            self._restart()
            self._position = ("seek", float(time_s), False)
        else:
            self._frames = frames
        self._skip_before = time_s

    # ------------------------------------------------------------------ sequential reading
    def _next_frame(self) -> tuple[Any, float]:
        assert self._frames is not None
        while True:
            frame = next(self._frames)
            at = seconds(frame.pts, self._time_base)
            if self._skip_before is not None and at < self._skip_before:
                continue
            self._skip_before = None
            return frame, at

    def next(self) -> tuple[torch.Tensor, float]:
        """The next frame of the current stream and its pts in seconds; StopIteration at the end."""
        data, at = self._call(self._next)
        self._position = ("after", at, False)
        return data, at

    def _next(self) -> tuple[torch.Tensor, float]:
        if self.kind == "audio":
            frame, at = self._next_frame()
            return place(torch.from_numpy(np.ascontiguousarray(audio_to_float(frame).T)), self._device), at
        # one frame of lookahead: its conversion runs while the caller uses this one
        if not self._ahead:
            frame, at = self._next_frame()
            self._ahead.append((self._decoding.convert(frame, self._geometry_for(frame)), at))
        pending, at = self._ahead.popleft()
        try:
            frame, upcoming = self._next_frame()
            self._ahead.append((self._decoding.convert(frame, self._geometry_for(frame)), upcoming))
        except StopIteration:
            pass
        return place(pending.result(), self._device), at

    def _geometry_for(self, frame: Any) -> Geometry | None:
        """The sequential frames' geometry, planned again if ``frame`` has another size than it
        was planned for: untransformed, ``next()`` returns each frame at its own size, so after
        a resolution change mid-stream the transforms apply to the new size (and a RandomCrop
        draws a new window, the old one may not fit)."""
        geometry = self.geometry
        if geometry is not None:
            size = frame_size(frame)
            if all(size) and size != geometry.input_size:
                geometry = self.geometry = plan(self._transforms, *size)
        return geometry

    # ------------------------------------------------------------------ random access
    def frame_index(self) -> FrameIndex:
        """Every frame's timestamp in the current stream, read once from the packets."""
        key = self._stream.index
        index = self._index.get(key)
        if index is None:
            import av

            try:
                index = build_index(self._source, self._stream)
            except av.FFmpegError as exc:
                raise DecodeError(f"cannot index the frames of this stream: {exc}") from None
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

    def indices_played_at(self, times: list[float]) -> list[int]:
        """Display positions of the frames on screen at each time (the last frame with pts <= t)."""
        index = self.frame_index()
        out = []
        for t in times:
            t = float(t)
            if not index.seconds or not index.seconds[0] <= t < index.end_seconds:
                start = index.seconds[0] if index.seconds else 0.0
                raise IndexError(
                    f"time {t} s is outside the video, which plays from {start} s to {index.end_seconds} s")
            out.append(bisect.bisect_right(index.seconds, t) - 1)
        return out

    def get_frames_at(self, indices: list[int]) -> tuple[torch.Tensor, list[float]]:
        """Frames at display positions ``indices`` (negative counts from the end) as
        ``Tensor[N, 3, H, W] uint8``, each distinct frame decoded once, GOP by GOP.

        Frames are returned at the stream's declared size (a frame of another size is scaled),
        then transformed, with a random window drawn for this call. The sequential position of
        the reader is left unchanged.
        """
        if self.kind != "video":
            raise InvalidArgumentError("get_frames_at needs a video stream; call set_current_stream('video')")
        index = self.frame_index()
        positions = self.frame_positions(indices)
        if not positions:
            return place(torch.empty((0, 3, 0, 0), dtype=torch.uint8), self._device), []
        wanted = sorted(set(index.pts[p] for p in positions))
        if self._random is None or self._random.stream_index != self._stream.index:
            if self._random is not None:
                self._random.close()
            self._random = _RandomAccess(self._source, self._stream.index, self._reorder, self._owned,
                                         self._sources)
        slot_of = {pts: slot for slot, pts in enumerate(wanted)}
        order = [slot_of[index.pts[p]] for p in positions]
        try:
            frames = self._decode_pts(self._random, wanted, index, order)
        except SourceUnsupported as exc:
            self._sources.give_up(str(exc))
            self._random.forget(source=True)
            frames = self._decode_pts(self._random, wanted, index, order)
        return place(frames, self._device), [index.seconds[p] for p in positions]

    def _decode_pts(self, random: _RandomAccess, wanted: list[int], index: FrameIndex, order: list[int]
                    ) -> torch.Tensor:
        """The frames with exactly these pts (sorted; slot i = wanted[i]), in ``order``.

        Runs on a second container, kept between calls, so the sequential position is
        untouched. Seeks only when the next wanted frame lies behind the decoder or beyond a
        keyframe not decoded yet; otherwise decoding goes on from the last frame returned.
        """
        import av

        sink = None
        try:
            declared = random.declared_size()
            geometry = None
            if self._transforms:  # planned for the size the untransformed frames would have
                geometry = plan(self._transforms, *(declared if all(declared) else self._declared_size(self._stream)))
            sink = random.decoding.sink(capacity=len(wanted), layout="CHW", size=declared if all(declared) else None,
                                        geometry=geometry)
            for i, target in enumerate(wanted):
                frame = frame_with_pts(random.frames_towards(target, index.keyframes), target, wanted[i:])
                random.last = frame.pts
                sink.put(i, frame)
            sink.finish()
        except BaseException as exc:
            random.forget()  # start afresh next time
            if sink is not None:
                sink.abort()  # every write ends before the slots are dropped
            if isinstance(exc, av.FFmpegError):
                raise DecodeError(f"decoding failed: {exc}") from None
            raise
        return sink.result(order)

    def close(self) -> None:
        self._close_decoding()
        if self._random is not None:
            self._random.close()
            self._random = None
        self._owned.close_all()
