"""NVDEC decoder sessions: PyNvVideoCodec's core decoder behind a small interface, pooled.

A session takes packets (turned into Annex B where NVDEC needs it) and hands back, per packet,
the frames that became displayable, each a zero-copy view of a decoder surface (NV12, or P016
above 8 bits) tagged with the packet pts NVDEC carried through. A surface is valid until the
session's next call. Sessions are pooled per device and reused for files with the same codec,
bit depth and size, so short clips don't pay decoder creation.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Any, Protocol

import torch

from .._forksafe import ForkSafeLock, holds
from .._forksafe import hold as forksafe_hold
from .._forksafe import release as forksafe_release
from ._cuda import CudaBuffer
from ._nvdec_plan import NvdecUnsupported, StreamPlan, decoder_caps, enum_member, headroom

__all__ = ["Batch", "NvdecSession", "Session", "SessionPool", "Surface"]

Surface = torch.Tensor  # Tensor[H * 3 // 2, W]: uint8 NV12, or int16 holding P016's 16-bit samples
Batch = list[tuple[int, Surface]]

# PyAV codec name -> the bitstream filter that gives NVDEC Annex B start codes (MP4/MKV store
# H.264/HEVC with length prefixes)
_ANNEXB_FILTERS = {"h264": "h264_mp4toannexb", "hevc": "hevc_mp4toannexb"}


class Session(Protocol):
    """What the NVDEC frame source needs from a decoder (the test-suite's software stand-in has it too)."""

    device: torch.device
    reused: bool

    def begin(self, stream: Any) -> None: ...

    def decode(self, packet: Any) -> Batch: ...

    def drain(self) -> Batch: ...

    def reset(self) -> None: ...

    def scope(self) -> contextlib.AbstractContextManager[Any]: ...

    def close(self) -> None: ...


class _PacketPrep:
    """Per-stream packet preparation shared by the sessions: Annex B filter, config prefixes."""

    def __init__(self, stream: Any, codec: str) -> None:
        import av.bitstream

        name = _ANNEXB_FILTERS.get(codec)
        self.bsf = av.bitstream.BitStreamFilterContext(name, stream) if name else None
        extradata = bytes(stream.codec_context.extradata or b"")
        # AV1 keeps its sequence header in av1C (4 header bytes, then OBUs); MPEG-1/2 in the
        # extradata: give them to NVDEC before the first packet after each (re)start
        if codec == "av1" and len(extradata) > 4 and extradata[0] == 0x81:
            self.prefix = extradata[4:]
        elif codec in ("mpeg1video", "mpeg2video") and extradata:
            self.prefix = extradata
        else:
            self.prefix = b""
        self.first = True

    def restart(self) -> None:
        if self.bsf is not None:
            self.bsf.flush()
        self.first = True

    def payload(self, packet: Any) -> tuple[int, int, Any]:
        """``(pointer, size, keepalive)`` of the bytes NVDEC gets for ``packet`` (size 0: nothing yet)."""
        import numpy as np

        if self.bsf is not None:
            out = self.bsf.filter(packet)  # takes the packet's data: read its fields before
            if not out:
                return 0, 0, None
            if len(out) == 1 and not (self.first and self.prefix):
                self.first = False
                return out[0].buffer_ptr, out[0].buffer_size, out[0]
            data = b"".join(bytes(p) for p in out)
        else:
            if not (self.first and self.prefix):
                return packet.buffer_ptr, packet.buffer_size, packet
            data = bytes(packet)
        if self.first and self.prefix:
            data = self.prefix + data
        self.first = False
        array = np.frombuffer(data, dtype=np.uint8)
        return array.ctypes.data, array.size, array


class NvdecSession:
    """One PyNvVideoCodec core decoder on one GPU, with its own CUDA stream.

    The decoder writes its output surfaces on :attr:`stream`; everything that reads them runs in
    :meth:`scope`, i.e. on the same stream, so no surface is overwritten before it has been read
    (the decoder reuses its surfaces from the next ``Decode`` call on).
    """

    def __init__(self, nvc: Any, device: torch.device, plan: StreamPlan) -> None:
        self.nvc = nvc
        self.device = device
        self.plan = plan
        self.reused = False
        self.stream = torch.cuda.Stream(device=device)
        # generous maxima so that a later file with the same display size but a larger coded
        # size (1080 coded as 1088, say) reconfigures instead of failing; never above the GPU's own
        caps = decoder_caps(nvc, device.index, plan)
        self.decoder = nvc.CreateDecoder(
            gpuid=device.index, codec=enum_member(nvc.cudaVideoCodec, plan.nv_codec), cudacontext=0,
            cudastream=self.stream.cuda_stream, usedevicememory=True,
            maxwidth=headroom(plan.width, caps.get("width_max")),
            maxheight=headroom(plan.height, caps.get("height_max")))
        self._prep: _PacketPrep | None = None
        self._rows = plan.height * 3 // 2
        self._use_dlpack = plan.surface_bits == 8
        forksafe_hold(self)  # a forked child must never destroy a decoder of its parent's context

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        return torch.cuda.stream(self.stream)

    def begin(self, stream: Any) -> None:
        """Start a new run of packets of ``stream`` (after opening or seeking)."""
        if self._prep is None or self._prep_stream is not stream:
            self._prep = _PacketPrep(stream, self.plan.codec)
            self._prep_stream = stream
        else:
            self._prep.restart()

    def _surface(self, frame: Any) -> Surface:
        expected = (self._rows, self.plan.width)
        shape = tuple(int(s) for s in frame.shape)
        if shape != expected:
            raise NvdecUnsupported(f"NVDEC returned a {shape} surface, expected {expected} "
                                   f"(the frame size changes inside the stream?)")
        if self._use_dlpack:
            try:
                # ask for the capsule ourselves: torch.from_dlpack(frame) would first try the
                # DLPack 1.0 keywords, which PyNvVideoCodec rejects, on every frame. The stream is
                # the decoder's own, so PyNvVideoCodec adds no wait.
                tensor = torch.from_dlpack(frame.__dlpack__(stream=self.stream.cuda_stream))
            except Exception:
                self._use_dlpack = False  # fall back to the raw pointer for the rest of the session
            else:
                if tensor.dtype == torch.uint8 and tuple(tensor.shape) == expected and tensor.is_contiguous():
                    return tensor
                self._use_dlpack = False
        # the surface is one contiguous buffer: luma rows, then interleaved chroma rows
        itemsize = 1 if self.plan.surface_bits == 8 else 2
        buffer = CudaBuffer(frame.GetPtrToPlane(0), (self._rows, self.plan.width * itemsize), "|u1", owner=frame)
        tensor = torch.as_tensor(buffer, device=self.device)
        return tensor if itemsize == 1 else tensor.view(torch.int16)

    def _run(self, pointer: int, size: int, pts: int | None, *, surfaces: bool = True) -> Batch:
        packet = self.nvc.PacketData()
        packet.bsl_data = int(pointer)
        packet.bsl = int(size)
        if pts is not None:
            packet.pts = int(pts)
        try:
            frames = self.decoder.Decode(packet)
        except Exception as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise NvdecUnsupported(f"NVDEC decoding failed: {message}") from exc
        if not surfaces:
            return []
        return [(int(f.timestamp), self._surface(f)) for f in frames]

    def decode(self, packet: Any) -> Batch:
        pts = packet.pts
        assert self._prep is not None, "begin() first"
        pointer, size, keep = self._prep.payload(packet)
        if size == 0:
            return []
        batch = self._run(pointer, size, pts)
        del keep  # NVDEC's parser has copied what it needs by now
        return batch

    def drain(self) -> Batch:
        """Flush the decoder (end of stream): the frames it still holds. It can decode again afterwards."""
        return self._run(0, 0, None)

    def reset(self) -> None:
        """Drop whatever the decoder holds, ready for another position or file."""
        self._run(0, 0, None, surfaces=False)
        if self._prep is not None:
            self._prep.restart()

    def retarget(self, plan: StreamPlan) -> None:
        """Prepare a pooled decoder for a new file of the same codec and size."""
        self.plan = plan
        self._prep = None
        # PyNvVideoCodec's own decoder cache does this before reusing a decoder for a new source:
        # it makes a resolution change reconfigure the output to the new display size
        self.decoder.setReconfigParams(plan.width, plan.height)

    def close(self) -> None:
        if not forksafe_release(self):
            return  # inherited from the parent process: left alone for good
        self.decoder = None
        self._prep = None


class SessionPool:
    """Idle NVDEC sessions per device, reused for files with the same codec, depth and size.

    Thread-safe. A session is used by one thread at a time: :meth:`acquire` hands it out,
    :meth:`release` takes it back (flushed). At most ``max_idle`` idle sessions are kept; the
    least recently used go first.
    """

    def __init__(self, max_idle: int = 16) -> None:
        self._lock = ForkSafeLock()
        self._idle: OrderedDict[int, tuple[tuple[Any, ...], NvdecSession]] = OrderedDict()
        self._max_idle = max_idle
        self.created = 0
        self.reused = 0

    def acquire(self, nvc: Any, device: torch.device, plan: StreamPlan) -> NvdecSession:
        key = (device.index, *plan.pool_key)
        session: NvdecSession | None = None
        with self._lock:
            ident = next((i for i, (k, _) in self._idle.items() if k == key), None)
            if ident is not None:
                session = self._idle.pop(ident)[1]
                self.reused += 1
        if session is not None:
            try:
                session.retarget(plan)
                session.reused = True
                return session
            except Exception:
                session.close()
        session = NvdecSession(nvc, device, plan)
        with self._lock:
            self.created += 1
        return session

    def release(self, session: NvdecSession, *, healthy: bool = True) -> None:
        if isinstance(session, NvdecSession) and not holds(session):
            return  # a forked child's inherited session: its CUDA context is not usable here
        if not healthy or session.decoder is None:
            session.close()
            return
        try:
            with session.scope():
                session.reset()
        except Exception:
            session.close()
            return
        key = (session.device.index, *session.plan.pool_key)
        with self._lock:
            self._idle[id(session)] = (key, session)
            while len(self._idle) > self._max_idle:
                _, (_, old) = self._idle.popitem(last=False)
                old.close()

    def clear(self) -> None:
        with self._lock:
            sessions = [s for _, s in self._idle.values()]
            self._idle.clear()
        for session in sessions:
            session.close()


