"""gpuvio's device-neutral media layer: one implementation of everything but decoding itself.

PyAV demuxes on the host for every backend, so this layer owns the container and stream helpers
(:mod:`._container`), the checked seeks (:mod:`._seeking`), the decoding loops (:mod:`._decoding`),
torchvision's ``read_video`` selection (:mod:`._range`), ``VideoReader``'s engine with its restart
policy, random access and audio (:mod:`._reader`), and the fallback to the CPU backend
(:mod:`._sources`). Backends only provide a :class:`gpuvio._protocols.FrameSource` for a stream.
Nothing here imports a CUDA library.
"""

from __future__ import annotations

from ._container import (
    FrameIndex,
    OwnedContainers,
    PtsFiller,
    audio_to_float,
    capacity_hint,
    divx_flag,
    empty_audio,
    empty_video,
    initial_capacity,
    open_container,
    should_buffer,
    source_name,
    stream_index,
    stream_metadata,
    to_stream_units,
)
from ._decoding import Frames, PyAVPackets, decoded_frames
from ._range import Selection, read_audio_stream, read_video, read_video_timestamps
from ._reader import MediaReader
from ._seeking import MAX_BUFFER, frame_with_pts, rewind, seek_to_keyframe, seek_to_range

__all__ = [
    "MAX_BUFFER",
    "FrameIndex",
    "Frames",
    "MediaReader",
    "OwnedContainers",
    "PtsFiller",
    "PyAVPackets",
    "Selection",
    "audio_to_float",
    "capacity_hint",
    "decoded_frames",
    "divx_flag",
    "empty_audio",
    "empty_video",
    "frame_with_pts",
    "initial_capacity",
    "open_container",
    "read_audio_stream",
    "read_video",
    "read_video_timestamps",
    "rewind",
    "seek_to_keyframe",
    "seek_to_range",
    "should_buffer",
    "source_name",
    "stream_index",
    "stream_metadata",
    "to_stream_units",
]
