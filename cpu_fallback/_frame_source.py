"""The CPU backend's frame source: FFmpeg decodes (PyAV), swscale converts, threads overlap them.

Decoding is :class:`gpuvio._media.PyAVPackets`; this module adds the conversion half of the
:class:`~gpuvio._protocols.FrameSource` interface. Only kept frames are converted, on worker
threads while the decoder goes on, each straight into its slot of the output tensor (no
per-frame arrays, no ``stack``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np
import torch

from gpuvio._media import PyAVPackets
from gpuvio._protocols import Layout, Purpose
from gpuvio._types import ColorPolicy
from gpuvio.transforms import Geometry

from ._frames import FrameStack, RgbConverter, conversion_pool, conversion_workers, converter_for

__all__ = ["DECODER_THREAD_TYPE", "Conversions", "PyAVFrameSource"]

# How the decoder uses threads in range reads (read_video), per colour policy. The default
# conversion (swscale's unscaled SIMD path) costs a fraction of a decode, so FFmpeg's own threads
# ("AUTO": frame threads) get the cores. The "accurate" one costs more than decoding: there
# "SLICE", a single-threaded decode with one slice per frame (most H.264), leaves the other cores
# to the conversion (measured on 2 cores, 720p H.264: SLICE ahead of AUTO/FRAME for "accurate").
DECODER_THREAD_TYPE: dict[str, str] = {"torchvision": "AUTO", "accurate": "SLICE"}


class Conversions:
    """A :class:`~gpuvio._protocols.FrameSink` on the CPU: frames converted into a :class:`FrameStack`.

    Frames go to the pool's threads while they have room. When all are busy, the decoding thread
    converts the next frame itself rather than queueing it: with one thread per core, decoding
    is never starved of CPU by the converters (a decoder thread sharing cores with as many
    converters as cores loses a third of its time) and no core waits.
    """

    def __init__(self, converter: RgbConverter, layout: Layout, capacity: int,
                 size: tuple[int, int] | None = None, geometry: Geometry | None = None) -> None:
        self._converter = converter
        self._layout = layout
        self._capacity = capacity
        if geometry is not None and geometry.identity:
            size, geometry = geometry.input_size, None
        self._geometry = geometry
        # (height, width) of the output; default: the first frame's
        self._size = geometry.output_size if geometry is not None else size
        self._pool = conversion_pool()
        self._workers = conversion_workers()
        self._pending: deque[list[Any]] = deque()  # [slot, frame], not handed out yet
        self._running: list[Future] = []
        self._writes: dict[int, Future] = {}
        self.stack: FrameStack | None = None

    def put(self, slot: int, frame: Any) -> None:
        if self.stack is None:
            height, width = self._size or (frame.height, frame.width)
            self.stack = FrameStack(height, width, max(self._capacity, slot + 1), self._layout)
        self.stack.reserve(slot + 1, self.finish)
        for item in self._pending:
            if item[0] == slot:  # a repeated pts not converted yet: the later frame wins
                item[1] = frame
                return
        previous = self._writes.pop(slot, None)
        if previous is not None:
            previous.result()  # a repeated pts already converting: let it finish first
        self._pending.append([slot, frame])
        self._pump()

    def _pump(self) -> None:
        still = []
        for future in self._running:
            if future.done():
                future.result()  # a conversion error surfaces here
            else:
                still.append(future)
        self._running = still
        # each pool thread gets a frame to work on and two waiting, so that it never idles
        # while the decoding thread is busy converting
        stack = self.stack
        assert stack is not None
        while self._pending and len(self._running) < 3 * self._workers:
            slot, frame = self._pending.popleft()
            future = self._pool.submit(self._converter.convert_into, frame, stack.slot(slot), self._layout,
                                      self._geometry)
            self._running.append(future)
            self._writes[slot] = future
        while self._pending:
            slot, frame = self._pending.popleft()
            self._converter.convert_into(frame, stack.slot(slot), self._layout, self._geometry)

    def finish(self) -> None:
        if self.stack is not None:
            self._pump()
        for future in self._running:
            future.result()
        self._running = []

    def abort(self) -> None:
        self._pending.clear()
        for future in self._running:
            future.cancel()
        for future in self._running:
            if not future.cancelled():
                future.exception()
        self._running = []

    def result(self, order: Sequence[int]) -> torch.Tensor:
        assert self.stack is not None, "no frame was put"
        order = list(order)
        first = order[0] if order else 0
        if order == list(range(first, first + len(order))):
            return self.stack.result(first, first + len(order))
        return self.stack.result(0, 0, order=order)


class _Pending:
    """One frame converting on a pool thread into an array allocated by the caller's thread.

    Allocating (and so freeing) on the caller's thread matters: memory allocated on a pool thread
    and freed on another keeps glibc's RSS growing over thousands of readers, though nothing leaks.
    """

    __slots__ = ("_future", "_out")

    def __init__(self, converter: RgbConverter, frame: Any, geometry: Geometry | None = None) -> None:
        height, width = (frame.height, frame.width) if geometry is None else geometry.output_size
        self._out = np.empty((3, height, width), dtype=np.uint8)
        self._future = conversion_pool().submit(converter.convert_into, frame, self._out, "CHW", geometry)

    def result(self) -> torch.Tensor:
        self._future.result()
        return torch.from_numpy(self._out)


class PyAVFrameSource(PyAVPackets):
    """The CPU backend's :class:`~gpuvio._protocols.FrameSource`: PyAV frames, swscale's RGB."""

    backend = "cpu"
    device = torch.device("cpu")

    def __init__(self, stream: Any, *, color: ColorPolicy, purpose: Purpose, threads: int = 0) -> None:
        if threads:
            super().__init__(thread_type="AUTO", thread_count=threads)
        elif purpose == "range":
            super().__init__(thread_type=DECODER_THREAD_TYPE[color])
        else:
            # one frame of lookahead converts on another core while this one decodes
            super().__init__(thread_type="SLICE")
        self._converter = converter_for(stream.codec_context.name, color)

    def sink(self, *, capacity: int, layout: Layout, size: tuple[int, int] | None = None,
             geometry: Geometry | None = None) -> Conversions:
        return Conversions(self._converter, layout, capacity, size, geometry)

    def convert(self, frame: Any, geometry: Geometry | None = None) -> _Pending:
        return _Pending(self._converter, frame, geometry)
