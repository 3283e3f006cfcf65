"""A test double for NVDEC: FFmpeg's software decoder behind the decoder-session interface.

It hands out the same NV12 surfaces NVDEC would (as CPU tensors), so that the NVDEC backend's
frame source, conversion and the shared media layer run in CI on machines without a GPU. It is
never used as a fallback (that is the CPU backend itself), and it is not shipped in the wheel.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from gpuvio._backends._nvdec import NvdecBackend
from gpuvio._backends._nvdec_plan import NvdecUnsupported, StreamPlan
from gpuvio._backends._nvdec_session import Batch

__all__ = ["NAME", "SoftwareNv12Session", "SoftwareNvdec", "registered"]


class SoftwareNv12Session:
    """FFmpeg's software decoder behind the session interface, giving NV12 CPU surfaces.

    8-bit 4:2:0 streams only. A surface is ``Tensor[H * 3 // 2, W] uint8`` (luma rows, then
    interleaved chroma rows), as NVDEC lays them out.
    """

    def __init__(self, plan: StreamPlan) -> None:
        if plan.bit_depth != 8:
            raise NvdecUnsupported("the software stand-in handles 8-bit streams only")
        self.device = torch.device("cpu")
        self.plan = plan
        self.reused = False
        self._ctx: Any = None

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def begin(self, stream: Any) -> None:
        self._ctx = stream.codec_context
        self._ctx.flush_buffers()

    def _surfaces(self, frames: list[Any]) -> Batch:
        out = []
        for frame in frames:
            if frame.pts is None:
                continue
            nv12 = frame.reformat(format="nv12").to_ndarray()
            out.append((int(frame.pts), torch.from_numpy(nv12)))
        return out

    def decode(self, packet: Any) -> Batch:
        return self._surfaces(self._ctx.decode(packet))

    def drain(self) -> Batch:
        frames = self._ctx.decode(None)
        batch = self._surfaces(frames)
        self._ctx.flush_buffers()
        return batch

    def reset(self) -> None:
        if self._ctx is not None:
            self._ctx.flush_buffers()

    def close(self) -> None:
        self._ctx = None




#: the registry name of the software NVDEC backend (see :func:`registered`)
NAME = "nvdec-software"


class SoftwareNvdec(NvdecBackend):
    """The NVDEC backend with :class:`SoftwareNv12Session` sessions: CPU tensors, NVDEC's code paths."""

    name = NAME

    def __init__(self) -> None:
        super().__init__(session_factory=lambda plan, device: SoftwareNv12Session(plan))


@contextlib.contextmanager
def registered() -> Iterator[SoftwareNvdec]:
    """Register :class:`SoftwareNvdec` as backend ``"nvdec-software"`` for the public API.

    It registers as a CPU-device backend (its frames are CPU tensors), so that
    ``gpuvio.read_video(..., backend="nvdec-software")`` and ``VideoReader(..., backend=...)``
    run the NVDEC frame source through the dispatcher and the shared media layer.
    """
    from gpuvio import _dispatch

    _dispatch._load_builtin_backends()  # first, so that plain CPU calls still find "cpu" first
    _dispatch.register_backend(NAME, device_type="cpu", operations={"read_video", "open_video"},
                               loader="_software_nv12:SoftwareNvdec", probe=lambda: None,
                               description="test double: NVDEC's frame source over FFmpeg's software decoder")
    try:
        yield _dispatch.get_backend(NAME)
    finally:
        _dispatch._unregister_backend(NAME)
