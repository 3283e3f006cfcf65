"""The NVDEC video backend: NVIDIA's hardware decoders (PyNvVideoCodec) into CUDA tensors.

This backend only provides frame sources (:mod:`._nvdec_source`): PyAV demuxes on the host and
:mod:`gpuvio._media` does everything else (torchvision's selection, precise seeking, restarts,
``get_frames_at``, audio, and the fallback to the CPU), exactly as for the CPU backend. So
timestamps, selected frames and metadata are the CPU backend's by construction; NVDEC decodes and
the colour policy converts NV12/P016 to RGB on the GPU (a fused CUDA kernel when its on-device
self-check passes, torch ops otherwise).

A file NVDEC cannot decode exactly like FFmpeg (MPEG-4 Part 2, 4:4:4/4:2:2, H.264 10-bit, AV1 on
GPUs without AV1 NVDEC, sizes outside the decoder's limits, interlaced video, decoder errors) is
decoded by the CPU backend and uploaded, with one ``RuntimeWarning`` and a
:class:`gpuvio.Fallback` record. Decoders are pooled per device and reused across files of the
same codec and size; each is used by one thread at a time. Encoding (``write_video``) is the CPU
backend's: the data-centre GPUs this targets (A100, H100, H200) have no NVENC.

Nothing here is imported until the dispatcher first hands this backend work; PyNvVideoCodec and
CuPy load on first use.
"""

from __future__ import annotations

import atexit
from typing import Any, Callable

import torch

from .._errors import BackendUnavailableError, InvalidArgumentError
from .._protocols import Purpose
from .._types import ColorPolicy
from ._cuda import load_pynvvideocodec
from ._nvdec_plan import NvdecUnsupported, StreamPlan, check_caps, decoder_caps, engine_count, plan_stream
from ._nvdec_session import Session, SessionPool
from ._nvdec_source import NvdecFrameSource

__all__ = ["NvdecBackend"]

SessionFactory = Callable[[StreamPlan, torch.device], Session]


class NvdecBackend:
    """Video decoding on NVIDIA's NVDEC engines (the registry lists what it serves).

    ``session_factory`` replaces NVDEC sessions: the test-suite passes a software stand-in
    (``tests/_software_nv12.py``) so that everything but the decoder runs on CPU-only machines.
    """

    name = "nvdec"

    def __init__(self, *, session_factory: SessionFactory | None = None) -> None:
        self._session_factory = session_factory
        self._pool = SessionPool()
        # destroy pooled decoders while CUDA is still up, not during interpreter teardown
        atexit.register(self._pool.clear)

    # ------------------------------------------------------------------ VideoDecoder
    def frame_source(self, stream: Any, *, device: torch.device, color: ColorPolicy, purpose: Purpose,
                     threads: int = 0, consumer: Any = None) -> NvdecFrameSource:
        """A decoder session for ``stream`` (``threads`` does not apply: NVDEC is one engine)."""
        plan = plan_stream(stream)
        session = self.acquire(plan, device)
        return NvdecFrameSource(session, plan, color=color, backend=self.name, consumer=consumer,
                                release=self.release)

    def concurrency(self, device: torch.device) -> int:
        # two sessions per engine keep every engine busy while the host demuxes (one session
        # never spreads over more than one engine)
        return 2 * self.engines(device)

    # ------------------------------------------------------------------ sessions
    def acquire(self, plan: StreamPlan, device: torch.device) -> Session:
        """A decoder session for ``plan`` on ``device`` (raises :class:`NvdecUnsupported`)."""
        if self._session_factory is not None:
            return self._session_factory(plan, device)
        if device.type != "cuda" or device.index is None:
            raise InvalidArgumentError(f"the nvdec backend decodes to an indexed CUDA device; got {device}")
        nvc = load_pynvvideocodec()
        try:
            caps = decoder_caps(nvc, device.index, plan)
        except Exception as exc:  # the driver's decoder library itself is unusable: not a per-file matter
            raise BackendUnavailableError(f"NVDEC cannot be queried on {device} (PyNvVideoCodec's "
                                          f"GetDecoderCaps failed): {str(exc).splitlines()[0]}") from exc
        check_caps(caps, plan)
        try:
            return self._pool.acquire(nvc, device, plan)
        except NvdecUnsupported:
            raise
        except Exception as exc:
            raise NvdecUnsupported(f"creating the NVDEC decoder failed: {exc}") from exc

    def release(self, session: Any, *, healthy: bool = True) -> None:
        if self._session_factory is not None:
            session.close()
        else:
            self._pool.release(session, healthy=healthy)

    def engines(self, device: torch.device) -> int:
        """Number of NVDEC engines on ``device`` (1 for the software stand-in)."""
        if self._session_factory is not None or device.index is None:
            return 1
        return engine_count(load_pynvvideocodec(), device.index)

    def pool_stats(self) -> dict[str, int]:
        """How many NVDEC sessions were created and how many times one was reused."""
        return {"created": self._pool.created, "reused": self._pool.reused}
