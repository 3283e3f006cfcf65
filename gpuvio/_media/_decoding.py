"""Decoding loops over a frame source: packets in, frames out, in one place for every backend.

:func:`decoded_frames` feeds a :class:`~gpuvio._protocols.FrameSource` the packets of one stream
and yields its frames; :class:`Frames` adds what readers need on top (push-back, timestamps for
raw streams, the DivX reordering). :class:`PyAVPackets` is FFmpeg's own decoder behind the same
interface: the media layer decodes audio with it, and the CPU backend's video source builds on it.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from .._errors import DecodeError
from .._protocols import Frame, FrameSource
from ._container import PtsFiller

__all__ = ["Frames", "PyAVPackets", "decoded_frames"]

# a packet the decoder rejects is skipped (FFmpeg's own tools do the same) when reading frame by
# frame; this many in a row mean the data is not video the decoder can read
MAX_BAD_PACKETS = 16


def decoded_frames(container: Any, stream: Any, source: FrameSource, *, skip_bad: bool) -> Iterator[Frame]:
    """The frames of ``stream`` from the container's current position, decoded by ``source``.

    Frames of packets the container marks for discard (edit lists) are dropped, as FFmpeg's
    decoder drops them. With ``skip_bad`` a packet the decoder rejects is skipped (a
    :class:`DecodeError` after :data:`MAX_BAD_PACKETS` in a row, or at a demuxing error);
    without it the library's error propagates (``read_video`` keeps what came before it).
    """
    import av

    source.begin(stream)
    discard: set[int] = set()
    bad = 0
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue  # PyAV's end-of-stream marker: drained below
            if packet.is_discard and packet.pts is not None:
                discard.add(packet.pts)
            try:
                frames = source.decode(packet)
            except av.FFmpegError as exc:
                if not skip_bad:
                    raise
                bad += 1
                if bad >= MAX_BAD_PACKETS:
                    raise DecodeError(f"decoding failed: {bad} packets in a row were rejected ({exc})") from None
                continue
            bad = 0
            for frame in frames:
                if not discard or frame.pts not in discard:
                    yield frame
        for frame in source.drain():
            if not discard or frame.pts not in discard:
                yield frame
    except av.FFmpegError as exc:
        if not skip_bad:
            raise
        raise DecodeError(f"reading the file failed: {exc}") from None  # the rest is unreadable


class Frames:
    """Decoded frames of one stream from the current position, for readers.

    ``push_back`` returns a frame to the front. ``from_start``: number the frames of a stream
    without timestamps (:class:`PtsFiller`); frames still without a pts are skipped (they cannot
    be placed). With ``reorder`` (packed DivX B-frames), frames keep the decoder's order, which is
    the display order, and take the timestamps of a window of ``reorder + 1`` frames in sorted
    order: so pts increase, as torchvision's VideoReader gives them, and random access by pts
    agrees with sequential reading.
    """

    def __init__(self, container: Any, stream: Any, source: FrameSource, *, reorder: int = 0,
                 from_start: bool = False) -> None:
        self._decoded = decoded_frames(container, stream, source, skip_bad=True)
        self._fill = PtsFiller(stream) if from_start else None
        self._reorder = reorder
        self._queue: deque[Any] = deque()  # frames in decoder order
        self._heap: list[int] = []  # their timestamps
        self._back: list[Any] = []

    @classmethod
    def empty(cls) -> Frames:
        """An exhausted iterator (a seek past any possible frame)."""
        frames = cls.__new__(cls)
        frames._decoded, frames._fill, frames._reorder = iter(()), None, 0
        frames._queue, frames._heap, frames._back = deque(), [], []
        return frames

    def _pull(self) -> Any:
        while True:
            frame = next(self._decoded)
            if self._fill is not None:
                self._fill(frame)
            if frame.pts is not None:
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

    def __iter__(self) -> Iterator[Any]:
        return self

    def push_back(self, frame: Any) -> None:
        self._back.append(frame)

    def close(self) -> None:
        close = getattr(self._decoded, "close", None)
        if close is not None:
            close()
        self._queue.clear()
        self._back.clear()


class PyAVPackets:
    """FFmpeg's decoder (the stream's own PyAV codec context) as the decoding half of a frame source.

    Frames are PyAV ``VideoFrame``/``AudioFrame`` objects; they own their data, so
    :meth:`retain` keeps them as they are. ``thread_type`` (``"SLICE"``, ``"AUTO"``...) and
    ``thread_count`` set up the decoder before its first packet.
    """

    def __init__(self, *, thread_type: str | None = None, thread_count: int = 0) -> None:
        self._thread_type = thread_type
        self._thread_count = thread_count
        self._ctx: Any = None

    def begin(self, stream: Any) -> None:
        ctx = stream.codec_context
        if not ctx.is_open:
            if self._thread_type is not None:
                stream.thread_type = self._thread_type
            if self._thread_count:
                ctx.thread_count = self._thread_count
        else:
            ctx.flush_buffers()  # a new run after a seek, a drain, or another source's packets
        self._ctx = ctx

    def decode(self, packet: Any) -> Sequence[Any]:
        return self._ctx.decode(packet)

    def drain(self) -> Sequence[Any]:
        return self._ctx.decode(None)

    def reset(self) -> None:
        if self._ctx is not None and self._ctx.is_open:
            self._ctx.flush_buffers()

    def retain(self, frame: Any) -> Any:
        return frame

    def close(self) -> None:
        self._ctx = None
