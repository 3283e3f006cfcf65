"""What NVDEC can decode, decided on the host: the stream plan and the decoder's limits.

:func:`plan_stream` checks a PyAV stream against what the NVDEC path decodes exactly like FFmpeg
(codec, 4:2:0 at 8 to 12 bits, even sizes, progressive) and records the colour facts the
conversion needs; :func:`check_caps` checks it against the GPU's own ``GetDecoderCaps``.
Anything refused raises :class:`NvdecUnsupported`, which sends the file to the CPU backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._color import Matrix, Siting, chroma_siting, color_policy
from .._errors import UnsupportedFormatError
from .._forksafe import ForkSafeLock
from .._protocols import SourceUnsupported
from .._swscale_rgb import SwsMatrix, sws_matrix

__all__ = ["NvdecUnsupported", "StreamPlan", "check_caps", "decoder_caps", "engine_count", "enum_member",
           "headroom", "plan_stream"]


class NvdecUnsupported(SourceUnsupported):
    """This file (or stream) must be decoded by the CPU backend instead; the message says why."""


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


def enum_member(enum_type: Any, name: str) -> Any:
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
                gpuid=device_index, codec=enum_member(nvc.cudaVideoCodec, plan.nv_codec),
                chromaformat=enum_member(nvc.cudaVideoChromaFormat, "420"), bitdepth=plan.bit_depth))
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


def headroom(size: int, limit: int | None) -> int:
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


