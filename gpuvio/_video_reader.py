"""VideoReader: torchvision's fine-grained video API, plus batched random access."""

from __future__ import annotations

import os
import re
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from . import _forksafe
from ._dispatch import select_backend
from ._fallback import Fallback
from ._media import MediaReader
from ._errors import BackendUnavailableError, InvalidArgumentError, InvalidInputTypeError, InvalidSourceError
from ._source import resolve_source
from ._types import ColorPolicy, DeviceLike, Source, check_color
from .transforms import Geometry, Transform, TransformsLike, as_transforms

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
        color: ``"torchvision"`` (default: torchvision 0.8's pixels) or ``"accurate"``; see
            :func:`gpuvio.read_video`.
        transforms: decode-time :mod:`gpuvio.transforms` for video frames (``next()``,
            ``get_frames_at``, ``get_frames_played_at``). Sequential frames share one random
            window, drawn when the reader opens (and kept when it is pickled or forked); each
            ``get_frames_at``/``get_frames_played_at`` call draws its own. Default None.

    Readers are safe in every worker model. One inherited by a forked child (a ``Dataset``
    that opened it in ``__init__``, under a fork ``DataLoader``) reopens its source there on
    first use and carries on from the same position, giving exactly the frames the parent would
    have given; dropping it in the child returns at once. A reader pickles as its source (the
    path, or the bytes), stream, options and position, for spawn and forkserver workers and Ray.

    Attributes:
        backend: name of the backend decoding this file (after any fallback).
        fallback: a :class:`gpuvio.Fallback` when a GPU backend handed the file to the CPU
            backend (``fallback_reason`` is its reason), else None.
        device: the ``torch.device`` frames are returned on.
    """

    def __init__(self, src: Source | None = None, stream: str = "video", num_threads: int = 0, *,
                 path: Source | None = None, device: DeviceLike = "cpu", backend: str | None = None,
                 color: ColorPolicy = "torchvision", transforms: TransformsLike = None) -> None:
        if src is None:
            src = path
        if src is None:
            raise InvalidArgumentError("VideoReader needs a source: a path, bytes or a uint8 tensor")
        if isinstance(src, str) and not src:
            raise InvalidArgumentError("src cannot be empty")  # torchvision's words
        if not isinstance(src, (str, os.PathLike, bytes, bytearray, memoryview, torch.Tensor)) \
                and not hasattr(src, "read"):
            # a TypeError and, as torchvision raises it, a ValueError
            raise InvalidSourceError(f"src must be either string, Tensor or bytes object. Got {type(src)}")
        if hasattr(src, "read") and not isinstance(src, (str, os.PathLike)):
            raise InvalidInputTypeError(
                f"VideoReader cannot read from a file object ({type(src).__name__}): it reopens its source "
                "in worker processes and when unpickled. Pass the path, or the bytes (f.read()), instead")
        kind, index = _parse_stream(stream)
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 0:
            raise InvalidArgumentError(f"num_threads must be an int >= 0, got {num_threads!r}")
        self._open(src, (kind, index), num_threads, device, backend, check_color(color),
                   transforms=as_transforms(transforms))

    def _open(self, source: Any, stream: tuple[str, int], num_threads: int, device: DeviceLike,
              backend: str | None, color: ColorPolicy, position: tuple[Any, ...] = ("start",), *,
              transforms: tuple[Transform, ...] = (), geometry: Geometry | None = None) -> None:
        # checked at every (re)open: a file gone by the time a worker reopens it is named
        source = resolve_source(source, what="src")
        chosen, self.device = select_backend("open_video", device, backend)
        self._impl = MediaReader(source, stream=stream, decoder=chosen, device=self.device, num_threads=num_threads,
                                 color=color, transforms=transforms, geometry=geometry)
        self._color = color
        self._transforms = transforms
        # closed when this reader is collected unclosed; a no-op on what a forked child inherited
        self._finalizer = weakref.finalize(self, self._impl.close)
        self._args = (source, num_threads, device, backend)
        self._stream = f"{stream[0]}:{stream[1]}"
        self._generation = _forksafe.generation()
        # where the next frame comes from, to resume there in a forked child or after unpickling:
        # ("start",), ("seek", time_s, keyframes_only) or ("after", pts of the last frame returned)
        self._position = position
        self._resume_pending = position != ("start",)
        self._peeked: dict[str, Any] | None = None

    # ------------------------------------------------------------------ worker processes
    def _reader(self, *, resume: bool = False) -> Any:
        """The backend reader, reopened first when this process is a fork of the one that made it.

        ``resume``: also put it back at the position the parent (or the pickled reader) was at;
        only reading the next frame needs that (random access and metadata do not, and a seek
        replaces the position)."""
        if self._generation != _forksafe.generation():
            source, num_threads, device, backend = self._args
            kind, _, index = self._stream.partition(":")
            if self.device.type == "cuda" and device != "auto":
                raise BackendUnavailableError(
                    f"this VideoReader decodes on {self.device}, and CUDA does not survive fork: it cannot "
                    "be used in a forked child. Open readers in the worker, or use the spawn or forkserver "
                    "start method (readers pickle)")
            # what the parent opened stays untouched here (see gpuvio._forksafe)
            self._finalizer.detach()
            self._open(source, (kind, int(index)), num_threads, "cpu" if device == "auto" else device,
                       backend, self._color, self._position, transforms=self._transforms,
                       geometry=self._impl.geometry)
        if resume and self._resume_pending:
            self._resume_pending = False
            self._resume()
        return self._impl

    def _resume(self) -> None:
        """Put a freshly opened reader at :attr:`_position`."""
        position = self._position
        if position[0] == "seek":
            self._impl.seek(position[1], keyframes_only=position[2])
        elif position[0] == "after":
            last = position[1]
            if self._stream.startswith("video"):
                self._impl.seek(last)  # lands on the last frame returned: skip it and any before
            # audio is decoded from the start: an audio decoder started at a seek point gives
            # its first frames slightly differently (overlapping transforms)
            while True:
                try:
                    data, pts = self._impl.next()
                except StopIteration:
                    return
                if pts > last:
                    self._peeked = {"data": data, "pts": pts}
                    return

    def __getstate__(self) -> dict[str, Any]:
        source, num_threads, device, backend = self._args
        if isinstance(source, memoryview):
            source = source.tobytes()
        elif isinstance(source, str):
            source = os.path.abspath(source)  # the unpickling process may run elsewhere
        kind, _, index = self._stream.partition(":")
        return {"source": source, "stream": (kind, int(index)), "num_threads": num_threads,
                "device": device, "backend": backend, "color": self._color, "position": self._position,
                "transforms": self._transforms, "geometry": self._impl.geometry}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._open(state["source"], tuple(state["stream"]), state["num_threads"], state["device"], state["backend"],
                   state["color"], tuple(state["position"]), transforms=tuple(state.get("transforms", ())),
                   geometry=state.get("geometry"))

    @property
    def backend(self) -> str:
        return self._reader().backend_name

    @property
    def fallback(self) -> Fallback | None:
        """The record of a GPU backend handing this file's video to the CPU backend, or None."""
        return self._reader().fallback

    @property
    def fallback_reason(self) -> str | None:
        """Why a GPU backend handed this file to the CPU backend, or None if it did not."""
        return self._reader().fallback_reason

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        """The next frame: ``{"data": Tensor, "pts": float seconds}``; StopIteration at the end."""
        reader = self._reader(resume=True)
        if self._peeked is not None:
            frame, self._peeked = self._peeked, None
        else:
            data, pts = reader.next()
            frame = {"data": data, "pts": pts}
        self._position = ("after", frame["pts"])
        return frame

    def seek(self, time_s: float, keyframes_only: bool = False) -> VideoReader:
        """Move so that the next frame is the first with pts >= ``time_s`` (seconds).

        With ``keyframes_only=True`` the next frame is instead the keyframe at or before
        ``time_s`` (faster, imprecise). Returns the reader, so ``for f in reader.seek(2)`` works.
        """
        if isinstance(time_s, bool) or not isinstance(time_s, (int, float)) and not hasattr(time_s, "__float__"):
            raise InvalidInputTypeError(f"time_s must be a number of seconds, got {time_s!r}")
        reader = self._reader()
        self._peeked, self._resume_pending = None, False
        reader.seek(float(time_s), keyframes_only=keyframes_only)
        self._position = ("seek", float(time_s), bool(keyframes_only))
        return self

    def get_metadata(self) -> dict[str, dict[str, list[float]]]:
        """Duration and rate of every stream: ``{"video": {"duration": [...], "fps": [...]},
        "audio": {"duration": [...], "framerate": [...]}}`` (seconds, frames or samples per second)."""
        return self._reader().metadata()

    def set_current_stream(self, stream: str) -> bool:
        """Switch to another stream (``"video"``, ``"audio:1"``...) and rewind it. Returns True."""
        kind, index = _parse_stream(stream)
        reader = self._reader()
        self._peeked, self._resume_pending = None, False
        reader.set_stream(kind, index)
        self._stream = f"{kind}:{index}"
        self._position = ("start",)
        return True

    def __len__(self) -> int:
        """Number of frames in the current stream (read from the container, no decoding)."""
        return len(self._reader())

    def get_frames_at(self, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Frames at the given display positions, decoded together (each GOP at most once).

        Args:
            indices: frame numbers; negative ones count from the end. Any order, repeats allowed.

        Returns:
            ``Tensor[N, C, H, W] uint8`` on the reader's device, in the order of ``indices``.
        """
        frames, _ = self._reader().get_frames_at(self._as_list(indices, "indices", int))
        return frames

    def get_frames_played_at(self, seconds: Sequence[float] | torch.Tensor) -> torch.Tensor:
        """The frames on screen at the given times (the last frame with pts <= t).

        Returns:
            ``Tensor[N, C, H, W] uint8``. Raises ``IndexError`` for a time outside the video.
        """
        reader = self._reader()
        positions = reader.indices_played_at(self._as_list(seconds, "seconds", float))
        frames, _ = reader.get_frames_at(positions)
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
        self._peeked = None
        self._impl.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VideoReader(stream={self._stream!r}, backend={self.backend!r}, device={str(self.device)!r})"
