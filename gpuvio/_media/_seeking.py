"""Checked seeks: where a seek must land so that what follows equals a full decode.

FFmpeg seeks to a keyframe at or before the target, but some demuxers land after it (MPEG-TS, AVI
without an index, B-frames indexed by dts), deliver nothing, or give wrong timestamps for a while
(MPEG-PS). :func:`seek_to_range` checks the first decoded frame and retries further back;
:func:`rewind` goes back to the very start and checks that too; :func:`seek_to_keyframe` positions
``VideoReader``. Every backend's decoder is positioned by these, through its frame source.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .._errors import DecodeError

__all__ = ["AUDIO_PREROLL", "MAX_BUFFER", "SEEK_BACKOFF", "close_frames", "frame_with_pts", "preroll", "rewind",
           "seek_offset", "seek_to_keyframe", "seek_to_range", "seek_unreliable"]

# torchvision decodes up to this many frames past the end, and seeks this many units earlier,
# when packed B-frames may deliver pts out of order
MAX_BUFFER = 5

# how far back (seconds) a seek that landed after the start of a range is retried before the
# range is decoded from the start of the stream 
SEEK_BACKOFF = (1.0, 4.0, 16.0)

# audio is decoded from this long (seconds) before the start of a range: each frame overlaps the
# one before, so the first frame decoded after a seek is wrong (all of it, for AAC)
AUDIO_PREROLL = 0.1

# demuxers whose timestamps cannot be trusted after a seek: MPEG-PS re-derives them from wherever
# the seek landed, and the first frames come out with pts that a full decode never gives them
_SEEK_UNRELIABLE_FORMATS = frozenset({"mpeg"})


def seek_unreliable(container: Any) -> bool:
    """Whether frames decoded after a seek in ``container`` may carry wrong timestamps."""
    fmt = getattr(container, "format", None)
    return getattr(fmt, "name", None) in _SEEK_UNRELIABLE_FORMATS


def seek_offset(start: Any, buffer: bool) -> Any:
    """Where torchvision seeks to read from ``start``: one unit earlier, five more when buffering."""
    offset = max(start - 1, 0)
    if buffer:
        offset = max(offset - MAX_BUFFER, 0)
    return offset


def seek_to_range(container: Any, stream: Any, start: Any, buffer: bool, open_frames: Callable[[], Any],
                  *, before_seek: Callable[[], None] | None = None) -> Any | None:
    """Decoded frames from a seek that covers a range starting at ``start``, or None.

    Seeks where torchvision does (audio: ``AUDIO_PREROLL`` earlier), then checks the first
    decoded frame: it must be at or before that point (so that every frame from ``start`` on,
    and the last one before it, are decoded), or be the stream's first frame. A seek that lands
    after it (MPEG-TS, AVI without an index, B-frames seeked by dts), or delivers nothing, is
    retried further back (``SEEK_BACKOFF``); an error, running out of retries, or a container
    whose timestamps cannot be trusted after a seek (:func:`seek_unreliable`) gives None: decode
    from the start of the stream instead. ``open_frames()`` gives the decoded frames (objects
    with ``pts``) from the current position; ``before_seek()`` runs before each retry (e.g. to
    reset the decoder the last try fed). The frames returned include the first one, already taken.
    """
    first_pts = stream.start_time  # the stream's first frame: nothing can come before it
    floor = first_pts if first_pts is not None else 0
    back = preroll(stream)
    need = start - back  # the first frame decoded must be at or before this
    offset = seek_offset(start, buffer) - back
    if offset > floor and seek_unreliable(container):
        return None
    for backoff in (0.0, *SEEK_BACKOFF):
        if backoff:
            offset = seek_offset(start, buffer) - back - int(backoff / stream.time_base)
            if offset <= floor:
                return None  # as far back as the start: decode from there
            if before_seek is not None:
                before_seek()
        peeked = _seek_and_peek(container, stream, int(math.floor(offset)), open_frames)
        if peeked is _SEEK_FAILED:
            return None
        if peeked is None:
            continue  # nothing there (some demuxers seek to the end): go further back
        first, frames = peeked
        pts = first.pts
        if pts is not None and (pts <= need or (first_pts is not None and pts <= first_pts)):
            return _prepend(first, frames)
        close_frames(frames)
    return None


_SEEK_FAILED = object()


def _seek_and_peek(container: Any, stream: Any, offset: int, open_frames: Callable[[], Any]) -> Any:
    """Seek to ``offset`` and take the first decoded frame: ``(first, frames)``; None when no
    frame came out; ``_SEEK_FAILED`` when the container cannot seek."""
    import av

    try:
        container.seek(offset, any_frame=False, backward=True, stream=stream)
    except av.FFmpegError:
        return _SEEK_FAILED
    frames = iter(open_frames())
    try:
        return next(frames), frames
    except (StopIteration, av.FFmpegError):
        close_frames(frames)
        return None


def rewind(container: Any, stream: Any, open_frames: Callable[[], Any],
           *, before_seek: Callable[[], None] | None = None) -> Any | None:
    """Decoded frames from the very start of ``stream``, on a container already read; or None.

    For when no fresh container can be had: seeks to the start (further back while the first
    frame is not the stream's first, since MPEG-TS lands after its target) and checks it; None
    when the container cannot seek or never gets back there. Arguments as :func:`seek_to_range`.
    """
    first_pts = stream.start_time
    target = min(first_pts if first_pts is not None else 0, 0)
    for i, backoff in enumerate((0.0, *SEEK_BACKOFF)):
        if i and before_seek is not None:
            before_seek()
        peeked = _seek_and_peek(container, stream, target - int(backoff / stream.time_base), open_frames)
        if peeked is _SEEK_FAILED:
            return None
        if peeked is None:
            continue
        first, frames = peeked
        if first_pts is None or (first.pts is not None and first.pts <= first_pts):
            return _prepend(first, frames)
        close_frames(frames)
    return None


def preroll(stream: Any) -> int:
    """How far before the start (stream units) decoding must begin for exact samples: audio
    frames overlap (AAC, MP3, Opus), so the first one after a seek comes out wrong."""
    if stream.type != "audio" or not stream.time_base:
        return 0
    return int(AUDIO_PREROLL / stream.time_base)


def _prepend(first: Any, frames: Any) -> Any:
    yield first
    try:
        yield from frames
    finally:
        close_frames(frames)


def close_frames(frames: Any) -> None:
    close = getattr(frames, "close", None)
    if close is not None:
        close()


def seek_to_keyframe(container: Any, stream: Any, target_pts: int, open_frames: Callable[[], Any],
                     *, before_seek: Callable[[], None] | None = None) -> Any | None:
    """Frames from a keyframe at or before ``target_pts``, for ``VideoReader``'s precise seek.

    Seeks, takes the first frame, and seeks further back (``SEEK_BACKOFF``) when it starts after
    the target, since some demuxers land on a later keyframe. ``open_frames()`` makes the frame
    iterator for the current position; it must have ``push_back(frame)`` and may have
    ``close()``. ``before_seek()`` runs before every seek (e.g. to reset the decoder). Returns
    None to mean: decode from the start (the target is at or before the stream's first frame,
    or every seek landed after it).
    """
    import av

    time_base = stream.time_base
    floor = stream.start_time if stream.start_time is not None else 0
    offset = target_pts
    for backoff in (0.0, *SEEK_BACKOFF):
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
            close_frames(frames)
            continue  # some demuxers seek past the last keyframe to nothing: go further back
        frames.push_back(first)
        if first.pts <= target_pts:
            return frames
        close_frames(frames)
    return None


def frame_with_pts(frames: Any, target: int, wanted: list[int]) -> Any:
    """The frame of ``frames`` whose pts is ``target``, the earlier ones skipped.

    ``wanted`` (``target`` first) only names what is missing in the error: a :class:`DecodeError`
    when the decoder goes past ``target`` or runs out, i.e. a frame the container lists does not
    come out of the decoder.
    """
    for frame in frames:
        if frame.pts < target:
            continue
        if frame.pts > target:
            raise DecodeError(f"the frame with pts {target}, listed by the container, could not be decoded "
                              f"(the decoder went on to pts {frame.pts})")
        return frame
    raise DecodeError(f"frames with pts {list(wanted)} could not be decoded (end of stream)")
