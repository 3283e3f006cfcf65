"""The CPU side of ``VideoReader``: frame-by-frame decoding, precise seeking and random access."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterator

import numpy as np
import torch

from gpuvio._errors import DecodeError, InvalidArgumentError

from ._frames import audio_to_float, convert_async, frame_to_rgb, open_container
from ._video import video_pts

__all__ = ["FrameIndex", "PyAVVideoSource", "stream_metadata"]


@dataclass(frozen=True)
class FrameIndex:
    """Presentation timestamps of every frame of one stream, in display order."""

    pts: list[int]
    seconds: list[float]
    end_seconds: float  # when the last frame stops being shown

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


class PyAVVideoSource:
    """One open container and a current stream, decoded on demand with PyAV.

    Video frames come out as ``Tensor[C, H, W] uint8`` (gpuvio's colour policy), audio frames as
    ``Tensor[samples, channels] float32``; timestamps are seconds (float).
    """

    backend_name = "cpu"

    def __init__(self, source: Any, *, stream: tuple[str, int], num_threads: int = 0,
                 device: torch.device | None = None) -> None:
        import av

        self._source = source
        self._num_threads = num_threads
        self._device = device if device is not None and device.type != "cpu" else None
        try:
            self._container = open_container(source)
        except av.FFmpegError as exc:
            raise DecodeError(f"cannot open {source if isinstance(source, str) else '<bytes>'}: {exc}") from None
        self._index: dict[int, FrameIndex] = {}
        self._keys: dict[int, list[int]] = {}
        self.set_stream(*stream)

    # ------------------------------------------------------------------ streams
    def set_stream(self, kind: str, index: int) -> None:
        streams = {"video": self._container.streams.video, "audio": self._container.streams.audio}[kind]
        if index >= len(streams):
            available = [f"{s.type}:{i}" for t in ("video", "audio")
                         for i, s in enumerate(getattr(self._container.streams, t))]
            raise InvalidArgumentError(
                f"stream {kind}:{index} does not exist; this file has {available or 'no video or audio streams'}")
        self._stream = streams[index]
        if kind == "video":
            self._stream.thread_type = "AUTO"
            if self._num_threads:
                self._stream.codec_context.thread_count = self._num_threads
        self.kind = kind
        self.seek(0.0, keyframes_only=True)

    def metadata(self) -> dict[str, dict[str, list[float]]]:
        return stream_metadata(self._container)

    # ------------------------------------------------------------------ sequential reading
    def _decoder(self) -> Iterator[Any]:
        import av

        try:
            yield from self._container.decode(self._stream)
        except av.FFmpegError as exc:
            raise DecodeError(f"decoding failed: {exc}") from None

    def seek(self, time_s: float, *, keyframes_only: bool = False) -> None:
        import av

        time_s = max(float(time_s), 0.0)
        offset = int(Fraction(time_s) / self._stream.time_base)
        if self._stream.start_time is not None:
            # a stream that starts late (pts 8.3 s, say) must still seek to its first frame
            offset = max(offset, 0)
        try:
            self._container.seek(offset, stream=self._stream, backward=True, any_frame=False)
        except av.FFmpegError:
            self._container.seek(0, stream=self._stream, backward=True, any_frame=False)
        self._frames = self._decoder()
        self._skip_before = None if keyframes_only else time_s
        self._ahead: list[tuple[Any, float]] = []

    def _next_frame(self) -> Any:
        while True:
            frame = next(self._frames)
            if frame.pts is None:
                continue
            seconds = float(frame.pts * frame.time_base)
            if self._skip_before is not None and seconds < self._skip_before:
                continue
            self._skip_before = None
            return frame, seconds

    def next(self) -> tuple[torch.Tensor, float]:
        """The next frame of the current stream and its pts in seconds; StopIteration at the end."""
        if self.kind == "audio":
            frame, seconds = self._next_frame()
            data = torch.from_numpy(audio_to_float(frame).T.copy())
            return self._place(data), seconds
        # one frame of lookahead: its colour conversion runs while the caller uses this one
        if not self._ahead:
            frame, seconds = self._next_frame()
            self._ahead.append((convert_async(frame), seconds))
        future, seconds = self._ahead.pop(0)
        try:
            frame, upcoming = self._next_frame()
            self._ahead.append((convert_async(frame), upcoming))
        except StopIteration:
            pass
        rgb = future.result()
        return self._place(torch.from_numpy(rgb).permute(2, 0, 1)), seconds

    def _place(self, tensor: torch.Tensor) -> torch.Tensor:
        if self._device is None:
            return tensor
        return tensor.to(self._device, non_blocking=False)

    # ------------------------------------------------------------------ random access
    def frame_index(self) -> FrameIndex:
        """Every frame's timestamp in the current stream, read once from the packets."""
        key = self._stream.index
        index = self._index.get(key)
        if index is None:
            container = open_container(self._source)
            with container:
                stream = container.streams[key]
                if self.kind == "video":
                    pts = video_pts(container, stream)
                else:
                    pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None and p.size)
            tb = self._stream.time_base
            seconds = [float(p * tb) for p in pts]
            if len(pts) >= 2:
                end = seconds[-1] + (seconds[-1] - seconds[-2])
            elif pts:
                rate = self._stream.average_rate
                end = seconds[-1] + (1 / float(rate) if rate else 0.0)
            else:
                end = 0.0
            index = FrameIndex(pts, seconds, end)
            self._index[key] = index
        return index

    def __len__(self) -> int:
        return len(self.frame_index())

    def get_frames_at(self, indices: list[int]) -> tuple[torch.Tensor, list[float]]:
        """Frames at display positions ``indices`` (negative counts from the end), decoded in one pass."""
        if self.kind != "video":
            raise InvalidArgumentError("get_frames_at needs a video stream; call set_current_stream('video')")
        index = self.frame_index()
        count = len(index)
        positions = []
        for i in indices:
            j = int(i)
            if not -count <= j < count:
                raise IndexError(f"frame index {i} is out of range for a video of {count} frames")
            positions.append(j % count)
        wanted = sorted(set(index.pts[p] for p in positions))
        decoded = self._decode_pts(wanted)
        frames = [decoded[index.pts[p]] for p in positions]
        data = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2) if frames else torch.empty(
            (0, 3, 0, 0), dtype=torch.uint8)
        return self._place(data), [index.seconds[p] for p in positions]

    def indices_played_at(self, seconds: list[float]) -> list[int]:
        """Display positions of the frames on screen at each time (the last frame with pts <= t)."""
        index = self.frame_index()
        out = []
        for t in seconds:
            t = float(t)
            if not index.seconds or t < index.seconds[0] or t >= index.end_seconds:
                start = index.seconds[0] if index.seconds else 0.0
                raise IndexError(
                    f"time {t} s is outside the video, which plays from {start} s to {index.end_seconds} s")
            out.append(bisect.bisect_right(index.seconds, t) - 1)
        return out

    def _decode_pts(self, wanted: list[int]) -> dict[int, np.ndarray]:
        """Decode the frames with exactly these pts; seek only when a keyframe lies in between."""
        import av

        futures: dict[int, Any] = {}
        container = open_container(self._source)
        with container:
            stream = container.streams[self._stream.index]
            stream.thread_type = "AUTO"
            keyframes = self._keyframes()
            frames: Iterator[Any] | None = None
            last = None
            i = 0
            while i < len(wanted):
                target = wanted[i]
                k = bisect.bisect_right(keyframes, target) - 1
                key_pts = keyframes[k] if k >= 0 else None
                if frames is None or last is None or target <= last or (key_pts is not None and key_pts > last):
                    container.seek(target, stream=stream, backward=True, any_frame=False)
                    frames = container.decode(stream)
                try:
                    for frame in frames:
                        if frame.pts is None:
                            continue
                        last = frame.pts
                        while i < len(wanted) and wanted[i] <= frame.pts:
                            # a frame whose pts was missed (decoder-shifted pts) maps to the next one
                            futures[wanted[i]] = convert_async(frame)
                            i += 1
                        if i >= len(wanted) or wanted[i] != target:
                            break
                    else:
                        raise DecodeError(f"frames with pts {wanted[i:]} could not be decoded")
                except av.FFmpegError as exc:
                    raise DecodeError(f"decoding failed: {exc}") from None
            return {pts: f.result() for pts, f in futures.items()}

    def _keyframes(self) -> list[int]:
        key = self._stream.index
        keys = self._keys.get(key)
        if keys is None:
            with open_container(self._source) as container:
                stream = container.streams[key]
                keys = sorted(p.pts for p in container.demux(stream) if p.is_keyframe and p.pts is not None)
            self._keys[key] = keys
        return keys

    def close(self) -> None:
        self._container.close()
