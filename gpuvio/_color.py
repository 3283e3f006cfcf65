"""The YUV -> RGB conversion policy, written once as device-agnostic torch ops.

Every backend turns decoded YUV into RGB by the same rules, so that a frame decoded on the GPU
matches the CPU reference:

* **Matrix** from the stream's colour tags: BT.709 when tagged ``bt709``, BT.2020 (non-constant
  luminance) when tagged ``bt2020nc``/``bt2020c``, SMPTE 240M when so tagged, and BT.601 for
  everything else, untagged streams included (FFmpeg's and torchvision's default).
* **Range**: limited ("MPEG", Y in 16..235, chroma in 16..240) unless the stream is tagged full
  range ("JPEG") or uses a ``yuvj*`` pixel format. RGB is always full range 0..255.
* **Chroma upsampling** for 4:2:0 and 4:2:2: bilinear, on the exact 2:1 grid (chroma sample ``j``
  belongs to luma ``2j`` and ``2j + 1``; odd sizes are the even size cropped), with the chroma
  siting FFmpeg's decoders give the codec (:func:`chroma_siting`): ``"left"`` for H.264, HEVC,
  MPEG-2 and MPEG-4 Part 2 (horizontally on the even luma columns, vertically halfway between luma
  rows), ``"center"`` for everything else, VP8/VP9/AV1/MJPEG/MPEG-1/H.263 included (halfway in
  both directions: what swscale assumes for an untagged frame). ``"topleft"``/``"top"`` (on the even
  rows) exist for streams that signal them. At the edges the nearest chroma sample is repeated.
* **Arithmetic and rounding**: in float32, each channel rounded to nearest and clamped to 0..255.
  Higher bit depths are scaled to 8 bits before the matrix (``value / 2**(bits - 8)``).

The CPU backend gets this from FFmpeg's swscale (``BILINEAR | ACCURATE_RND | FULL_CHR_H_INT``),
which computes the same formula in fixed point; the tests (``tests/test_color.py``) check that
:func:`yuv_to_rgb` agrees with it to within 1 on real clips (8-bit and 10-bit, 4:2:0/4:2:2/4:4:4,
BT.601/709/2020, limited and full range, left- and centre-sited codecs). Where swscale departs
from the policy, the CPU backend converts with :func:`yuv_to_rgb` itself: odd frame sizes
(swscale stretches the ``ceil(W/2)`` chroma samples over ``W`` columns instead of keeping the
2:1 grid, up to 9 levels off), so both backends agree exactly there too. Known gap: a stream that *signals* a non-default chroma location (e.g.
x264 ``--chromaloc 2``, some HDR HEVC) is converted by swscale with the signalled siting, which
PyAV does not expose; a GPU backend using :func:`chroma_siting` then differs on sharp chroma
edges. GPU backends run :func:`yuv_to_rgb` (or a fused kernel checked against it) on the
decoder's NV12/P016 planes.
"""

from __future__ import annotations

from typing import Literal

import torch

from ._errors import InvalidArgumentError

__all__ = ["Matrix", "Siting", "chroma_siting", "color_policy", "nv12_to_rgb", "yuv_to_rgb"]

Matrix = Literal["bt601", "bt709", "bt2020", "smpte240m"]
Siting = Literal["left", "center", "topleft", "top"]

# Decoders that FFmpeg tags AVCHROMA_LOC_LEFT when the stream says nothing (checked against
# FFmpeg 8.1: h264, hevc, mpeg2video, mpeg4 give "left"; vp8, vp9, av1 (libdav1d), mjpeg,
# mpeg1video, h263, msmpeg4, wmv2, flv and ffv1 leave it unset, which swscale treats as centre).
_LEFT_SITED_CODECS = frozenset({"h264", "hevc", "h265", "mpeg2video", "mpeg4"})

# Kr, Kb of each matrix (Kg = 1 - Kr - Kb).
_COEFFICIENTS: dict[str, tuple[float, float]] = {
    "bt601": (0.299, 0.114),
    "bt709": (0.2126, 0.0722),
    "bt2020": (0.2627, 0.0593),
    "smpte240m": (0.212, 0.087),
}

# FFmpeg's AVColorSpace numbers -> our matrix names (what PyAV's frame.colorspace holds).
_FFMPEG_COLORSPACE = {1: "bt709", 7: "smpte240m", 9: "bt2020", 10: "bt2020"}


def color_policy(colorspace: int | str | None, color_range: int | str | None,
                 pix_fmt: str | None = None) -> tuple[Matrix, bool]:
    """The (matrix, full_range) that the policy picks for a stream's tags.

    ``colorspace`` and ``color_range`` take FFmpeg's numbers (``AVColorSpace``,
    ``AVColorRange``: 2 means full/JPEG) or names such as ``"bt709"`` / ``"full"``.
    """
    if isinstance(colorspace, str):
        name = colorspace.lower().replace("-", "").replace("_", "")
        matrix = next((m for m in _COEFFICIENTS if name.startswith(m)), "bt601")
    else:
        matrix = _FFMPEG_COLORSPACE.get(int(colorspace or 0), "bt601")
    if isinstance(color_range, str):
        full = color_range.lower() in ("full", "jpeg", "pc")
    else:
        full = int(color_range or 0) == 2
    if pix_fmt is not None and pix_fmt.startswith("yuvj"):
        full = True
    return matrix, full  # type: ignore[return-value]


def chroma_siting(codec: str | None) -> Siting:
    """The chroma siting the policy uses for a stream of this codec (FFmpeg decoder name, e.g.
    ``"h264"``, ``"vp9"``, ``"libdav1d"``): ``"left"`` for H.264/HEVC/MPEG-2/MPEG-4 Part 2, else
    ``"center"``."""
    name = (codec or "").lower()
    return "left" if name in _LEFT_SITED_CODECS else "center"


# The upsampling helpers work on the last two dimensions, so a batch of planes [..., h, w]
# converts in one go with the very same float operations as a single frame.

def _upsample_rows(c: torch.Tensor, height: int) -> torch.Tensor:
    """Vertical 2x, chroma halfway between luma rows: weights 3/4 and 1/4."""
    prev = torch.cat([c[..., :1, :], c[..., :-1, :]], dim=-2)
    nxt = torch.cat([c[..., 1:, :], c[..., -1:, :]], dim=-2)
    out = torch.stack([0.75 * c + 0.25 * prev, 0.75 * c + 0.25 * nxt], dim=-2)
    return out.reshape(*c.shape[:-2], -1, c.shape[-1])[..., :height, :]


def _upsample_cols(c: torch.Tensor, width: int) -> torch.Tensor:
    """Horizontal 2x, chroma on the even luma columns: copy, then the mean of two neighbours."""
    nxt = torch.cat([c[..., 1:], c[..., -1:]], dim=-1)
    out = torch.stack([c, 0.5 * (c + nxt)], dim=-1)
    return out.reshape(*c.shape[:-1], -1)[..., :width]


def _upsample_rows_cosited(c: torch.Tensor, height: int) -> torch.Tensor:
    """Vertical 2x, chroma on the even luma rows: copy, then the mean of two neighbours."""
    return _upsample_cols(c.transpose(-1, -2), height).transpose(-1, -2)


def _upsample_cols_centered(c: torch.Tensor, width: int) -> torch.Tensor:
    """Horizontal 2x, chroma halfway between luma columns: weights 3/4 and 1/4."""
    return _upsample_rows(c.transpose(-1, -2), width).transpose(-1, -2)


_VERTICAL = {"left": _upsample_rows, "center": _upsample_rows,
             "topleft": _upsample_rows_cosited, "top": _upsample_rows_cosited}
_HORIZONTAL = {"left": _upsample_cols, "topleft": _upsample_cols,
               "center": _upsample_cols_centered, "top": _upsample_cols_centered}


def yuv_to_rgb(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *, matrix: Matrix = "bt601",
               full_range: bool = False, bit_depth: int = 8, siting: Siting = "left") -> torch.Tensor:
    """Convert planar YUV to RGB by the policy above.

    Args:
        y: ``Tensor[..., H, W]`` luma, uint8 (or int16/int32/uint16 holding ``bit_depth``-bit
            values); leading dimensions, if any, are a batch.
        u, v: ``Tensor[..., h, w]`` chroma planes; ``h`` is ``H`` or ``ceil(H/2)``, ``w`` is ``W`` or
            ``ceil(W/2)`` (4:4:4, 4:2:2 and 4:2:0 are all accepted).
        matrix: ``"bt601"``, ``"bt709"``, ``"bt2020"`` or ``"smpte240m"``.
        full_range: whether Y/U/V use the full range instead of the limited (studio) one.
        bit_depth: bits per sample of the planes (8, 10, 12 or 16).
        siting: where the chroma samples sit (default ``"left"``); see :func:`chroma_siting`.

    Returns:
        ``Tensor[..., H, W, 3]`` uint8 on the planes' device.
    """
    if siting not in _VERTICAL:
        raise InvalidArgumentError(f"siting must be one of {sorted(_VERTICAL)}; got {siting!r}")
    height, width = y.shape[-2:]
    scale = float(2 ** (bit_depth - 8))
    yf = y.to(torch.float32) / scale if scale != 1 else y.to(torch.float32)
    uf = u.to(torch.float32) / scale if scale != 1 else u.to(torch.float32)
    vf = v.to(torch.float32) / scale if scale != 1 else v.to(torch.float32)
    if uf.shape[-2] != height:
        rows = _VERTICAL[siting]
        uf, vf = rows(uf, height), rows(vf, height)
    if uf.shape[-1] != width:
        cols = _HORIZONTAL[siting]
        uf, vf = cols(uf, width), cols(vf, width)
    kr, kb = _COEFFICIENTS[matrix]
    kg = 1.0 - kr - kb
    if full_range:
        uf = uf - 128.0
        vf = vf - 128.0
    else:
        yf = (yf - 16.0) * (255.0 / 219.0)
        uf = (uf - 128.0) * (255.0 / 224.0)
        vf = (vf - 128.0) * (255.0 / 224.0)
    r = yf + (2.0 * (1.0 - kr)) * vf
    g = yf - (2.0 * (1.0 - kb) * kb / kg) * uf - (2.0 * (1.0 - kr) * kr / kg) * vf
    b = yf + (2.0 * (1.0 - kb)) * uf
    rgb = torch.stack([r, g, b], dim=-1)
    return torch.floor(rgb + 0.5).clamp_(0, 255).to(torch.uint8)


def nv12_to_rgb(nv12: torch.Tensor, *, matrix: Matrix = "bt601", full_range: bool = False,
                bit_depth: int = 8, siting: Siting = "left") -> torch.Tensor:
    """Convert an NV12 (or P010/P016) surface, as NVDEC returns it, to RGB.

    Args:
        nv12: ``Tensor[H * 3 // 2, W]``: the luma rows, then ``H // 2`` rows of interleaved U, V.
            uint8 for NV12; for P016 pass the 16-bit samples (int32 or uint16) and ``bit_depth=16``
            (P010 stores 10-bit values in the high bits, so it is ``bit_depth=16`` too).

    Returns:
        ``Tensor[H, W, 3]`` uint8.
    """
    rows, width = nv12.shape
    height = rows * 2 // 3
    y = nv12[:height]
    uv = nv12[height:].reshape(rows - height, width // 2, 2)
    return yuv_to_rgb(y, uv[..., 0], uv[..., 1], matrix=matrix, full_range=full_range,
                      bit_depth=bit_depth, siting=siting)
