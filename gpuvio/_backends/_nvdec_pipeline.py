"""The NVDEC decode pipeline: PyAV demuxes, NVDEC decodes, our kernels convert, CPU rules select.

Packets come from PyAV on the host (the same demuxer as the CPU backend, so every timestamp is
the CPU backend's), are turned into Annex B where NVDEC needs it, and are fed to a decoder
*session*. A session hands back, per packet, the frames that became displayable, each as a
zero-copy view of a decoder surface (NV12, or P016 above 8 bits) tagged with the packet pts that
NVDEC carried through. A surface is only valid until the session's next call, so consumers convert
it at once (on the session's CUDA stream) into frames they own.

Frame selection reuses the CPU backend: :func:`read_range` feeds the CPU ``read_video``'s own
``Selection`` with (pts, surface) frames, and :func:`seek_frames` runs the CPU reader's own seek
procedure (``seek_to_keyframe``). :class:`SurfaceFrames`, :func:`rewind` and :func:`decode_pts`
are step-by-step ports of the CPU reader's ``_Frames``, ``_rewind`` and ``_decode_pts``, so both
backends pick the same frames.

Two session kinds share one interface:

* :class:`NvdecSession`: PyNvVideoCodec's core decoder (``CreateDecoder``), device memory output,
  one CUDA stream per session. Sessions are pooled per device (:class:`SessionPool`) and reused
  for files with the same codec, bit depth and size, so short clips don't pay decoder creation.
* :class:`SoftwareNv12Session`: FFmpeg's software decoder giving the same NV12 surfaces on the
  CPU. It exists so that the test-suite exercises this whole pipeline on machines without a GPU;
  it is never used as a fallback (the fallback is the CPU backend itself).
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import warnings
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol

import torch

from gpuvio.cpu_fallback._frames import initial_capacity
from gpuvio.cpu_fallback._seeking import rewind as seek_back_to_start
from gpuvio.cpu_fallback._seeking import seek_to_range
from gpuvio.cpu_fallback._video import Selection, should_buffer
from gpuvio.cpu_fallback._video import capacity_hint as _cpu_capacity_hint
from gpuvio.cpu_fallback._video_reader import frame_with_pts, seek_to_keyframe

from .._color import Matrix, Siting, chroma_siting, color_policy
from .._errors import DecodeError, UnsupportedFormatError
from .._forksafe import ForkSafeLock, holds
from .._forksafe import hold as forksafe_hold
from .._forksafe import release as forksafe_release
from .._swscale_rgb import SwsMatrix, sws_matrix, swscale_nv12_to_rgb
from ._cuda import CudaBuffer
from ._nvdec_color import fused_kernel, nv12_batch_to_rgb

__all__ = [
    "NvdecSession",
    "SurfaceFrames",
    "NvdecUnsupported",
    "SessionPool",
    "SoftwareNv12Session",
    "StreamPlan",
    "plan_stream",
]

_log = logging.getLogger("gpuvio")

Surface = torch.Tensor  # Tensor[H * 3 // 2, W]: uint8 NV12, or int16 holding P016's 16-bit samples
Batch = list[tuple[int, Surface]]


class NvdecUnsupported(Exception):
    """This file (or stream) must be decoded by the CPU backend instead; the message says why."""


# --------------------------------------------------------------------------------------- planning
# PyAV codec (canonical) name -> PyNvVideoCodec's cudaVideoCodec member
_NV_CODECS = {
    "h264": "H264",
    "hevc": "HEVC",
    "vp9": "VP9",
    "vp8": "VP8",
    "av1": "AV1",
    "mpeg2video": "MPEG2",
    "mpeg1video": "MPEG1",
}
# NVDEC needs Annex B start codes; MP4/MKV store H.264/HEVC with length prefixes
_ANNEXB_FILTERS = {"h264": "h264_mp4toannexb", "hevc": "hevc_mp4toannexb"}
_PIX_FMTS = {"yuv420p": 8, "yuvj420p": 8, "nv12": 8, "yuv420p10le": 10, "yuv420p10be": 10,
             "p010le": 10, "yuv420p12le": 12}
_INTERLACED_FIELD_ORDERS = {2, 3, 4, 5}  # AVFieldOrder TT, BB, TB, BT


@dataclass(frozen=True)
class StreamPlan:
    """What the host side knows about a video stream NVDEC is to decode."""

    codec: str  # PyAV canonical codec name
    nv_codec: str  # cudaVideoCodec member name
    width: int
    height: int
    bit_depth: int  # bits of the coded samples: 8, 10 or 12
    matrix: Matrix
    full_range: bool
    siting: Siting = "left"
    # the "torchvision" policy's matrix and range: what PyAV's to_rgb() hands swscale
    sws_matrix: SwsMatrix = "bt601"
    sws_full_range: bool = False

    @property
    def surface_bits(self) -> int:
        """Bits per stored surface sample: 8 (NV12) or 16 (P016)."""
        return 8 if self.bit_depth == 8 else 16

    @property
    def pool_key(self) -> tuple[Any, ...]:
        return (self.nv_codec, self.bit_depth, self.width, self.height)


def _codec_name(stream: Any) -> str:
    codec = stream.codec_context.codec
    return getattr(codec, "canonical_name", None) or codec.name


def plan_stream(stream: Any) -> StreamPlan:
    """Check on the host that NVDEC can decode ``stream`` exactly like the CPU backend would.

    Raises :class:`NvdecUnsupported` with the reason otherwise (the device's own limits are
    checked later, against ``GetDecoderCaps``).
    """
    cc = stream.codec_context
    codec = _codec_name(stream)
    if codec == "mpeg4":
        raise NvdecUnsupported("MPEG-4 Part 2 is decoded on the CPU (its packed B-frames and DivX "
                               "quirks need FFmpeg's handling)")
    if codec not in _NV_CODECS:
        raise NvdecUnsupported(f"codec {codec!r} is not decoded by NVDEC here "
                               f"(NVDEC path: {', '.join(sorted(_NV_CODECS))})")
    pix_fmt = cc.pix_fmt
    if pix_fmt not in _PIX_FMTS:
        raise NvdecUnsupported(f"pixel format {pix_fmt!r}: the NVDEC path decodes 4:2:0 at 8 to 12 bits; "
                               "4:4:4, 4:2:2 and others go to the CPU")
    width, height = int(cc.width), int(cc.height)
    if width <= 0 or height <= 0:
        raise NvdecUnsupported("the stream does not declare its frame size")
    if width % 2 or height % 2:
        raise NvdecUnsupported(f"odd frame size {width}x{height} (NVDEC pads 4:2:0 surfaces to even sizes)")
    field_order = cc.field_order
    if isinstance(field_order, int) and field_order in _INTERLACED_FIELD_ORDERS:
        raise NvdecUnsupported("interlaced video (NVDEC would deinterlace it; the CPU backend does not)")
    matrix, full_range = color_policy(cc.colorspace, cc.color_range, pix_fmt)
    try:
        tv_matrix, tv_full = sws_matrix(cc.colorspace, cc.color_range, pix_fmt)
    except UnsupportedFormatError as exc:  # the CPU backend raises the same, with FFmpeg's words
        raise NvdecUnsupported(str(exc)) from None
    # the siting follows FFmpeg's decoder for the codec, as in the CPU backend's converter
    return StreamPlan(codec, _NV_CODECS[codec], width, height, _PIX_FMTS[pix_fmt], matrix, full_range,
                      chroma_siting(cc.name), tv_matrix, tv_full)


# ---------------------------------------------------------------------------------- decoder caps
_caps_lock = ForkSafeLock()
_caps: dict[tuple[Any, ...], dict[str, int]] = {}


def _enum_member(enum_type: Any, name: str) -> Any:
    """A pybind11 enum member by name, tolerating prefixed spellings (``cudaVideoCodec_H264``)."""
    members = getattr(enum_type, "__members__", {})
    if name in members:
        return members[name]
    for key, value in members.items():
        if key.endswith("_" + name) or key.lower() == name.lower():
            return value
    return getattr(enum_type, name)


def decoder_caps(nvc: Any, device_index: int, plan: StreamPlan) -> dict[str, int]:
    """``GetDecoderCaps`` for this codec, 4:2:0 and bit depth (cached: each query makes a context)."""
    key = (device_index, plan.nv_codec, plan.bit_depth)
    with _caps_lock:
        caps = _caps.get(key)
        if caps is None:
            caps = dict(nvc.GetDecoderCaps(
                gpuid=device_index, codec=_enum_member(nvc.cudaVideoCodec, plan.nv_codec),
                chromaformat=_enum_member(nvc.cudaVideoChromaFormat, "420"), bitdepth=plan.bit_depth))
            _caps[key] = caps
        return caps


def check_caps(caps: dict[str, int], plan: StreamPlan) -> None:
    """Raise :class:`NvdecUnsupported` when this GPU's NVDEC cannot take ``plan``."""
    name = f"{plan.codec} 4:2:0 {plan.bit_depth}-bit"
    if not caps.get("supported", 1):  # (a driver that omits the flag is taken at its word below)
        raise NvdecUnsupported(f"this GPU's NVDEC does not decode {name}")
    min_w, min_h = caps.get("width_min", 0), caps.get("height_min", 0)
    max_w, max_h = caps.get("width_max", 1 << 30), caps.get("height_max", 1 << 30)
    if plan.width < min_w or plan.height < min_h:
        raise NvdecUnsupported(f"{plan.width}x{plan.height} is below NVDEC's minimum {min_w}x{min_h} for {name}")
    if plan.width > max_w or plan.height > max_h:
        raise NvdecUnsupported(f"{plan.width}x{plan.height} is above NVDEC's maximum {max_w}x{max_h} for {name}")
    mb_max = caps.get("mb_num_max", 0)
    if mb_max and ((plan.width + 15) // 16) * ((plan.height + 15) // 16) > mb_max:
        raise NvdecUnsupported(f"{plan.width}x{plan.height} has more macroblocks than NVDEC's {mb_max}")


def _headroom(size: int, limit: int | None) -> int:
    """``size`` rounded up to a multiple of 64, but not past the decoder's ``limit``."""
    rounded = (size + 63) // 64 * 64
    return min(rounded, limit) if limit else rounded


def engine_count(nvc: Any, device_index: int, plan: StreamPlan | None = None) -> int:
    """How many NVDEC engines the device has (1 when the driver does not say)."""
    probe = plan or StreamPlan("h264", "H264", 1920, 1080, 8, "bt709", False)
    try:
        return max(1, int(decoder_caps(nvc, device_index, probe).get("num_decoder_engines", 1)))
    except Exception:
        return 1


# ---------------------------------------------------------------------------------------- sessions
class Session(Protocol):
    """What the selection functions need from a decoder."""

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
            gpuid=device.index, codec=_enum_member(nvc.cudaVideoCodec, plan.nv_codec), cudacontext=0,
            cudastream=self.stream.cuda_stream, usedevicememory=True,
            maxwidth=_headroom(plan.width, caps.get("width_max")),
            maxheight=_headroom(plan.height, caps.get("height_max")))
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


class SoftwareNv12Session:
    """FFmpeg's software decoder behind the session interface, giving NV12 CPU surfaces.

    For the test-suite only (see the module docstring): it lets the selection, batching and
    conversion code above run on machines without a GPU. 8-bit 4:2:0 streams only.
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


# --------------------------------------------------------------------------------- conversion
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
        if allow_fused and device.type == "cuda" and os.environ.get("GPUVIO_NVDEC_FUSED", "1") != "0":
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


    def _swscale(self, surfaces: torch.Tensor) -> torch.Tensor:
        """``Tensor[B, H, W, 3]``: PyAV's to_rgb() of a batch of NV12/P016 surfaces, bit for bit."""
        plan = self.plan
        height = plan.height
        y, uv = surfaces[:, :height], surfaces[:, height:height + height // 2]
        return swscale_nv12_to_rgb(y, uv, bit_depth=plan.bit_depth, matrix=plan.sws_matrix,
                                   full_range=plan.sws_full_range, chroma_location=plan.siting)


class FrameStore:
    """Output frames ``[H, W, 3]`` allocated in chunks on the consumer's stream."""

    def __init__(self, plan: StreamPlan, alloc: Callable[[tuple[int, ...]], torch.Tensor], *,
                 capacity: int) -> None:
        self._plan = plan
        self._alloc = alloc
        self._chunks: list[torch.Tensor] = []
        self._used = 0
        self._capacity = initial_capacity(capacity, plan.width * plan.height * 3)
        self._chunk_cap = max(8, min(64, (1 << 30) // (plan.width * plan.height * 3)))

    def new_slot(self) -> tuple[int, torch.Tensor]:
        total = sum(c.shape[0] for c in self._chunks)
        if self._used == total:
            size = self._capacity if not self._chunks else self._chunk_cap
            self._chunks.append(self._alloc((size, self._plan.height, self._plan.width, 3)))
        slot = self._used
        self._used += 1
        return slot, self.view(slot)

    def view(self, slot: int) -> torch.Tensor:
        for chunk in self._chunks:
            if slot < chunk.shape[0]:
                return chunk[slot]
            slot -= chunk.shape[0]
        raise IndexError(slot)

    def gather(self, slots: list[int]) -> torch.Tensor:
        """``Tensor[N, H, W, 3]`` of the given slots, in that order (a view when possible)."""
        n = len(slots)
        if n == 0:
            return self._alloc((0, 1, 1, 3))
        if slots == list(range(n)) and len(self._chunks) == 1:
            chunk = self._chunks[0]
            if n == chunk.shape[0]:
                return chunk
            # a short tail of spare frames stays attached to the view; more than that is copied
            return chunk[:n] if chunk.shape[0] - n <= 4 else chunk[:n].clone()
        # the used part of every chunk, once
        parts, left = [], self._used
        for chunk in self._chunks:
            parts.append(chunk[:left])
            left -= parts[-1].shape[0]
        whole = parts[0] if len(parts) == 1 else torch.cat(parts)
        if slots == list(range(n)):
            return whole if whole.shape[0] == n and len(parts) > 1 else whole[:n].clone()
        index = torch.tensor(slots, dtype=torch.long).to(whole.device)
        return whole.index_select(0, index)


class StreamScope:
    """Runs decoding on a session's stream and hands the results to the consumer's stream.

    Frames are allocated on the consumer stream (so the caching allocator never reuses their
    memory under the consumer's feet) and marked as used on the session stream; on exit the
    consumer stream waits for the session's work. On the CPU all of this is a no-op.
    """

    def __init__(self, session: Session, consumer: Any = None) -> None:
        self.session = session
        self.cuda = session.device.type == "cuda"
        self.consumer = consumer
        self._inner: Any = None

    def __enter__(self) -> StreamScope:
        if self.cuda:
            if self.consumer is None:
                self.consumer = torch.cuda.current_stream(self.session.device)
            self.session.stream.wait_stream(self.consumer)  # type: ignore[attr-defined]
        self._inner = self.session.scope()
        self._inner.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._inner.__exit__(*exc)
        if self.cuda:
            self.consumer.wait_stream(self.session.stream)  # type: ignore[attr-defined]

    def on_consumer(self, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        """``make()`` run on the consumer stream after the session's work: a result that it
        allocates (a copy, a concatenation, a reordering of frames) then belongs to the caller's
        stream, so the allocator never hands its memory to a later decode while the caller's
        queued work still reads it."""
        if not self.cuda:
            return make()
        self.consumer.wait_stream(self.session.stream)  # type: ignore[attr-defined]
        with torch.cuda.stream(self.consumer):
            return make()

    def alloc(self, shape: tuple[int, ...]) -> torch.Tensor:
        if not self.cuda:
            return torch.empty(shape, dtype=torch.uint8)
        with torch.cuda.stream(self.consumer):
            tensor = torch.empty(shape, dtype=torch.uint8, device=self.session.device)
        tensor.record_stream(self.session.stream)  # type: ignore[attr-defined]
        return tensor


# ------------------------------------------------------------------------------ frame selection
def decoded_batches(session: Session, packets: Iterator[Any]) -> Iterator[Batch]:
    """The displayable frames after each packet, then after the final flush.

    Frames of packets the container marks for discard (edit lists) are dropped, as FFmpeg drops
    them. Each batch's surfaces are valid until the next batch is requested.
    """
    discard: set[int] = set()
    for packet in packets:
        if packet.size == 0:
            continue  # PyAV's end-of-stream marker; we flush below
        if packet.pts is None:
            raise NvdecUnsupported("the container gives video packets without timestamps")
        if packet.is_discard:
            discard.add(packet.pts)
        batch = session.decode(packet)
        if batch:
            yield [(pts, s) for pts, s in batch if pts not in discard] if discard else batch
    batch = session.drain()
    if batch:
        yield [(pts, s) for pts, s in batch if pts not in discard] if discard else batch


def _demux(container: Any, stream: Any) -> Iterator[Any]:
    return container.demux(stream)


class _Frame:
    """A decoded frame as the CPU backend's ``Selection`` sees it: a pts and its pixels."""

    __slots__ = ("pts", "surface")

    def __init__(self, pts: int, surface: Surface) -> None:
        self.pts = pts
        self.surface = surface


def _surface_frames(container: Any, stream: Any, session: Session) -> Iterator[_Frame]:
    """The decoded frames from the current position, one at a time, in display order (a frame's
    surface stays valid until the next one is asked for)."""
    session.begin(stream)
    batches = decoded_batches(session, _demux(container, stream))
    try:
        for batch in batches:
            for pts, surface in batch:
                yield _Frame(pts, surface)
    finally:
        batches.close()


def read_range(container: Any, stream: Any, session: Session, plan: StreamPlan, scope: StreamScope,
               start: Any, end: Any, *, converter: SurfaceConverter) -> torch.Tensor:
    """The frames of ``stream`` in ``[start, end]`` (stream units), like the CPU ``read_video``.

    The CPU backend's own ``Selection`` decides which frames are kept, and its own
    ``seek_to_range`` positions the container: where the seek does not reach back to ``start``
    (or cannot be trusted), the container is seeked back to the start of the stream (and that
    checked) and decoded from there. A container that cannot go back raises
    :class:`NvdecUnsupported` (the CPU backend then reads it from a fresh container).

    Returns ``Tensor[T, H, W, 3]`` uint8 on the session's device.
    """
    import av

    selection_buffer = should_buffer(stream)
    frames = seek_to_range(container, stream, start, selection_buffer,
                           lambda: _surface_frames(container, stream, session), before_seek=session.reset)
    if frames is None:
        _log.debug("nvdec read_range: the seek for start %s in video stream %d (%s) did not reach back "
                   "to it; decoding from the start", start, stream.index, container.format.name)
        session.reset()
        frames = seek_back_to_start(container, stream, lambda: _surface_frames(container, stream, session),
                                    before_seek=session.reset)
        if frames is None:
            raise NvdecUnsupported("the container cannot seek back to the start of the stream")
    store = FrameStore(plan, scope.alloc, capacity=capacity_hint(stream, start, end))
    slots: dict[int, int] = {}
    before_copy: list[torch.Tensor] = []

    def keep(pts: int, frame: _Frame) -> None:
        slot = slots.get(pts)
        if slot is None:
            slot, dest = store.new_slot()
            slots[pts] = slot
        else:
            dest = store.view(slot)  # a repeated pts: the later frame wins, as on the CPU
        converter.put(frame.surface, dest)

    selection = Selection(start, end, selection_buffer, keep)
    try:
        for frame in frames:
            go_on = selection.feed(frame)
            if selection.before is not None and selection.before[1] is frame:
                # the surface is overwritten by the next decoder call: keep a copy
                if not before_copy:
                    before_copy.append(torch.empty_like(frame.surface))
                before_copy[0].copy_(frame.surface)
                frame.surface = before_copy[0]
            if not go_on:
                break
    except av.FFmpegError as exc:
        warnings.warn(f"decoding stopped early at a corrupt packet: {exc}", RuntimeWarning, stacklevel=4)
    finally:
        frames.close()
    if selection.needs_before():
        pts, frame = selection.before  # type: ignore[misc]
        slot, dest = store.new_slot()
        converter.put(frame.surface, dest)
        slots[pts] = slot
    converter.flush()
    session.reset()
    order = [slots[p] for p in sorted(slots)]
    return scope.on_consumer(lambda: store.gather(order))


def capacity_hint(stream: Any, start: Any, end: Any) -> int:
    # the CPU backend's estimate of the frames in [start, end], plus the frame before start
    return _cpu_capacity_hint(stream, start, end) + 1


class SurfaceFrames:
    """Decoded frames of one stream from the current position, as ``_Frame`` (pts, surface).

    The GPU twin of the CPU reader's ``_Frames``: frames come in display order; ``push_back``
    returns a frame to the front. A frame's surface stays valid until the decoder is called
    again, which happens only once every frame already handed out has been consumed.
    """

    def __init__(self, container: Any, stream: Any, session: Session) -> None:
        session.begin(stream)
        self._batches = decoded_batches(session, _demux(container, stream))
        self._pending: deque[_Frame] = deque()

    def __iter__(self) -> SurfaceFrames:
        return self

    def __next__(self) -> _Frame:
        import av

        while not self._pending:
            try:
                batch = next(self._batches)
            except av.FFmpegError as exc:
                raise DecodeError(f"decoding failed: {exc}") from None
            self._pending.extend(_Frame(p, s) for p, s in batch)
        return self._pending.popleft()

    def has_pending(self) -> bool:
        """Whether a frame can be had without calling the decoder."""
        return bool(self._pending)

    def push_back(self, frame: _Frame) -> None:
        self._pending.appendleft(frame)

    def close(self) -> None:
        self._batches.close()
        self._pending.clear()


def rewind(container: Any, stream: Any, session: Session) -> SurfaceFrames | None:
    """Frames from the start of ``stream`` (the CPU reader's ``_rewind``); None when not seekable."""
    import av

    start = stream.start_time
    session.reset()
    try:
        container.seek(min(int(start), 0) if start is not None else 0, stream=stream, backward=True,
                       any_frame=False)
    except av.FFmpegError:
        return None
    return SurfaceFrames(container, stream, session)


def seek_frames(container: Any, stream: Any, session: Session, target_pts: int) -> SurfaceFrames | None:
    """Frames from a keyframe at or before ``target_pts``: the CPU reader's procedure
    (:func:`cpu_fallback._video_reader.seek_to_keyframe`), with the decoder session reset before
    each seek. None means: decode from the start.
    """
    return seek_to_keyframe(container, stream, target_pts, lambda: SurfaceFrames(container, stream, session),
                            before_seek=session.reset)


def decode_pts(container: Any, stream: Any, session: Session, wanted: list[int], keyframes: list[int],
               dests: list[torch.Tensor], *, converter: SurfaceConverter,
               reopen: Callable[[], tuple[Any, Any]]) -> None:
    """Decode the frames with exactly the pts ``wanted`` (sorted, unique) into ``dests``.

    The CPU reader's ``_decode_pts``: it seeks only when the next target lies beyond a keyframe
    not decoded yet, and raises :class:`DecodeError` when a listed frame does not come out.
    ``reopen()`` gives a fresh ``(container, stream)`` for files that cannot seek to the start.
    """
    frames: SurfaceFrames | None = None
    last: int | None = None
    try:
        for i, target in enumerate(wanted):
            k = bisect.bisect_right(keyframes, target) - 1
            if frames is None or last is None or (k >= 0 and keyframes[k] > last):
                if frames is not None:
                    frames.close()
                frames = seek_frames(container, stream, session, target)
                if frames is None:
                    frames = rewind(container, stream, session)
                if frames is None:
                    session.reset()
                    container, stream = reopen()
                    frames = SurfaceFrames(container, stream, session)
            frame = frame_with_pts(frames, target, wanted[i:])
            last = frame.pts
            converter.put(frame.surface, dests[i])
    finally:
        if frames is not None:
            frames.close()
        converter.flush()
        session.reset()
