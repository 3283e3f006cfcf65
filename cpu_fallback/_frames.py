"""The CPU backend's frame conversion: colour policies, the conversion threads, output buffers.

Two colour policies (``color=``):

* ``"torchvision"`` (the default): torchvision 0.8's pixels, i.e. ``frame.to_rgb()`` in PyAV,
  which is swscale's default conversion to packed ``rgb24`` (its fast unscaled path, chroma
  shared by each 2x2 block, matrix from the frame's colour tags, range as PyAV passes it).
  The converter asks swscale for exactly that, single-threaded, and copies the result into the
  caller's buffer: bit-identical to ``to_rgb`` by construction. (Planar ``gbrp`` would be faster
  but swscale takes another path for it, whose pixels differ on some sizes and formats.)
* ``"accurate"``: :mod:`gpuvio._color`'s policy. swscale computes it (its accurate bilinear
  path) for almost every frame; frames of odd width or height, where swscale leaves the 2:1
  chroma grid, go through :func:`gpuvio._color.yuv_to_rgb` itself. swscale writes planar RGB
  (``gbrp``), which its accurate path produces about 40% faster than packed ``rgb24``.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from gpuvio import _forksafe as forksafe
from gpuvio._errors import DecodeError, ResourceLimitError
from gpuvio._media import initial_capacity
from gpuvio._protocols import Layout
from gpuvio._types import ColorPolicy
from gpuvio.transforms import Geometry

__all__ = [
    "FrameStack",
    "RgbConverter",
    "conversion_pool",
    "conversion_workers",
    "converter_for",
    "frame_to_rgb",
    "parallel_map",
]

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _reset_after_fork() -> None:
    # A forked child inherits the executor object but none of its threads, and possibly a lock
    # held by a thread that no longer exists. The converters' swscale contexts are not freed
    # there (held for good), only replaced.
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()
    for converter in _converters.values():
        forksafe.hold(converter)
    _converters.clear()


os.register_at_fork(after_in_child=_reset_after_fork)


def conversion_workers() -> int:
    """How many pool threads convert frames: one per core but the decoder's, 1 to 4.

    swscale releases the GIL, so they run in parallel with the decoding thread, which also
    converts frames itself when these are all busy (see ``gpuvio.cpu_fallback._frame_source.Conversions``).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(4, cores - 1))


def conversion_pool() -> ThreadPoolExecutor:
    """The process-wide pool of colour-conversion threads (created on first use, fork-safe)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(conversion_workers(), thread_name_prefix="gpuvio-rgb")
        return _pool


def parallel_map(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """``[fn(x) for x in items]`` spread over the calling thread and the shared pool.

    For work that releases the GIL (libjpeg, libpng, swscale). The caller takes part, so a
    single-core machine or a one-item list costs no thread hand-off. An exception from ``fn``
    propagates; callers that want per-item errors return them instead of raising.
    """
    results: list[Any] = [None] * len(items)
    if len(items) < 2:
        return [fn(x) for x in items]
    order = iter(range(len(items)))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                i = next(order, None)
            if i is None:
                return
            results[i] = fn(items[i])

    helpers = [conversion_pool().submit(work) for _ in range(min(conversion_workers(), len(items) - 1))]
    work()
    for helper in helpers:
        helper.result()
    return results


_ACCURATE: list[Any] = []


def _accurate_flags() -> Any:
    if not _ACCURATE:
        from av.video.reformatter import Interpolation

        # swscale's exact path: bilinear chroma interpolated to full resolution, accurate rounding
        _ACCURATE.append(Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT)
    return _ACCURATE[0]


# planar YUV layouts that gpuvio._color.yuv_to_rgb takes as they are
_PLANAR_YUV = re.compile(r"^yuvj?(420|422|444)p(?:(9|10|12|14|16)le)?$")


def _plane(plane: Any, dtype: Any = np.uint8) -> np.ndarray:
    """``ndarray[h, w]`` view of one plane of a frame (no copy; strides skip the padding)."""
    itemsize = np.dtype(dtype).itemsize
    rows = np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // itemsize)
    return rows[:, : plane.width]


class RgbConverter:
    """Converts the decoded frames of one stream to RGB by one of the colour policies.

    Thread-safe: each thread gets its own swscale context. Frames whose size differs from the
    target size given to :meth:`convert_into` are scaled (bilinear) to it.

    Args:
        codec: the stream's FFmpeg decoder name, which sets the chroma siting of the
            ``"accurate"`` policy (see :func:`gpuvio._color.chroma_siting`).
        policy: ``"torchvision"`` (default) or ``"accurate"``; see the module docstring.
    """

    def __init__(self, codec: str | None, policy: ColorPolicy = "torchvision") -> None:
        from gpuvio._color import chroma_siting

        self.siting = chroma_siting(codec)
        self.policy = policy
        self._local = threading.local()

    def _reformatter(self) -> Any:
        reformatter = getattr(self._local, "reformatter", None)
        if reformatter is None:
            from av.video.reformatter import VideoReformatter

            reformatter = self._local.reformatter = VideoReformatter()
        return reformatter

    def convert_into(self, frame: Any, out: np.ndarray, layout: Layout = "HWC",
                     geometry: Geometry | None = None) -> None:
        """Write the RGB of ``frame`` into ``out``: ``ndarray[H, W, 3]`` (``"HWC"``) or
        ``ndarray[3, H, W]`` (``"CHW"``), uint8. H and W are the output size.

        With a ``geometry`` (decode-time transforms, :mod:`gpuvio.transforms`), ``out`` has its
        output size and gets the transformed frame."""
        if geometry is not None and not geometry.identity:
            self._convert_transformed(frame, out, layout, geometry)
            return
        height, width = (out.shape[1], out.shape[2]) if layout == "CHW" else (out.shape[0], out.shape[1])
        name = frame.format.name
        same_size = frame.width == width and frame.height == height
        if self.policy == "torchvision":
            self._convert_like_to_rgb(frame, out, layout, None if same_size else (width, height))
            return
        if same_size and (width % 2 or height % 2) and _PLANAR_YUV.match(name):
            self._convert_with_policy(frame, out, layout)
            return
        kwargs: dict[str, Any] = {}
        if not same_size:
            kwargs = {"width": width, "height": height}
        import av

        try:
            # swscale assumes limited range for every yuv* format unless told the frame's range
            planar = self._reformatter().reformat(
                frame, format="gbrp", interpolation=_accurate_flags(), src_color_range=frame.color_range or None,
                dst_color_range="JPEG", threads=1, **kwargs)
        except av.FFmpegError as exc:  # a frame of a corrupt stream, e.g. a size swscale refuses
            raise DecodeError(
                f"a decoded {frame.width}x{frame.height} {name} frame could not be converted to RGB: {exc}") from None
        g, b, r = (_plane(p) for p in planar.planes)
        if layout == "CHW":
            out[0], out[1], out[2] = r, g, b
        else:
            out[:, :, 0], out[:, :, 1], out[:, :, 2] = r, g, b

    def _convert_transformed(self, frame: Any, out: np.ndarray, layout: Layout, geometry: Geometry) -> None:
        # The exact conversion at full size, then torchvision's own resize of its channels-last
        # view (torch's native uint8 kernel is fastest on that) into the small output. swscale
        # scaling straight from YUV would skip a pass but is 1-3 levels off torchvision's pixels
        # on average (its filters and chroma differ), far outside the 0.5 transforms promise.
        height, width = geometry.input_size
        if self.policy == "torchvision" and (frame.height, frame.width) == (height, width):
            # swscale's own rgb24 frame (to_rgb()'s pixels) is resized as it is, with no copy. (Its
            # packed 32-bit output would be faster, but swscale takes other paths for it whose
            # pixels differ from rgb24 on some sizes, NV12 and 10-bit.)
            plane = self._reformat(frame, "rgb24").planes[0]
            rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
            full = rows[:, : plane.width * 3].reshape(plane.height, plane.width, 3)
        else:
            # the other policy, or a frame to scale to the stream's size first: converted into a
            # per-thread buffer, reused frame to frame
            buffers = self._local.__dict__.setdefault("buffers", {})
            full = buffers.get((height, width))
            if full is None:
                buffers.clear()
                full = buffers[(height, width)] = np.empty((height, width, 3), dtype=np.uint8)
            self.convert_into(frame, full, "HWC")
        result = geometry.apply(torch.from_numpy(full).permute(2, 0, 1))
        torch.from_numpy(out).copy_(result if layout == "CHW" else result.permute(1, 2, 0))

    def _convert_like_to_rgb(self, frame: Any, out: np.ndarray, layout: Layout,
                             size: tuple[int, int] | None) -> None:
        # PyAV's to_rgb() with its defaults (frame's colorspace, unspecified range, BILINEAR),
        # but one thread: swscale's slice threads would be made and joined per context
        packed = self._reformat(frame, "rgb24", size)
        plane = packed.planes[0]
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        rgb = rows[:, : plane.width * 3].reshape(plane.height, plane.width, 3)
        if layout == "CHW":
            np.copyto(out, rgb.transpose(2, 0, 1))
        else:
            np.copyto(out, rgb)

    def _reformat(self, frame: Any, format: str, size: tuple[int, int] | None = None) -> Any:
        """swscale's default conversion of ``frame`` (to_rgb()'s) to a packed RGB ``format``, at
        ``size`` (width, height) if given."""
        kwargs: dict[str, Any] = {} if size is None else {"width": size[0], "height": size[1]}
        import av

        try:
            return self._reformatter().reformat(frame, format=format, threads=1, **kwargs)
        except av.FFmpegError as exc:
            raise DecodeError(f"a decoded {frame.width}x{frame.height} {frame.format.name} frame could not be "
                              f"converted to RGB: {exc}") from None

    def _convert_with_policy(self, frame: Any, out: np.ndarray, layout: Layout) -> None:
        from gpuvio._color import color_policy, yuv_to_rgb

        bits = frame.format.components[0].bits
        dtype = np.uint16 if bits > 8 else np.uint8
        y, u, v = (torch.from_numpy(_plane(p, dtype).astype(np.int32)) for p in frame.planes[:3])
        matrix, full = color_policy(frame.colorspace, frame.color_range, frame.format.name)
        rgb = yuv_to_rgb(y, u, v, matrix=matrix, full_range=full, bit_depth=bits, siting=self.siting).numpy()
        if layout == "CHW":
            out[:] = rgb.transpose(2, 0, 1)
        else:
            out[:] = rgb

    def to_array(self, frame: Any, layout: Layout = "HWC") -> np.ndarray:
        """A new ``ndarray[H, W, 3]`` (or ``[3, H, W]``) uint8 with the frame's RGB."""
        shape = (3, frame.height, frame.width) if layout == "CHW" else (frame.height, frame.width, 3)
        out = np.empty(shape, dtype=np.uint8)
        self.convert_into(frame, out, layout)
        return out


_converters: dict[tuple[str, str], RgbConverter] = {}


def converter_for(codec: str | None, policy: ColorPolicy = "torchvision") -> RgbConverter:
    """The shared converter for a codec's streams: its per-thread swscale contexts are reused
    from call to call (worth it for many short clips: setting one up costs about a frame)."""
    key = (codec or "", policy)
    converter = _converters.get(key)
    if converter is None:
        converter = _converters.setdefault(key, RgbConverter(codec, policy))
    return converter


def frame_to_rgb(frame: Any, codec: str | None = "h264", policy: ColorPolicy = "torchvision") -> np.ndarray:
    """``ndarray[H, W, 3] uint8`` RGB of a decoded video frame, by a colour policy.

    ``codec`` is the decoder's name (it sets the ``"accurate"`` policy's chroma siting).
    """
    return converter_for(codec, policy).to_array(frame)


def _allocate_frames(count: int, frame_shape: tuple[int, ...]) -> torch.Tensor:
    try:
        return torch.empty((count, *frame_shape), dtype=torch.uint8)
    except RuntimeError as exc:  # the allocator's "can't allocate memory"
        size = count * math.prod(frame_shape) / 2**30
        raise ResourceLimitError(
            f"not enough memory for {count} decoded frames of shape {tuple(frame_shape)} ({size:.1f} GiB); "
            "read a shorter range (start_pts/end_pts) or use VideoReader") from exc


class FrameStack:
    """A ``Tensor[N, H, W, 3]`` (or ``[N, 3, H, W]``) uint8 filled slot by slot from threads.

    Memory is reserved for an estimated number of frames (at most :data:`RESERVE_LIMIT` bytes)
    and grows (by copying) when more arrive; untouched capacity costs address space only, not RAM.
    """

    def __init__(self, height: int, width: int, capacity: int, layout: Layout = "HWC") -> None:
        self.layout = layout
        self.frame_shape = (3, height, width) if layout == "CHW" else (height, width, 3)
        self._tensor = _allocate_frames(initial_capacity(capacity, 3 * height * width), self.frame_shape)
        self._array = self._tensor.numpy()

    @property
    def capacity(self) -> int:
        return self._tensor.shape[0]

    def slot(self, index: int) -> np.ndarray:
        """The writable ``ndarray`` of frame ``index`` (call :meth:`reserve` first)."""
        return self._array[index]

    def reserve(self, count: int, wait: Callable[[], None]) -> None:
        """Make room for ``count`` frames; ``wait()`` must finish every pending write first."""
        if count <= self.capacity:
            return
        wait()
        grown = _allocate_frames(max(count, 2 * self.capacity), self.frame_shape)
        grown[: self.capacity].copy_(self._tensor)
        self._tensor, self._array = grown, grown.numpy()

    def result(self, start: int, stop: int, order: list[int] | None = None) -> torch.Tensor:
        """Frames ``start:stop`` (optionally reordered by ``order``, slot numbers) as a tensor."""
        if order is not None:
            return self._tensor[torch.as_tensor(order, dtype=torch.long)]
        out = self._tensor[start:stop]
        # don't pin a far larger allocation than the caller gets (a bad frame-count estimate)
        if self.capacity > 8 and (stop - start) * 2 < self.capacity:
            out = out.clone()
        return out
