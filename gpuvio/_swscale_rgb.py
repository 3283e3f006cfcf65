"""FFmpeg swscale's default YUV -> RGB24 conversion, bit for bit, as device-agnostic torch ops.

torchvision 0.8 (and PyAV ever since) turns a decoded frame into RGB with
``frame.to_rgb().to_ndarray()``, i.e. ``sws_scale_frame`` with ``SWS_BILINEAR`` and nothing
else. :func:`swscale_yuv_to_rgb` reproduces that output exactly from the decoder's planes, with
integer tensor operations only, so the same code runs on the CPU and on CUDA. It was checked
against PyAV 18.1 / FFmpeg 8.1 (libswscale 9.5) on x86-64 with SSSE3
(``tests/test_swscale_rgb.py``).

Which arithmetic runs depends on the frame; swscale picks one of three paths:

* **Unscaled special converter** (8-bit 4:2:0 or 4:2:2 whose (field) height is even):
  ``ff_yuv2rgb_get_func_ptr`` -> ``yuv420_rgb24_ssse3`` (``ff_yuv_420_rgb24_ssse3`` in
  ``x86/yuv_2_rgb.asm``; the same function serves 4:2:2). Chroma is nearest: luma pixel
  ``(r, c)`` takes chroma ``(r >> 1, c >> 1)`` (4:2:2: ``(r, c >> 1)``), whatever the chroma
  siting. Per channel, with 16-bit ``pmulhw`` products (``(a * b) >> 16``, floored) and no
  rounding term: ``Y' = ((Y << 3) - yOffset) * yCoeff >> 16``, ``Cb' = (Cb << 3) - 1024``,
  ``R = Y' + (Cr' * vrCoeff >> 16)``, ``G = Y' + (Cb' * ugCoeff >> 16) + (Cr' * vgCoeff >> 16)``,
  ``B = Y' + (Cb' * ubCoeff >> 16)``, clamped to 0..255. The row width does not matter: the
  SIMD loop overruns into the padding of PyAV's 16-pixel aligned rows, never short of a pixel.
* **General scaler, half chroma** (anything else of even width with subsampled chroma: odd
  heights, 10/12-bit): chroma is resampled by swscale's bilinear filters (``initFilter``,
  taken with its fixed-point positions and rounding, :func:`_taps`), vertically to the full
  height and horizontally onto ``ceil(W/2)`` columns (an identity for centre siting, a quarter
  sample shift for left siting); luma is ``(Y15 + 64) >> 7``. RGB comes from the lookup tables
  of ``ff_yuv2rgb_c_init_tables`` (``yuv2rgb_1_c_template``/``_X_``), written here in closed
  form; each pair of pixels shares one chroma value.
* **General scaler, full chroma** (4:4:4, or an odd width): chroma resampled to every column;
  ``yuv2rgb_write_full`` computes ``((Y - off) * yCoeff + 2^21 + Cr * v2r ...) >> 22`` on 15-bit
  intermediates, in 32-bit ints that swscale lets wrap: a very bright pixel whose sum passes
  2^31 comes out 0 (e.g. B of Y=237, Cb=255), which is copied here too.

Interlaced frames (``AV_FRAME_FLAG_INTERLACED``, PyAV ``frame.interlaced_frame``) are converted
field by field, each field picking its own path (``interlaced=True``).

Matrix and range follow the frame's tags (PyAV hands ``frame.colorspace`` / ``color_range`` to
swscale): :func:`sws_matrix`. Colourspaces 1 (bt709), 4 (fcc), 7 (smpte240m) and 9 (bt2020nc)
have their own coefficients; 0, 2, 5, 6 (rgb, unspecified, bt470bg, smpte170m) give BT.601;
the others (reserved, YCgCo, bt2020c, ...) make PyAV fail with EOPNOTSUPP. Full range exactly
when ``color_range`` is 2 (JPEG) or the pixel format is ``yuvj*``.

Known gaps: a bottom field whose chroma rows run past the plane (interlaced height 2 mod 4 with
odd field heights) reads padding in swscale and a repeated last row here; chroma location is
not exposed by PyAV 18, so callers pass the codec's (:func:`gpuvio._color.chroma_siting`).
Only x86-64 was checked: on aarch64 swscale's unscaled converter is NEON code of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import torch

from ._errors import InvalidArgumentError, UnsupportedFormatError

__all__ = ["ChromaLocation", "SwsCoefficients", "SwsMatrix", "coefficients", "sws_matrix",
           "swscale_nv12_to_rgb", "swscale_yuv_to_rgb"]

SwsMatrix = Literal["bt601", "bt709", "fcc", "smpte240m", "bt2020"]
ChromaLocation = Literal["unspecified", "left", "center", "topleft", "top", "bottomleft",
                         "bottom"]

# ff_yuv2rgb_coeffs: crv, cbu, cgu, cgv in 16.16 fixed point, the 255/224 chroma gain of the
# limited range already folded in.
_INV_TABLE: dict[str, tuple[int, int, int, int]] = {
    "bt709": (117489, 138438, 13975, 34925),
    "bt601": (104597, 132201, 25675, 53279),
    "fcc": (104448, 132798, 24759, 53109),
    "smpte240m": (117579, 136230, 16907, 35559),
    "bt2020": (110013, 140363, 12277, 42626),
}
# AVColorSpace -> coefficients, as sws_getCoefficients resolves them; absent values are refused.
_COLORSPACE = {0: "bt601", 1: "bt709", 2: "bt601", 4: "fcc", 5: "bt601", 6: "bt601",
               7: "smpte240m", 9: "bt2020"}
_COLORSPACE_NAMES = {"gbr": 0, "rgb": 0, "bt709": 1, "unknown": 2, "unspecified": 2,
                     "reserved": 3, "fcc": 4, "bt470bg": 5, "bt601": 5, "smpte170m": 6,
                     "smpte240m": 7, "ycgco": 8, "ycocg": 8, "bt2020nc": 9, "bt2020": 9,
                     "bt2020ncl": 9, "bt2020c": 10, "bt2020cl": 10}
# av_chroma_location_enum_to_pos: chroma sample (0, 0) in 1/256 luma units.
_LOCATION_POS = {"left": (0, 128), "center": (128, 128), "unspecified": (128, 128),
                 "topleft": (0, 0), "top": (128, 0), "bottomleft": (0, 256),
                 "bottom": (128, 256)}
_LOCATION_BY_NUMBER = ("unspecified", "left", "center", "topleft", "top", "bottomleft",
                       "bottom")


def sws_matrix(colorspace: int | str | None, color_range: int | str | None,
               pix_fmt: str | None = None) -> tuple[SwsMatrix, bool]:
    """The ``(matrix, full_range)`` swscale uses for a frame with these tags, as PyAV's
    ``to_rgb()`` passes them (``frame.colorspace``, ``frame.color_range``, ``frame.format.name``).

    Raises :class:`UnsupportedFormatError` where PyAV's conversion fails (EOPNOTSUPP)."""
    if isinstance(colorspace, str):
        key = colorspace.lower().replace("-", "").replace("_", "").replace(".", "")
        if key not in _COLORSPACE_NAMES:
            raise InvalidArgumentError(f"unknown colorspace {colorspace!r}")
        number = _COLORSPACE_NAMES[key]
    else:
        number = int(colorspace or 0)
    if number not in _COLORSPACE:
        raise UnsupportedFormatError(f"swscale cannot convert colorspace {colorspace!r} to RGB")
    if isinstance(color_range, str):
        full = color_range.lower() in ("full", "jpeg", "pc")
    else:
        full = int(color_range or 0) == 2
    full = full or (pix_fmt is not None and pix_fmt.startswith("yuvj"))
    return _COLORSPACE[number], full  # type: ignore[return-value]


def _cdiv(a: int, b: int) -> int:
    """C's integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _round16(f: int) -> int:
    """swscale's roundToInt16: (f + 2^15) >> 16, saturated to int16."""
    return max(-0x7FFF if f >= 0 else -0x8000, min(0x7FFF, (f + (1 << 15)) >> 16))


@dataclass(frozen=True)
class SwsCoefficients:
    """The integer constants of one (matrix, range), as ``ff_yuv2rgb_c_init_tables`` sets them
    (brightness 0, contrast and saturation 1.0). A fused kernel can take them as they are."""

    matrix: str
    full_range: bool
    cy: int                 # luma gain, 16.16 (76309 = 255/219 for limited range)
    oy: int                 # luma offset, 16.16 (16 << 16 for limited range)
    crv: int                # chroma gains, 16.16 (cgu, cgv negative)
    cbu: int
    cgu: int
    cgv: int
    y_coeff: int            # the same gains in 2.13 form (SIMD pmulhw and full-chroma output)
    v2r: int
    u2g: int
    v2g: int
    u2b: int
    simd_y_offset: int      # luma offset of the SIMD path (x8)
    full_y_offset: int      # luma offset of the full-chroma path (x512)
    tab_crv: int            # chroma gains relative to cy, the lookup-table path's steps
    tab_cbu: int
    tab_cgu: int
    tab_cgv: int
    tab_base: int           # the table's luma origin: 326 (limited) or 384 (full)


@lru_cache(maxsize=None)
def coefficients(matrix: SwsMatrix = "bt601", full_range: bool = False) -> SwsCoefficients:
    """The swscale constants for a matrix (see :func:`sws_matrix`) and range."""
    if matrix not in _INV_TABLE:
        raise InvalidArgumentError(f"matrix must be one of {sorted(_INV_TABLE)}; got {matrix!r}")
    crv, cbu, cgu, cgv = _INV_TABLE[matrix]
    cgu, cgv = -cgu, -cgv
    if full_range:
        cy, oy = 1 << 16, 0
        crv, cbu, cgu, cgv = (_cdiv(c * 224, 255) for c in (crv, cbu, cgu, cgv))
    else:
        cy, oy = (65536 * 255) // 219, 16 << 16
    scaled = [_cdiv(c * 65536 + 0x8000, cy) for c in (crv, cbu, cgu, cgv)]
    return SwsCoefficients(
        matrix=matrix, full_range=full_range, cy=cy, oy=oy, crv=crv, cbu=cbu, cgu=cgu, cgv=cgv,
        y_coeff=_round16(cy << 13), v2r=_round16(crv << 13), u2g=_round16(cgu * 8192),
        v2g=_round16(cgv * 8192), u2b=_round16(cbu << 13), simd_y_offset=_round16(oy << 3),
        full_y_offset=_round16(oy << 9), tab_crv=scaled[0], tab_cbu=scaled[1],
        tab_cgu=scaled[2], tab_cgv=scaled[3], tab_base=384 if full_range else 326)


# --- the three output stages; chroma already on the luma grid (or on pairs for the table) ---

def _simd_rgb(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
              k: SwsCoefficients) -> torch.Tensor:
    """ff_yuv_420_rgb24_ssse3: pmulhw is (a * b) >> 16 on int16 lanes (no rounding)."""
    yy = ((y << 3) - k.simd_y_offset) * k.y_coeff >> 16
    uu, vv = (u << 3) - 1024, (v << 3) - 1024
    r = yy + (vv * k.v2r >> 16)
    g = yy + ((uu * k.u2g >> 16) + (vv * k.v2g >> 16))
    b = yy + (uu * k.u2b >> 16)
    return torch.stack([r, g, b], dim=-1).clamp_(0, 255).to(torch.uint8)


def _table_rgb(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
               k: SwsCoefficients) -> torch.Tensor:
    """The yuv2rgb lookup tables in closed form. Entry ``i`` of the 24-bit y_table is
    clip(((i - 512) * cy - (384 << 16) - oy + 2^15) >> 16); a pixel reads entry
    ``512 + tab_base + Y + offset(Cb, Cr)``, each chroma offset being
    ``(C * step >> 16) - (step >> 9)`` with C clipped to 0..255 (the tables' headroom)."""
    u, v = u.clamp(0, 255), v.clamp(0, 255)

    def off(c: torch.Tensor, step: int) -> torch.Tensor:
        return (c * step >> 16) - (step >> 9)

    base = y + k.tab_base
    idx = torch.stack([base + off(v, k.tab_crv),
                       base + off(u, k.tab_cgu) + off(v, k.tab_cgv),
                       base + off(u, k.tab_cbu)], dim=-1)
    out = (idx * k.cy - ((384 << 16) + k.oy - 0x8000)) >> 16
    return out.clamp_(0, 255).to(torch.uint8)


def _full_rgb(y15: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
              k: SwsCoefficients) -> torch.Tensor:
    """yuv2rgb_write_full on 15-bit luma and chroma already centred (x4, i.e. 17-bit). The sums
    are int32 in swscale: negative -> 0, >= 2^30 -> 255, and >= 2^31 wraps to negative -> 0."""
    yy = (y15.to(torch.int64) * 4 - k.full_y_offset) * k.y_coeff + (1 << 21)
    u, v = u.to(torch.int64), v.to(torch.int64)
    x = torch.stack([yy + v * k.v2r, yy + v * k.v2g + u * k.u2g, yy + u * k.u2b], dim=-1)
    out = torch.where(x >= (1 << 30), torch.full_like(x, 255), x >> 22)
    out = torch.where((x < 0) | (x >= (1 << 31)), torch.zeros_like(x), out)
    return out.to(torch.uint8)


# --- swscale's bilinear filters (initFilter, SWS_BILINEAR, upscaling or identity) ---

def _local_pos(subsample: int, pos: int) -> int:
    """get_local_pos: a chroma position (1/256 luma units, -513 = none) on the chroma grid."""
    if pos == -1 or pos <= -513:
        pos = (128 << subsample) - 128
    return (pos + 128) >> subsample


@lru_cache(maxsize=256)
def _taps(src_n: int, dst_n: int, src_pos: int, dst_pos: int,
          one: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Per output sample: (first source index, its weight, second index); weights sum to
    ``one`` (4096 vertical, 16384 horizontal). Positions step in 1/2^17 of a source sample
    (xInc twice per output), the first tap weight is the distance rounded half up, edges
    clamp to the border sample, and sources of 3 samples or fewer get a 1-tap filter."""
    inc = ((src_n << 16) + (dst_n >> 1)) // dst_n
    if abs(inc - 0x10000) < 10 and src_pos == dst_pos:
        idx = tuple(range(dst_n))
        return idx, (one,) * dst_n, idx
    x0 = ((dst_pos * inc) >> 7) - ((src_pos * 0x10000) >> 7)
    shift = {4096: 5, 16384: 3}[one]
    first, weight, second = [], [], []
    for i in range(dst_n):
        x = x0 + 2 * i * inc
        if src_n <= 3:   # filterSize = max(1, min(3, src_n - 2)): the nearest sample
            p = min(max(_cdiv(x + (1 << 16), 1 << 17), 0), src_n - 1)
            first.append(p), weight.append(one), second.append(p)
            continue
        p = x >> 17
        w = ((1 << 17) - (x - (p << 17)) + (1 << (shift - 1))) >> shift
        first.append(min(max(p, 0), src_n - 1))
        second.append(min(max(p + 1, 0), src_n - 1))
        weight.append(w)
    return tuple(first), tuple(weight), tuple(second)


def _filter(x: torch.Tensor, taps: tuple, one: int, dim: int) -> torch.Tensor:
    """Apply taps along ``dim``: ``x[first] * w + x[second] * (one - w)``, not yet shifted."""
    first, weight, second = taps
    a = x.index_select(dim, torch.tensor(first, device=x.device))
    if first == second:   # identity or nearest: the full weight on one sample
        return a * one
    shape = [1] * x.dim()
    shape[dim] = len(weight)
    w = torch.tensor(weight, device=x.device, dtype=x.dtype).reshape(shape)
    b = x.index_select(dim, torch.tensor(second, device=x.device))
    return a * w + b * (one - w)


def _convert(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, k: SwsCoefficients, bits: int,
             loc: tuple[int, int], field: int | None) -> torch.Tensor:
    """One progressive picture (or one field), [..., H, W] planes -> [..., H, W, 3]."""
    height, width = y.shape[-2:]
    ch, cw = u.shape[-2:]
    sub_x, sub_y = int(cw != width), int(ch != height)
    y, u, v = (p.to(torch.int32) for p in (y, u, v))
    if bits == 8 and sub_x and height % 2 == 0:
        cols = torch.arange(width, device=y.device) >> 1
        u, v = u.index_select(-1, cols), v.index_select(-1, cols)
        if sub_y:
            rows = torch.arange(height, device=y.device) >> 1
            u, v = u.index_select(-2, rows), v.index_select(-2, rows)
        return _simd_rgb(y, u, v, k)

    full_chroma = (width & 1) == 1 or not sub_x
    x_pos = loc[0] if sub_x else -513
    y_pos = loc[1] if sub_y else -513
    if sub_y and field is not None:   # graph.c get_chroma_pos: field rows are twice as far
        y_pos = (y_pos + (256 if field == 1 else 0)) >> 1
    dst_sub_x = 0 if full_chroma else 1
    shift = bits - 1   # hScale8To15 / hScale16To15: 14-bit taps, 15-bit results
    h_taps = _taps(cw, (width + dst_sub_x) >> dst_sub_x, _local_pos(sub_x, x_pos),
                   _local_pos(dst_sub_x, -513), 1 << 14)
    v_taps = _taps(ch, height, _local_pos(sub_y, y_pos), _local_pos(0, -513), 1 << 12)
    u15 = (_filter(u, h_taps, 1 << 14, -1) >> shift).clamp_(max=32767)
    v15 = (_filter(v, h_taps, 1 << 14, -1) >> shift).clamp_(max=32767)
    y15 = ((y << 14) >> shift).clamp_(max=32767)
    uv = _filter(u15, v_taps, 1 << 12, -2), _filter(v15, v_taps, 1 << 12, -2)   # 27-bit sums
    if full_chroma:
        return _full_rgb(y15, (uv[0] - (128 << 19)) >> 10, (uv[1] - (128 << 19)) >> 10, k)
    pairs = torch.arange(width, device=y.device) >> 1
    u8, v8 = (((c + (1 << 18)) >> 19).index_select(-1, pairs) for c in uv)
    return _table_rgb((y15 + 64) >> 7, u8, v8, k)


def swscale_yuv_to_rgb(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, *,
                       matrix: SwsMatrix = "bt601", full_range: bool = False,
                       bit_depth: int = 8, chroma_location: ChromaLocation | int = "unspecified",
                       interlaced: bool = False) -> torch.Tensor:
    """Convert planar YUV to RGB exactly as PyAV's ``frame.to_ndarray(format="rgb24")`` does.

    Args:
        y: ``Tensor[..., H, W]`` luma; uint8, or any integer dtype holding ``bit_depth``-bit
            values in the low bits (yuv420p10le layout); leading dimensions are a batch.
        u, v: ``Tensor[..., h, w]`` chroma: 4:2:0 (``ceil(H/2)``, ``ceil(W/2)``), 4:2:2
            (``H``, ``ceil(W/2)``) or 4:4:4 (``H``, ``W``).
        matrix, full_range: from the frame's tags, see :func:`sws_matrix`.
        bit_depth: 8, 10 or 12.
        chroma_location: the frame's ``AVChromaLocation`` (name or number); only the general
            scaler (odd heights, >8 bits) looks at it. FFmpeg's H.264/HEVC/MPEG-2/MPEG-4
            decoders tag ``"left"``; untagged means ``"center"``.
        interlaced: the frame is flagged interlaced: swscale then converts each field alone.

    Returns:
        ``Tensor[..., H, W, 3]`` uint8 (RGB) on the planes' device.
    """
    if bit_depth not in (8, 10, 12):
        raise InvalidArgumentError(f"bit_depth must be 8, 10 or 12; got {bit_depth!r}")
    if isinstance(chroma_location, int):
        if not 0 <= chroma_location < len(_LOCATION_BY_NUMBER):
            raise InvalidArgumentError(f"unknown chroma location {chroma_location!r}")
        chroma_location = _LOCATION_BY_NUMBER[chroma_location]  # type: ignore[assignment]
    if chroma_location not in _LOCATION_POS:
        raise InvalidArgumentError(f"chroma_location must be one of {sorted(_LOCATION_POS)}; "
                                   f"got {chroma_location!r}")
    if y.is_floating_point() or u.is_floating_point() or v.is_floating_point():
        raise InvalidArgumentError("the planes must be integer tensors")
    height, width = y.shape[-2:]
    if u.shape != v.shape or u.shape[:-2] != y.shape[:-2]:
        raise InvalidArgumentError(f"plane shapes do not match: y {tuple(y.shape)}, "
                                   f"u {tuple(u.shape)}, v {tuple(v.shape)}")
    ch, cw = u.shape[-2:]
    half_w, half_h = (width + 1) >> 1, (height + 1) >> 1
    if cw not in (width, half_w) or ch not in (height, half_h) or (cw == width and ch != height):
        raise InvalidArgumentError(f"chroma {ch}x{cw} is not 4:2:0, 4:2:2 or 4:4:4 of luma "
                                   f"{height}x{width}")
    if height == 0 or width == 0:
        return torch.zeros(*y.shape, 3, dtype=torch.uint8, device=y.device)
    k = coefficients(matrix, bool(full_range))
    loc = _LOCATION_POS[chroma_location]
    if not interlaced:
        return _convert(y, u, v, k, bit_depth, loc, None)
    out = torch.empty(*y.shape, 3, dtype=torch.uint8, device=y.device)
    sub_y = ch != height
    for field in (0, 1):
        fy = y[..., field::2, :]
        if fy.shape[-2] == 0:
            continue
        if sub_y:   # swscale reads ceil(field height / 2) rows of every other chroma row
            rows = torch.arange(field, field + 2 * ((fy.shape[-2] + 1) >> 1), 2, device=y.device)
            rows = rows.clamp_(max=ch - 1)
            fu, fv = u.index_select(-2, rows), v.index_select(-2, rows)
        else:
            fu, fv = u[..., field::2, :], v[..., field::2, :]
        out[..., field::2, :, :] = _convert(fy, fu, fv, k, bit_depth, loc, field)
    return out


def swscale_nv12_to_rgb(y: torch.Tensor, uv: torch.Tensor, *, bit_depth: int = 8,
                        msb_aligned: bool | None = None, **kwargs) -> torch.Tensor:
    """:func:`swscale_yuv_to_rgb` for semi-planar NV12 / P010 / P016 (what NVDEC returns).

    Args:
        y: ``Tensor[..., H, W]`` luma (uint8 for NV12, 16-bit samples for P010/P016 as uint16,
            int16 (raw bits) or int32).
        uv: interleaved chroma, ``Tensor[..., h, w, 2]`` or ``Tensor[..., h, 2 * w]``.
        bit_depth: bits of the content (10 for P010 Main10, 12 for P016 12-bit).
        msb_aligned: the samples sit in the high bits of 16 (P010/P016); the default is True
            for ``bit_depth > 8``. They are shifted down to the yuv420p10le layout first.
        kwargs: matrix, full_range, chroma_location, interlaced (see :func:`swscale_yuv_to_rgb`).
    """
    if uv.dim() == y.dim():
        if uv.shape[-1] % 2:
            raise InvalidArgumentError(f"interleaved chroma has an odd width {uv.shape[-1]}")
        uv = uv.reshape(*uv.shape[:-1], uv.shape[-1] // 2, 2)
    if uv.dim() != y.dim() + 1 or uv.shape[-1] != 2:
        raise InvalidArgumentError(f"uv must be [..., h, w, 2] or [..., h, 2w]; got "
                                   f"{tuple(uv.shape)} for y {tuple(y.shape)}")
    u, v = uv[..., 0], uv[..., 1]
    if msb_aligned is None:
        msb_aligned = bit_depth > 8
    if bit_depth > 8 or msb_aligned:
        y, u, v = (p.to(torch.int32) & 0xFFFF for p in (y, u, v))   # int16 raw bits too
        if msb_aligned:
            y, u, v = (p >> (16 - bit_depth) for p in (y, u, v))
    return swscale_yuv_to_rgb(y, u, v, bit_depth=bit_depth, **kwargs)
