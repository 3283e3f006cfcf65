"""Decoded-frame helpers shared by the CPU video functions: colour conversion, audio samples, threads."""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import numpy as np
import torch

__all__ = ["audio_to_float", "convert_async", "frame_to_rgb", "open_container"]

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _reset_pool_after_fork() -> None:
    # A forked child inherits the executor object but none of its threads.
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_reset_pool_after_fork)


def _conversion_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            workers = max(1, min(4, os.cpu_count() or 1))
            _pool = ThreadPoolExecutor(workers, thread_name_prefix="gpuvio-rgb")
        return _pool


def _interpolation() -> Any:
    from av.video.reformatter import Interpolation

    # swscale's exact path: float-accurate rounding, chroma interpolated to full resolution
    return Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT


_INTERPOLATION: list[Any] = []


def frame_to_rgb(frame: Any) -> np.ndarray:
    """``ndarray[H, W, 3] uint8`` RGB of a decoded video frame, by gpuvio's colour policy.

    See :mod:`gpuvio._color` for the policy. swscale gets the frame's range explicitly because
    it otherwise assumes limited range for every ``yuv*`` format, even a full-range-tagged one.
    """
    if not _INTERPOLATION:
        _INTERPOLATION.append(_interpolation())
    if frame.format.name == "rgb24":
        return frame.to_ndarray()
    rgb = frame.reformat(format="rgb24", interpolation=_INTERPOLATION[0],
                         src_color_range=frame.color_range or None, dst_color_range="JPEG", threads=1)
    return rgb.to_ndarray()


def convert_async(frame: Any, convert: Callable[[Any], np.ndarray] = frame_to_rgb) -> Future:
    """Convert a frame on the shared worker threads (swscale releases the GIL), overlapping decoding."""
    return _conversion_pool().submit(convert, frame)


def audio_to_float(frame: Any) -> np.ndarray:
    """``ndarray[channels, samples] float32`` in [-1, 1] from any PyAV audio frame."""
    array = frame.to_ndarray()
    fmt = frame.format
    channels = len(frame.layout.channels)
    if not fmt.is_planar:
        array = array.reshape(-1, channels).T
    kind = array.dtype
    if kind == np.uint8:
        out = (array.astype(np.float32) - 128.0) / 128.0
    elif kind == np.int16:
        out = array.astype(np.float32) / 32768.0
    elif kind == np.int32:
        out = array.astype(np.float32) / 2147483648.0
    elif kind == np.int64:
        out = (array.astype(np.float64) / 9223372036854775808.0).astype(np.float32)
    else:
        out = array.astype(np.float32, copy=False)
    return np.ascontiguousarray(out)


def open_container(source: Any, **kwargs: Any) -> Any:
    """``av.open`` for a path or in-memory bytes."""
    import io

    import av

    if isinstance(source, memoryview):
        source = io.BytesIO(source)
    return av.open(source, metadata_errors="ignore", **kwargs)


def stack_frames(frames: list[np.ndarray], height: int, width: int) -> torch.Tensor:
    """``Tensor[T, H, W, 3] uint8`` from per-frame arrays (one copy)."""
    if not frames:
        return torch.empty((0, 1, 1, 3), dtype=torch.uint8)
    out = torch.empty((len(frames), height, width, 3), dtype=torch.uint8)
    target = out.numpy()
    for i, f in enumerate(frames):
        target[i] = f
    return out
