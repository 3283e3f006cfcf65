"""VideoReader: torchvision's fine-grained video API, plus batched random access."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from ._dispatch import select_backend
from ._errors import InvalidArgumentError, InvalidInputTypeError
from ._source import resolve_source
from ._types import DeviceLike, Source

__all__ = ["VideoReader"]

_STREAM = re.compile(r"^(video|audio)(?::(\d+))?$")


def _parse_stream(stream: Any) -> tuple[str, int]:
    if not isinstance(stream, str):
        raise InvalidInputTypeError(f"stream must be a string like 'video' or 'audio:1', got {stream!r}")
    match = _STREAM.match(stream.strip())
    if match is None:
        raise InvalidArgumentError(
            f"stream must be 'video', 'audio', 'video:N' or 'audio:N'; got {stream!r}")
    return match.group(1), int(match.group(2) or 0)


class VideoReader:
    """Frame-by-frame reading of one stream of a video file, with precise seeking.

    Iterating gives ``{"data": frame, "pts": seconds}`` dicts, in display order. Video frames
    are ``Tensor[C, H, W] uint8`` RGB on ``device`` (each at its own size, should the size
    change mid-stream); audio frames are ``Tensor[S, K] float32`` (S samples of K channels, in
    [-1, 1]). ``pts`` is a float in seconds. Seeking is precise even where the container's own
    seek lands late (B-frames indexed by dts, HEVC open GOPs): the reader checks and seeks
    further back. A raw elementary stream (no timestamps, no seeking) is read from its start,
    its frames numbered at the stream's frame rate.

    Example::

        reader = gpuvio.VideoReader("clip.mp4")
        for frame in itertools.islice(reader.seek(2.0), 10):   # 10 frames from t = 2 s
            ...
        batch = reader.get_frames_at([0, 10, 20])               # Tensor[3, C, H, W]

    Args:
        src: path, bytes or ``Tensor[N] uint8`` of the encoded file (``path=`` is accepted too).
        stream: ``"video"`` (default), ``"audio"``, or ``"video:N"`` / ``"audio:N"`` for the N-th
            stream of that type.
        num_threads: decoder threads; 0 (default): the CPU backend decodes on one thread and
            converts colours on the others.
        device: where frames go: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        backend: force a backend by name.

    Attributes:
        backend: name of the backend decoding this file (after any fallback).
        device: the ``torch.device`` frames are returned on.
    """

    def __init__(self, src: Source | None = None, stream: str = "video", num_threads: int = 0, *,
                 path: Source | None = None, device: DeviceLike = "cpu", backend: str | None = None) -> None:
        if src is None:
            src = path
        if src is None:
            raise InvalidArgumentError("VideoReader needs a source: a path, bytes or a uint8 tensor")
        kind, index = _parse_stream(stream)
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 0:
            raise InvalidArgumentError(f"num_threads must be an int >= 0, got {num_threads!r}")
        source = resolve_source(src, what="src")
        chosen, self.device = select_backend("open_video", device, backend)
        self._impl = chosen.open_video(source, stream=(kind, index), num_threads=num_threads,
                                       device=self.device)
        self._stream = f"{kind}:{index}"

    @property
    def backend(self) -> str:
        return self._impl.backend_name

    @property
    def fallback_reason(self) -> str | None:
        """Why a GPU backend handed this file to the CPU backend, or None if it did not."""
        return getattr(self._impl, "fallback_reason", None)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        """The next frame: ``{"data": Tensor, "pts": float seconds}``; StopIteration at the end."""
        data, pts = self._impl.next()
        return {"data": data, "pts": pts}

    def seek(self, time_s: float, keyframes_only: bool = False) -> VideoReader:
        """Move so that the next frame is the first with pts >= ``time_s`` (seconds).

        With ``keyframes_only=True`` the next frame is instead the keyframe at or before
        ``time_s`` (faster, imprecise). Returns the reader, so ``for f in reader.seek(2)`` works.
        """
        if isinstance(time_s, bool) or not isinstance(time_s, (int, float)) and not hasattr(time_s, "__float__"):
            raise InvalidInputTypeError(f"time_s must be a number of seconds, got {time_s!r}")
        self._impl.seek(float(time_s), keyframes_only=keyframes_only)
        return self

    def get_metadata(self) -> dict[str, dict[str, list[float]]]:
        """Duration and rate of every stream: ``{"video": {"duration": [...], "fps": [...]},
        "audio": {"duration": [...], "framerate": [...]}}`` (seconds, frames or samples per second)."""
        return self._impl.metadata()

    def set_current_stream(self, stream: str) -> bool:
        """Switch to another stream (``"video"``, ``"audio:1"``...) and rewind it. Returns True."""
        kind, index = _parse_stream(stream)
        self._impl.set_stream(kind, index)
        self._stream = f"{kind}:{index}"
        return True

    def __len__(self) -> int:
        """Number of frames in the current stream (read from the container, no decoding)."""
        return len(self._impl)

    def get_frames_at(self, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Frames at the given display positions, decoded together (each GOP at most once).

        Args:
            indices: frame numbers; negative ones count from the end. Any order, repeats allowed.

        Returns:
            ``Tensor[N, C, H, W] uint8`` on the reader's device, in the order of ``indices``.
        """
        frames, _ = self._impl.get_frames_at(self._as_list(indices, "indices", int))
        return frames

    def get_frames_played_at(self, seconds: Sequence[float] | torch.Tensor) -> torch.Tensor:
        """The frames on screen at the given times (the last frame with pts <= t).

        Returns:
            ``Tensor[N, C, H, W] uint8``. Raises ``IndexError`` for a time outside the video.
        """
        positions = self._impl.indices_played_at(self._as_list(seconds, "seconds", float))
        frames, _ = self._impl.get_frames_at(positions)
        return frames

    @staticmethod
    def _as_list(values: Any, name: str, kind: type) -> list[Any]:
        if isinstance(values, torch.Tensor):
            if kind is int and values.is_floating_point():
                raise InvalidInputTypeError(f"{name} must be integers, got a {values.dtype} tensor")
            values = values.flatten().tolist()
        if isinstance(values, (int, float)) and not isinstance(values, bool):
            values = [values]
        try:
            items = list(values)
        except TypeError:
            raise InvalidInputTypeError(f"{name} must be a sequence of numbers, got {values!r}") from None
        out: list[Any] = []
        for v in items:
            if isinstance(v, bool) or not isinstance(v, (int, float)) and not hasattr(v, "__index__"):
                raise InvalidInputTypeError(f"{name} must be a sequence of numbers, got {v!r} in it")
            if kind is int:
                if isinstance(v, float) and not v.is_integer():
                    raise InvalidInputTypeError(f"{name} must be integers (frame positions), got {v!r}")
                out.append(int(v))
            else:
                out.append(float(v))
        return out

    def close(self) -> None:
        """Release the file and decoder."""
        self._impl.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VideoReader(stream={self._stream!r}, backend={self.backend!r}, device={str(self.device)!r})"
