"""decode_videos: the video frames of many files at once, decoded concurrently."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import Any, Sequence

import torch

from . import _media
from ._dispatch import select_backend
from ._protocols import VideoDecoder
from ._errors import GpuvioError, InvalidArgumentError, InvalidInputTypeError, for_item
from ._source import resolve_source
from ._types import ColorPolicy, DeviceLike, PtsUnit, Source, check_color
from ._video import _check_pts_unit, _check_time
from .transforms import Transform, TransformsLike, as_transforms, per_item

__all__ = ["decode_videos"]


def decode_videos(sources: Sequence[Source], *, device: DeviceLike = "auto", start_pts: int | float | Fraction = 0,
                  end_pts: int | float | Fraction | None = None, pts_unit: PtsUnit = "pts",
                  max_workers: int | None = None, backend: str | None = None,
                  color: ColorPolicy = "torchvision", transforms: TransformsLike = None) -> list[torch.Tensor]:
    """Decode the video frames of several files concurrently.

    Each result is what :func:`gpuvio.read_video` returns as ``vframes`` for the same arguments
    (same frames, same pixels), without the audio. On a GPU the files are spread over enough
    decoder sessions to keep every NVDEC engine busy (H100/H200 have 7; one session never uses
    more than one); on the CPU a thread pool runs the CPU backend, whose decoding releases the GIL.

    Example::

        clips = gpuvio.decode_videos(paths, device="cuda", start_pts=0, end_pts=2.0, pts_unit="sec")

    Args:
        sources: paths, bytes or ``Tensor[N] uint8`` of encoded files (a list or tuple).
        device: ``"auto"`` (default: the GPU when a GPU backend is usable, else the CPU),
            ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        start_pts, end_pts, pts_unit: the inclusive time range, as for :func:`gpuvio.read_video`
            (default: the whole video; ``pts_unit`` ``"pts"`` or ``"sec"``).
        max_workers: concurrent decodes; default two per NVDEC engine on a GPU, one per CPU core
            (at most one per file) on the CPU.
        backend: force a backend by name.
        color: ``"torchvision"`` (default) or ``"accurate"``, as for :func:`gpuvio.read_video`.
        transforms: decode-time :mod:`gpuvio.transforms`, as for :func:`gpuvio.read_video`: one
            random window per file, drawn up front (reproducible whatever the decoding order).

    Returns:
        A list with one ``Tensor[T, H, W, 3]`` uint8 per source, in order, on ``device``.
        Files the GPU cannot decode are decoded on the CPU and uploaded, with a warning each.
    """
    if isinstance(sources, (str, bytes, bytearray, memoryview, os.PathLike, torch.Tensor)) or \
            not isinstance(sources, Sequence):
        raise InvalidInputTypeError(
            f"sources must be a list or tuple of videos (paths, bytes or uint8 tensors); got {type(sources).__name__}")
    _check_pts_unit(pts_unit)
    _check_time(start_pts, "start_pts")
    end = float("inf") if end_pts is None else _check_time(end_pts, "end_pts")
    if end < start_pts:
        raise InvalidArgumentError(
            f"end_pts should be larger than start_pts, got start_pts={start_pts} and end_pts={end_pts}")
    if max_workers is not None and (isinstance(max_workers, bool) or not isinstance(max_workers, int)
                                    or max_workers < 1):
        raise InvalidArgumentError(f"max_workers must be a positive int or None; got {max_workers!r}")
    check_color(color)
    steps = as_transforms(transforms)
    resolved = [resolve_source(s, what=f"sources[{i}]") for i, s in enumerate(sources)]
    chosen, target = select_backend("read_video", device, backend)
    return _read_concurrently(chosen, resolved, start_pts, end, pts_unit, target, max_workers, color, steps)


def _read_concurrently(decoder: VideoDecoder, sources: list[Any], start_pts: Any, end_pts: Any, pts_unit: str,
                       device: torch.device, max_workers: int | None, color: ColorPolicy,
                       transforms: tuple[Transform, ...]) -> list[torch.Tensor]:
    if not sources:
        return []
    # results are used on the caller's CUDA stream, whichever worker thread decoded them
    consumer = torch.cuda.current_stream(device) if device.type == "cuda" else None

    def one(index: int, source: Any, steps: tuple[Transform, ...]) -> torch.Tensor:
        try:
            return _media.read_video(source, start_pts=start_pts, end_pts=end_pts, pts_unit=pts_unit,
                                     decoder=decoder, device=device, color=color, audio=False, consumer=consumer,
                                     transforms=steps)[0]
        except GpuvioError as exc:  # which of the files it was (a crop too large for it, a corrupt one...)
            raise for_item(exc, "video", index, len(sources)) from exc

    each = per_item(transforms, len(sources))
    workers = max_workers or min(len(sources), decoder.concurrency(device))
    if workers <= 1:
        return [one(i, s, t) for i, (s, t) in enumerate(zip(sources, each))]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpuvio-decode") as pool:
        return list(pool.map(one, range(len(sources)), sources, each))
