"""The NVDEC frame source: packets to decoder surfaces, surfaces to RGB, on CUDA streams.

The media layer (:mod:`gpuvio._media`) demuxes, selects and seeks; this module is only the
:class:`~gpuvio._protocols.FrameSource` half that NVDEC provides: packets go to a decoder
session, its surfaces come back as frames, and :class:`SurfaceConverter` turns them into RGB.

Streams: the decoder writes its surfaces on the session's CUDA stream, and everything that reads
them runs there too. Output frames are allocated on the *consumer* stream (the caller's) and
marked as used on the session's, so the caching allocator never hands their memory to a later
decode while the caller's queued work still reads it; results are handed over after the consumer
stream waits for the session's work. On the CPU (the test-suite's software session) all of this
is a no-op.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

import torch

from .._media import initial_capacity
from .._protocols import Layout
from .._swscale_rgb import swscale_nv12_to_rgb
from ._nvdec_color import fused_kernel, nv12_batch_to_rgb
from ..transforms import Geometry
from ._nvdec_plan import NvdecUnsupported, StreamPlan
from ._nvdec_resize import fused_resize_kernel, staged_transform
from ._nvdec_session import Session, Surface

__all__ = ["NvdecFrameSource", "SurfaceConverter", "SurfaceFrame"]


def _batch_size(plan: StreamPlan) -> int:
    return max(1, min(16, (1 << 23) // (plan.width * plan.height)))


class SurfaceConverter:
    """Turns surfaces into RGB ``Tensor[H, W, 3]`` uint8 frames, on the session's stream.

    With a fused kernel (GPU, self-checked: the "accurate" policy, or the "torchvision" one on
    8-bit surfaces) each surface is converted straight into its
    destination. Otherwise surfaces are copied into a staging batch and converted together with
    :func:`nv12_batch_to_rgb` (:meth:`flush`, called automatically when the batch is full).
    Call :meth:`flush` before the destinations are read.
    """

    def __init__(self, plan: StreamPlan, device: torch.device, *, allow_fused: bool = True,
                 color: str = "torchvision") -> None:
        self.plan = plan
        self.device = device
        self.color = color
        self._fused: Any = None  # a FusedNv12Kernel or FusedSwscaleKernel
        # GPUVIO_NVDEC_FUSED=0 forces the torch ops (to compare, or to rule the kernels out). The
        # "torchvision" kernel is swscale's 8-bit unscaled converter, what even-sized progressive
        # NV12 (all the plans accept) gets; P016 goes through swscale's general scaler: torch ops
        self.fused_allowed = allow_fused and device.type == "cuda" and os.environ.get("GPUVIO_NVDEC_FUSED", "1") != "0"
        if self.fused_allowed:
            if color == "accurate":
                self._fused = fused_kernel(device, matrix=plan.matrix, full_range=plan.full_range,
                                           bit_depth=plan.surface_bits, siting=plan.siting)
            elif color == "torchvision" and plan.surface_bits == 8:
                from ._nvdec_color import fused_swscale_kernel

                self._fused = fused_swscale_kernel(device, matrix=plan.sws_matrix,
                                                   full_range=plan.sws_full_range)
        self._staging: torch.Tensor | None = None
        self._targets: list[torch.Tensor] = []
        self._size = _batch_size(plan)

    @property
    def uses_fused_kernel(self) -> bool:
        return self._fused is not None

    def put(self, surface: Surface, dest: torch.Tensor) -> None:
        if self._fused is not None:
            self._fused(surface, dest)
            return
        if self._staging is None:
            rows, width = surface.shape
            self._staging = torch.empty((self._size, rows, width), dtype=surface.dtype, device=self.device)
        self._staging[len(self._targets)].copy_(surface)
        self._targets.append(dest)
        if len(self._targets) == self._size:
            self.flush()

    def flush(self) -> None:
        if not self._targets:
            return
        assert self._staging is not None
        count = len(self._targets)
        source = self._staging[:count]
        if self.color == "torchvision":
            rgb = self._swscale(source)
        else:
            if source.dtype == torch.int16:
                source = source.to(torch.int32) & 0xFFFF  # P016 samples are unsigned
            rgb = nv12_batch_to_rgb(source, matrix=self.plan.matrix, full_range=self.plan.full_range,
                                    bit_depth=self.plan.surface_bits, siting=self.plan.siting)
        for dest, frame in zip(self._targets, rgb):
            dest.copy_(frame)
        self._targets = []


    def drop(self) -> None:
        """Forget the staged surfaces without converting them (an aborted read)."""
        self._targets = []

    def _swscale(self, surfaces: torch.Tensor) -> torch.Tensor:
        """``Tensor[B, H, W, 3]``: PyAV's to_rgb() of a batch of NV12/P016 surfaces, bit for bit."""
        plan = self.plan
        height = plan.height
        y, uv = surfaces[:, :height], surfaces[:, height:height + height // 2]
        return swscale_nv12_to_rgb(y, uv, bit_depth=plan.bit_depth, matrix=plan.sws_matrix,
                                   full_range=plan.sws_full_range, chroma_location=plan.siting)


class SurfaceFrame:
    """A decoded frame as the media layer sees it: a pts and a decoder surface."""

    __slots__ = ("pts", "surface")

    def __init__(self, pts: int, surface: Surface) -> None:
        self.pts = pts
        self.surface = surface


class _Converted:
    """A frame already converted on the session's stream; handed over on the consumer's."""

    def __init__(self, out: torch.Tensor, source: NvdecFrameSource) -> None:
        self._out, self._source = out, source

    def result(self) -> torch.Tensor:
        self._source.hand_over()
        return self._out


class NvdecFrameSource:
    """NVDEC's :class:`~gpuvio._protocols.FrameSource`: one decoder session, one stream plan.

    ``backend`` is the registry name reported for its frames; ``release(session, healthy)``
    gives the session back (to the backend's pool) on :meth:`close`.
    """

    def __init__(self, session: Session, plan: StreamPlan, *, color: str, backend: str = "nvdec",
                 consumer: Any = None, release: Any = None) -> None:
        self.backend = backend
        self._session = session
        self._plan = plan
        self.device = session.device
        self._cuda = self.device.type == "cuda"
        if self._cuda and consumer is None:
            consumer = torch.cuda.current_stream(self.device)
        self._consumer = consumer
        self._release = release
        self._healthy = True
        self.converter = SurfaceConverter(plan, self.device, color=color)
        self._resize_kernels: dict[Geometry, Any] = {}
        self._full: torch.Tensor | None = None  # the full-size frame of the staged transform path

    # ------------------------------------------------------------------ streams
    def scope(self) -> contextlib.AbstractContextManager[Any]:
        """Run on the session's stream."""
        return self._session.scope()

    def hand_over(self) -> None:
        """Make the consumer stream wait for everything queued on the session's so far."""
        if self._cuda:
            self._consumer.wait_stream(self._session.stream)  # type: ignore[attr-defined]

    def alloc(self, shape: tuple[int, ...]) -> torch.Tensor:
        """An output tensor owned by the consumer stream, safe to write on the session's."""
        if not self._cuda:
            return torch.empty(shape, dtype=torch.uint8)
        with torch.cuda.stream(self._consumer):
            tensor = torch.empty(shape, dtype=torch.uint8, device=self.device)
        tensor.record_stream(self._session.stream)  # type: ignore[attr-defined]
        # The caching allocator may hand out a block the consumer freed while its own work still
        # reads it (`for frame in reader: model(frame)` frees the last frame as the next comes):
        # safe on the consumer's stream, not on the session's, so the session waits for it first
        self._session.stream.wait_stream(self._consumer)  # type: ignore[attr-defined]
        return tensor

    def on_consumer(self, make: Any) -> torch.Tensor:
        """``make()`` run on the consumer stream after the session's work (a copy or gather that
        it allocates then belongs to the caller's stream)."""
        self.hand_over()
        if not self._cuda:
            return make()
        with torch.cuda.stream(self._consumer):
            return make()

    # ------------------------------------------------------------------ decoding
    def _frames(self, batch: Sequence[tuple[int, Surface]]) -> list[SurfaceFrame]:
        return [SurfaceFrame(pts, surface) for pts, surface in batch]

    def begin(self, stream: Any) -> None:
        if self._cuda:  # the consumer's earlier work (allocations it still reads) comes first
            self._session.stream.wait_stream(self._consumer)  # type: ignore[attr-defined]
        with self.scope():
            self._session.begin(stream)

    def decode(self, packet: Any) -> list[SurfaceFrame]:
        if packet.pts is None:
            raise NvdecUnsupported("the container gives video packets without timestamps")
        try:
            with self.scope():
                return self._frames(self._session.decode(packet))
        except NvdecUnsupported:
            self._healthy = False
            raise

    def drain(self) -> list[SurfaceFrame]:
        try:
            with self.scope():
                return self._frames(self._session.drain())
        except NvdecUnsupported:
            self._healthy = False
            raise

    def reset(self) -> None:
        with self.scope():
            self.converter.flush()  # staged surfaces are read before the decoder moves on
            self._session.reset()

    def retain(self, frame: SurfaceFrame) -> SurfaceFrame:
        with self.scope():
            return SurfaceFrame(frame.pts, frame.surface.clone())

    # ------------------------------------------------------------------ conversion
    def sink(self, *, capacity: int, layout: Layout, size: tuple[int, int] | None = None,
             geometry: Geometry | None = None) -> SurfaceSink:
        # NVDEC's surfaces are the plan's size (a change mid-stream is refused by the session)
        return SurfaceSink(self, capacity, layout, None if geometry is None or geometry.identity else geometry)

    def convert(self, frame: SurfaceFrame, geometry: Geometry | None = None) -> _Converted:
        if geometry is not None and not geometry.identity:
            out = self.alloc((3, *geometry.output_size))
            with self.scope():
                self.transform(frame.surface, out.permute(1, 2, 0), geometry)
            return _Converted(out, self)
        out = self.alloc((3, self._plan.height, self._plan.width))  # contiguous CHW, as on the CPU
        with self.scope():
            self.converter.put(frame.surface, out.permute(1, 2, 0))
            self.converter.flush()
        return _Converted(out, self)

    def transform(self, surface: Surface, dest: torch.Tensor, geometry: Geometry) -> None:
        """Write the transformed RGB of ``surface`` into ``dest`` (``[h, w, 3]``), on the session's
        stream: one fused kernel where it is usable, else the full-size frame, then torch's ops."""
        kernel = self._resize_kernels.get(geometry, False)
        if kernel is False:
            kernel = None
            plan = self._plan
            if self.converter.fused_allowed and self.converter.color == "torchvision" and plan.surface_bits == 8:
                kernel = fused_resize_kernel(self.device, geometry, matrix=plan.sws_matrix,
                                             full_range=plan.sws_full_range)
            self._resize_kernels = {geometry: kernel}  # one geometry per read: keep only the latest
        if kernel is not None:
            kernel(surface, dest)
            return
        if self._full is None:  # reused frame to frame: every use is ordered on the session's stream
            self._full = torch.empty((self._plan.height, self._plan.width, 3), dtype=torch.uint8, device=self.device)
        self.converter.put(surface, self._full)
        self.converter.flush()
        staged_transform(self._full, geometry, dest)

    def close(self) -> None:
        if self._release is not None:
            release, self._release = self._release, None
            release(self._session, healthy=self._healthy)


class SurfaceSink:
    """Output slots for converted (and transformed) surfaces, allocated in chunks on the consumer stream."""

    def __init__(self, source: NvdecFrameSource, capacity: int, layout: Layout,
                 geometry: Geometry | None = None) -> None:
        plan = source._plan
        self._source = source
        self._layout = layout
        self._geometry = geometry
        height, width = (plan.height, plan.width) if geometry is None else geometry.output_size
        self._frame_shape = (3, height, width) if layout == "CHW" else (height, width, 3)
        frame_bytes = 3 * width * height
        self._first = initial_capacity(capacity, frame_bytes)
        self._chunk = max(8, min(64, (1 << 30) // frame_bytes))
        self._chunks: list[torch.Tensor] = []
        self._allocated = 0
        self._used = 0  # one past the highest slot written

    def _view(self, slot: int) -> torch.Tensor:
        while slot >= self._allocated:
            size = self._first if not self._chunks else self._chunk
            self._chunks.append(self._source.alloc((size, *self._frame_shape)))
            self._allocated += size
        for chunk in self._chunks:
            if slot < chunk.shape[0]:
                frame = chunk[slot]
                return frame.permute(1, 2, 0) if self._layout == "CHW" else frame
            slot -= chunk.shape[0]
        raise IndexError(slot)

    def put(self, slot: int, frame: SurfaceFrame) -> None:
        dest = self._view(slot)
        self._used = max(self._used, slot + 1)
        with self._source.scope():
            if self._geometry is not None:
                self._source.transform(frame.surface, dest, self._geometry)
            else:
                self._source.converter.put(frame.surface, dest)

    def finish(self) -> None:
        with self._source.scope():
            self._source.converter.flush()

    def abort(self) -> None:
        self._source.converter.drop()

    def result(self, order: Sequence[int]) -> torch.Tensor:
        return self._source.on_consumer(lambda: self._gather(list(order)))

    def _gather(self, order: list[int]) -> torch.Tensor:
        n = len(order)
        if n == 0:
            return self._source.alloc((0, *self._frame_shape))
        first = order[0]
        chunk = self._chunks[0]
        if order == list(range(first, first + n)) and first + n <= chunk.shape[0]:
            if first == 0 and n == chunk.shape[0]:
                return chunk
            # a short tail of spare frames stays attached to the view; more than that is copied
            view = chunk[first:first + n]
            return view if chunk.shape[0] - n <= 4 else view.clone()
        parts, left = [], self._used
        for part in self._chunks:
            parts.append(part[:left])
            left -= parts[-1].shape[0]
            if left <= 0:
                break
        whole = parts[0] if len(parts) == 1 else torch.cat(parts)
        return whole.index_select(0, torch.tensor(order, dtype=torch.long).to(whole.device))
