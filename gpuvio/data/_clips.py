"""VideoClipDataset: every fixed-length clip of a set of videos, torchvision ``VideoClips`` style."""

from __future__ import annotations

import bisect
import math
import operator
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from .._dispatch import parse_device
from .._errors import InvalidArgumentError, InvalidInputTypeError
from .._types import ColorPolicy, DeviceLike, check_color
from ..transforms import TransformsLike, as_transforms, per_item
from ._encoded import (
    ClipFormat,
    EncodedClip,
    decode_clip,
    source_for,
    worker_safe_device,
)
from ._index import IndexExecutor, build_index

__all__ = ["VideoClipDataset"]


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} must be an int >= 1; got {value!r}")
    return value


def resampled_positions(num_frames: int, fps: float | None, frame_rate: float | None) -> torch.Tensor:
    """Display indices of the frames kept when a video of ``fps`` is resampled to ``frame_rate``.

    torchvision's arithmetic, bit for bit: an integer ratio keeps every n-th frame; otherwise
    frame ``floor(i * fps / frame_rate)`` (computed in float32) for i below
    ``floor(num_frames * frame_rate / fps)``. Up-sampling repeats frames.
    """
    if fps is None:
        fps = 1.0  # no video stream: there are no frames anyway
    if frame_rate is None:
        frame_rate = fps
    step = fps / frame_rate
    if float(step).is_integer():
        return torch.arange(0, num_frames, int(step), dtype=torch.int64)
    total = math.floor(num_frames * frame_rate / fps)
    return (torch.arange(total, dtype=torch.float32) * step).floor().to(torch.int64)


class VideoClipDataset(Dataset):
    """All clips of ``clip_len`` frames from a list of videos, for a ``torch.utils.data.DataLoader``.

    Clip ``k`` of a video starts at (resampled) frame ``k * step``; a video yields
    ``(frames - clip_len) // step + 1`` clips, and one too short for a single clip yields none
    (with a warning), exactly as torchvision's ``VideoClips``. With ``frame_rate`` the frames are
    first resampled to that rate (torchvision's rounding). The frame index (each file's pts, read
    from the packets without decoding) is built once, in parallel, and cached in ``cache_dir``.

    Each item is a tuple ``(clip, video_idx, clip_idx)``:

    - ``clip``: ``Tensor[T, C, H, W] uint8`` (``output_format="TCHW"``, the default) or
      ``Tensor[T, H, W, C]`` (``"THWC"``), T = ``clip_len``, RGB, H and W after ``transforms``,
      passed through ``transform`` if given; with ``decode=False`` an
      :class:`~gpuvio.data.EncodedClip` instead, which carries ``transforms``.
    - ``video_idx``: index of the file in ``paths``; ``clip_idx``: index of the clip in that file.

    Decoding reads exactly the frames between the clip's first and last pts
    (:func:`gpuvio.read_video` with pts bounds), so items are independent and any sampler works.

    ``transforms`` (e.g. ``[Resize(128), RandomCrop(112)]``) resize and crop the frames as they
    are decoded, as :mod:`gpuvio.transforms` describes. All frames of a clip share one random
    window, drawn per ``__getitem__`` (from the crop's generator, by default torch's global RNG
    in the process that calls it, which each DataLoader worker seeds its own way), also with
    ``decode=False``: the
    :class:`~gpuvio.data.EncodedClip` then carries a seed for its window, so the clip gets the
    same window wherever and whenever it is decoded (by :class:`~gpuvio.data.DeviceLoader` on the
    GPU too). With a ``(h, w)`` resize or a crop last, clips of videos of different sizes stack
    into one batch.

    Example::

        ds = VideoClipDataset(paths, clip_len=16, step=8, cache_dir="~/.cache/clips")
        loader = DataLoader(ds, batch_size=8, num_workers=4, collate_fn=gpuvio.data.collate)
        for clips, video_idx, clip_idx in loader:          # clips: Tensor[8, 16, 3, H, W]
            ...

        # GPU decoding, fork-safe: workers read bytes, the main process decodes on its GPU,
        # resizing and cropping as it decodes (one random window per clip)
        ds = VideoClipDataset(paths, clip_len=16, decode=False,
                              transforms=[Resize(128), RandomCrop(112)])   # gpuvio.transforms
        loader = DeviceLoader(DataLoader(ds, batch_size=8, num_workers=4,
                                         collate_fn=gpuvio.data.collate), device="cuda")

    Args:
        paths: video files (str or PathLike).
        clip_len: frames per clip (>= 1).
        step: distance between the first frames of consecutive clips, in (resampled) frames.
            Default 1.
        frame_rate: resample every video to this many frames per second; None (default) keeps
            each video's own rate.
        output_format: ``"TCHW"`` (default) or ``"THWC"``.
        transforms: decode-time :mod:`gpuvio.transforms` (``Resize``, ``CenterCrop``,
            ``RandomCrop``, or torchvision's), applied in order to every frame, one random window
            per clip. Default None. A crop larger than a video's (resized) frames raises
            :class:`~gpuvio.InvalidArgumentError` when that video's clip is decoded.
        transform: any callable, applied to each decoded clip tensor after ``transforms`` (not
            allowed with ``decode=False``: give it to :class:`~gpuvio.data.DeviceLoader`).
        decode: True (default) decodes in ``__getitem__``; False returns :class:`EncodedClip`
            objects for :class:`~gpuvio.data.DeviceLoader`.
        encoded_as: with ``decode=False``, what a clip carries: ``"bytes"`` (default; the worker
            reads the file) or ``"path"`` (nothing is read until decoding; the file must be
            reachable from the decoding process).
        device: where ``__getitem__`` decodes: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or
            ``"auto"``. A CUDA device only works in the main process (``num_workers=0``); in a
            DataLoader worker ``"auto"`` means the CPU.
        backend: force a decoding backend by name.
        cache_dir: directory for the frame index cache; None (default) keeps it in memory only.
            An entry is recomputed when its file's size or modification time changes.
        num_workers: parallel index readers; None is ``min(8, cpu count)``.
        index_executor: ``"thread"`` (default) or ``"process"`` for the index readers.
        color: ``"torchvision"`` (default: torchvision's pixels) or ``"accurate"``; see
            :func:`gpuvio.read_video`.

    Attributes:
        video_paths: ``list[str]``, absolute paths.
        video_pts: ``list[Tensor[N] int64]``, every frame's pts per video (stream time base).
        video_fps: ``list[float | None]``.
        clips_per_video: ``list[int]``.
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str]], clip_len: int, *, step: int = 1,
                 frame_rate: float | None = None, output_format: ClipFormat = "TCHW",
                 transform: Callable[[torch.Tensor], Any] | None = None, decode: bool = True,
                 encoded_as: Literal["bytes", "path"] = "bytes", device: DeviceLike = "cpu",
                 backend: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                 num_workers: int | None = None, index_executor: IndexExecutor = "thread",
                 color: ColorPolicy = "torchvision", transforms: TransformsLike = None) -> None:
        if isinstance(paths, (str, os.PathLike)) or not isinstance(paths, Sequence):
            raise InvalidInputTypeError(f"paths must be a list of video files; got {type(paths).__name__}")
        for p in paths:
            if not isinstance(p, (str, os.PathLike)):
                raise InvalidInputTypeError(f"paths must hold str or PathLike items; got {p!r}")
        self.clip_len = _positive_int(clip_len, "clip_len")
        self.step = _positive_int(step, "step")
        if frame_rate is not None and (
                isinstance(frame_rate, bool) or not isinstance(frame_rate, (int, float))
                or not (math.isfinite(frame_rate) and frame_rate > 0)):
            raise InvalidArgumentError(f"frame_rate must be a positive number or None; got {frame_rate!r}")
        self.frame_rate = frame_rate
        fmt = output_format.upper() if isinstance(output_format, str) else output_format
        if fmt not in ("TCHW", "THWC"):
            raise InvalidArgumentError(f"output_format must be 'TCHW' or 'THWC'; got {output_format!r}")
        self.output_format: ClipFormat = fmt
        if encoded_as not in ("bytes", "path"):
            raise InvalidArgumentError(f"encoded_as must be 'bytes' or 'path'; got {encoded_as!r}")
        if not decode and transform is not None:
            raise InvalidArgumentError(
                "transform runs on decoded clips; with decode=False pass it to DeviceLoader(transform=...), "
                "or resize and crop at decode time with transforms=[...]")
        self.transform = transform
        self.transforms = as_transforms(transforms)
        self.decode = bool(decode)
        self.encoded_as = encoded_as
        parse_device(device)  # reject a bad device now, not in a worker
        self.device = device
        self.backend = backend
        self.color = check_color(color)

        self.video_paths = [os.path.abspath(os.fspath(p)) for p in paths]
        index = build_index(self.video_paths, cache_dir=cache_dir, num_workers=num_workers,
                            executor=index_executor)
        self.video_pts = [torch.tensor(v.pts, dtype=torch.int64) for v in index]
        self.video_fps = [v.fps for v in index]
        # per video: the display indices that survive resampling; clip k is a window of it
        self._kept = [resampled_positions(len(pts), fps, frame_rate)
                      for pts, fps in zip(self.video_pts, self.video_fps)]
        self.clips_per_video = [max(0, (len(kept) - self.clip_len) // self.step + 1) for kept in self._kept]
        short = [p for p, n in zip(self.video_paths, self.clips_per_video) if n == 0]
        if short:
            warnings.warn(
                f"{len(short)} of {len(paths)} videos have too few frames for one clip of {self.clip_len} "
                f"frames (step {self.step}) and are skipped, e.g. {short[0]!r}", UserWarning, stacklevel=2)
        self._cumulative = torch.tensor(self.clips_per_video, dtype=torch.int64).cumsum(0).tolist()

    # ------------------------------------------------------------------ index
    def __len__(self) -> int:
        return self._cumulative[-1] if self._cumulative else 0

    @property
    def num_videos(self) -> int:
        return len(self.video_paths)

    def clip_location(self, idx: int) -> tuple[int, int]:
        """``(video_idx, clip_idx)`` of dataset item ``idx`` (negative counts from the end)."""
        total = len(self)
        original = idx
        try:
            # ints, numpy integers and 0-d integer tensors (what samplers hand out)
            idx = operator.index(idx) if not isinstance(idx, bool) else None  # type: ignore[assignment]
        except TypeError:
            idx = None  # type: ignore[assignment]
        if idx is None:
            raise InvalidInputTypeError(f"clip index must be an int; got {original!r}")
        if not -total <= idx < total:
            raise IndexError(f"clip index {idx} is out of range for {total} clips")
        idx %= total
        video_idx = bisect.bisect_right(self._cumulative, idx)
        clip_idx = idx - (self._cumulative[video_idx - 1] if video_idx else 0)
        return video_idx, clip_idx

    def clip_positions(self, video_idx: int, clip_idx: int) -> torch.Tensor:
        """Display indices of the clip's frames in its file: ``Tensor[clip_len] int64``."""
        start = clip_idx * self.step
        return self._kept[video_idx][start:start + self.clip_len]

    def clip_pts(self, idx: int) -> torch.Tensor:
        """pts of item ``idx``'s frames, in its stream's time base: ``Tensor[clip_len] int64``."""
        video_idx, clip_idx = self.clip_location(idx)
        return self.video_pts[video_idx][self.clip_positions(video_idx, clip_idx)]

    def encoded_clip(self, idx: int, *, encoded_as: Literal["bytes", "path"] | None = None) -> EncodedClip:
        """Item ``idx`` as an :class:`EncodedClip`; ``encoded_as`` defaults to the dataset's.

        Its ``transforms`` are the dataset's, each ``RandomCrop`` given a seed of its own drawn
        here (from the crop's generator, else torch's global RNG): each call draws a new window.
        """
        video_idx, clip_idx = self.clip_location(idx)
        positions = [int(p) for p in self.clip_positions(video_idx, clip_idx)]
        pts = self.video_pts[video_idx]
        return EncodedClip(
            data=source_for(self.video_paths[video_idx], encoded_as or self.encoded_as),
            start_pts=int(pts[positions[0]]), end_pts=int(pts[positions[-1]]),
            offsets=tuple(p - positions[0] for p in positions), positions=tuple(positions),
            output_format=self.output_format, color=self.color, transforms=per_item(self.transforms, 1)[0])

    # ------------------------------------------------------------------ items
    def __getitem__(self, idx: int) -> tuple[Any, int, int]:
        video_idx, clip_idx = self.clip_location(idx)
        if not self.decode:
            return self.encoded_clip(idx), video_idx, clip_idx
        # decoding here reads straight from the file: no need to hold its bytes
        clip = decode_clip(self.encoded_clip(idx, encoded_as="path"), device=worker_safe_device(self.device),
                           backend=self.backend)
        if self.transform is not None:
            clip = self.transform(clip)
        return clip, video_idx, clip_idx

    def __repr__(self) -> str:
        return (f"VideoClipDataset({self.num_videos} videos, {len(self)} clips of {self.clip_len} frames, "
                f"step={self.step}, frame_rate={self.frame_rate}, decode={self.decode}"
                + (f", transforms={list(self.transforms)!r})" if self.transforms else ")"))
