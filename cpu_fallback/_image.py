"""Image decoding and encoding on the CPU with Pillow, and FFmpeg's PNG decoder for plain PNGs.

This is the reference behaviour every image backend reproduces:

* Output is ``Tensor[C, H, W]``: uint8, or uint16 for 16-bit PNGs. Like torchvision's, it is a
  channels-first *view* of channels-last memory. Unlike torchvision's, a 2- or 3-channel result
  from Pillow views its 4-byte pixels (stride ``(1, 4 * W, 4)``) for JPEG and PNG: no packing
  copy is made. ``.contiguous()`` gives packed memory when that matters. GIF, WebP, AVIF and
  HEIC results are packed channels-last, as torchvision's tests require of those decoders.
* Speed: PNGs whose result is the file's own channels (no palette, no tRNS, no channel
  conversion), and every 16-bit PNG, go through FFmpeg's PNG decoder: 1.5x Pillow's speed, the
  GIL released. Pillow decodes the other PNGs and JPEGs straight into tensor memory. When the optional
  ``simplejpeg`` package is installed, clean JPEGs are decoded by libjpeg-turbo into packed
  memory instead (same pixels, checked by the tests; as fast as torchvision's decoder), and
  everything unusual still goes through Pillow.
* ``UNCHANGED`` keeps the file's channels: gray 1, gray+alpha 2, RGB 3, RGBA or CMYK 4; a palette
  PNG gives its palette indices; a 1-bit PNG gives 0/255; a GIF gives RGB. PNG transparency
  chunks (tRNS) are ignored in ``UNCHANGED``, as libpng does there, and honoured by the
  ``*_ALPHA`` modes.
* A CMYK JPEG in ``UNCHANGED`` gives the ink values as stored in the file, like libjpeg and
  torchvision (Adobe files store them inverted: Pillow's own ``CMYK`` image is ``255 -`` these).
* ``GRAY`` (and the gray of ``GRAY_ALPHA``) is libjpeg's luma for colour JPEGs, as torchvision
  returns it, and Pillow's ITU-R 601-2 luma (``L = (19595 R + 38470 G + 7471 B + 2**15) >> 16``)
  otherwise, also for 16-bit PNGs. ``RGB``/``GRAY`` drop alpha; ``*_ALPHA`` modes add an opaque
  alpha where the file has none.
* Pillow's errors become torchvision's: ``RuntimeError("Image is incomplete or truncated")``
  for a truncated JPEG, ``"Unsupported marker type 0x.."`` for a corrupt one, ``"Out of bound
  read in decode_png"`` for a truncated PNG, and so on.

Where this differs from ``torchvision.io`` 0.29 (checked by hand on the shared test media):

* PNG ``GRAY`` of colour images: libpng's ``rgb_to_gray`` differs from Pillow's luma by up to 1
  (8-bit) or about 10 (16-bit), and libpng takes its weights from a cHRM chunk when there is one
  (``wizard_low.png``: up to 42 apart). gpuvio always uses the fixed weights above.
* torchvision refuses ``GRAY_ALPHA``/``RGB_ALPHA`` for JPEGs, ignores the mode for GIFs (always
  RGB) and for WebP ``GRAY`` (returns colour, with a warning); gpuvio gives the mode asked for.
* Encoding an empty (0-pixel) image crashes torchvision's process; gpuvio raises ``ValueError``.
"""

from __future__ import annotations

import ctypes
import functools
import io
import re
import struct
from typing import Any

import numpy as np
import torch

from gpuvio._errors import DecodeError, InvalidArgumentError, ResourceLimitError, UnsupportedFormatError
from gpuvio._orientation import apply_orientation, exif_orientation
from gpuvio._types import ImageReadMode

__all__ = ["decode", "encode_jpeg", "encode_png", "pil_to_tensor"]

_PIL_FORMAT = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP", "avif": "AVIF"}
_CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4, "P": 1}
# Pillow stores RGB and LA in 4 bytes per pixel; these are the byte offsets of their channels.
_ARROW_BANDS = {"L": (0,), "P": (0,), "LA": (0, 3), "RGB": (0, 1, 2), "RGBA": (0, 1, 2, 3),
                "CMYK": (0, 1, 2, 3)}
_TARGET = {ImageReadMode.GRAY: "L", ImageReadMode.GRAY_ALPHA: "LA", ImageReadMode.RGB: "RGB",
           ImageReadMode.RGB_ALPHA: "RGBA"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- Pillow -> tensor

class _ArrowSchema(ctypes.Structure):
    pass


class _ArrowArray(ctypes.Structure):
    pass


_ArrowSchema._fields_ = [
    ("format", ctypes.c_char_p), ("name", ctypes.c_char_p), ("metadata", ctypes.c_char_p),
    ("flags", ctypes.c_int64), ("n_children", ctypes.c_int64),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowSchema))), ("dictionary", ctypes.c_void_p),
    ("release", ctypes.c_void_p), ("private_data", ctypes.c_void_p),
]
_ArrowArray._fields_ = [
    ("length", ctypes.c_int64), ("null_count", ctypes.c_int64), ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64), ("n_children", ctypes.c_int64),
    ("buffers", ctypes.POINTER(ctypes.c_void_p)),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowArray))), ("dictionary", ctypes.c_void_p),
    ("release", ctypes.c_void_p), ("private_data", ctypes.c_void_p),
]
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


class _Keepalive:
    """Owns Pillow's exported Arrow capsules for as long as the tensor viewing them lives."""

    def __init__(self, capsules: tuple[Any, Any], address: int, nbytes: int) -> None:
        self._capsules = capsules
        self.__array_interface__ = {
            "version": 3, "shape": (nbytes,), "typestr": "|u1", "data": (address, False)}


def _zero_copy_hwc(im: Any) -> np.ndarray | None:
    """``ndarray[H, W, 4 or 1]`` viewing Pillow's own pixel memory, or None if it can't be shared.

    Pillow exports single-block images through the Arrow C data interface; viewing that memory
    saves the pack-and-copy of ``tobytes()`` (a quarter of a 1080p JPEG decode).
    """
    if im.mode not in _ARROW_BANDS:
        return None
    try:
        capsules = im.__arrow_c_array__()
    except (AttributeError, ValueError, OSError):
        return None
    array = ctypes.cast(_capsule_pointer(capsules[1], b"arrow_array"),
                        ctypes.POINTER(_ArrowArray)).contents
    width, height = im.size
    if array.length != width * height:
        return None
    if array.n_children == 1:  # fixed-size list of 4 bytes per pixel
        child = array.children[0].contents
        pixel_bytes, base = 4, child.buffers[1]
        offset = (array.offset * 4 + child.offset)
    elif array.n_children == 0:  # plain uint8 array (L, P)
        pixel_bytes, base = 1, array.buffers[1]
        offset = array.offset
    else:
        return None
    if not base:
        return None
    nbytes = width * height * pixel_bytes
    flat = np.asarray(_Keepalive(capsules, base + offset, nbytes))
    return flat.reshape(height, width, pixel_bytes)


def _bands(hwc: torch.Tensor, mode: str) -> torch.Tensor:
    """``Tensor[C, H, W]`` view of the channels of Pillow ``mode`` in ``Tensor[H, W, 1 or 4]``."""
    bands = _ARROW_BANDS[mode]
    if len(bands) == hwc.shape[2]:
        out = hwc
    elif bands == (0, 3):
        out = hwc[:, :, ::3]
    else:
        out = hwc[:, :, : len(bands)]
    return out.permute(2, 0, 1)


def pil_to_tensor(im: Any) -> torch.Tensor:
    """``Tensor[C, H, W] uint8`` from a loaded Pillow image of mode L, LA, P, RGB, RGBA or CMYK.

    The tensor views Pillow's memory when it can (and keeps it alive), else holds a copy.
    """
    hwc = _zero_copy_hwc(im)
    if hwc is not None:
        return _bands(torch.from_numpy(hwc), im.mode)
    width, height = im.size
    data = bytearray(im.tobytes())
    return torch.frombuffer(data, dtype=torch.uint8).view(height, width, _CHANNELS[im.mode]).permute(2, 0, 1)


# --------------------------------------------------------------------------- decoding into torch memory

# Modes whose Pillow pixel layout a decoder can write straight into a tensor: 1 byte (L, P) or
# 4 bytes (the rest) per pixel.
_MAPPABLE = frozenset({"L", "P", "LA", "RGB", "RGBA", "CMYK"})


def _decode_into_tensor(im: Any) -> torch.Tensor | None:
    """Point a not yet loaded Pillow image at a new ``Tensor[H, W, 1 or 4] uint8`` to decode into.

    Pillow then writes its pixels straight into tensor memory: no zero-filled allocation of its
    own and no copy afterwards. Returns None (and changes nothing) where that is not possible.
    """
    from PIL import Image, ImageFile

    if im.mode not in _MAPPABLE or len(im.tile) != 1:
        return None
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Pillow may then stop short of the last rows; its own zero-filled memory is safer than
        # uninitialised tensor memory there
        return None
    width, height = im.size
    pixel = 1 if im.mode in ("L", "P") else 4
    # NumPy's plain malloc, not torch.empty: torch's posix_memalign pads its request, so a buffer
    # could not reuse the hole a same-sized earlier one left, and glibc's heap kept about 12 MB more
    # under mixed clean and corrupt JPEGs (benchmarks/memory_plateau.py)
    array = np.empty((height, width, pixel), dtype=np.uint8)
    buffer = torch.from_numpy(array)
    try:
        # the core image holds a buffer view of the array, so the memory outlives any early return
        im.im = Image.core.map_buffer(array, im.size, "raw", 0, (im.mode, width * pixel, 1))
    except (AttributeError, TypeError, ValueError):
        return None
    return buffer


@functools.lru_cache(maxsize=1)
def _libjpeg_turbo() -> bool:
    from PIL import features

    return bool(features.check_feature("libjpeg_turbo"))


def _set_rawmode(im: Any, rawmode: str) -> None:
    """Change the pixel format Pillow asks libjpeg for (the first tile argument)."""
    tile = im.tile[0]
    args = (rawmode, *tuple(tile[3])[1:])
    im.tile = [tile._replace(args=args) if hasattr(tile, "_replace") else (*tuple(tile)[:3], args)]


def _prepare_jpeg(im: Any, mode: ImageReadMode) -> None:
    """Ask libjpeg for the output that needs the least work afterwards (same pixels)."""
    if len(im.tile) != 1 or not isinstance(im.tile[0][3], tuple):
        return
    rawmode = im.tile[0][3][0]
    if mode in (ImageReadMode.GRAY, ImageReadMode.GRAY_ALPHA) and im.mode == "RGB":
        # libjpeg's grayscale output is the Y channel itself, as torchvision returns it
        im.draft("L", im.size)
    elif mode is ImageReadMode.UNCHANGED and im.mode == "CMYK" and rawmode == "CMYK;I":
        # the stored ink values, like libjpeg and torchvision, not Pillow's inverted ones
        _set_rawmode(im, "CMYK")
    elif im.mode == "RGB" and rawmode == "RGB" and _libjpeg_turbo():
        # libjpeg-turbo writes Pillow's 4-byte RGBX pixels itself (identical colour conversion),
        # which saves Pillow unpacking every RGB pixel: about 10% of a 1080p decode
        _set_rawmode(im, "RGBX")


# --------------------------------------------------------------------------- libjpeg-turbo direct

@functools.lru_cache(maxsize=1)
def _simplejpeg() -> Any:
    """The optional ``simplejpeg`` module (libjpeg-turbo with packed output), or None."""
    try:
        import simplejpeg
    except ImportError:
        return None
    return simplejpeg


# (file colour space, mode) -> libjpeg output colour space, where the result is pixel for pixel
# the one the Pillow path gives (both are libjpeg-turbo with its default, exact settings)
_TURBO_OUTPUT = {
    ("Gray", ImageReadMode.UNCHANGED): "GRAY", ("Gray", ImageReadMode.GRAY): "GRAY",
    ("Gray", ImageReadMode.RGB): "RGB",
    ("YCbCr", ImageReadMode.UNCHANGED): "RGB", ("YCbCr", ImageReadMode.GRAY): "GRAY",
    ("YCbCr", ImageReadMode.RGB): "RGB", ("YCbCr", ImageReadMode.RGB_ALPHA): "RGBA",
    ("RGB", ImageReadMode.UNCHANGED): "RGB", ("RGB", ImageReadMode.GRAY): "GRAY",
    ("RGB", ImageReadMode.RGB): "RGB", ("RGB", ImageReadMode.RGB_ALPHA): "RGBA",
    ("CMYK", ImageReadMode.UNCHANGED): "CMYK",
}


def _decode_jpeg_turbo(data: memoryview, mode: ImageReadMode) -> torch.Tensor | None:
    """A JPEG decoded by libjpeg-turbo straight into packed ``Tensor[C, H, W]`` memory, or None.

    Used when the optional ``simplejpeg`` package is installed: it skips Pillow's per-scanline
    copy and 4-byte pixels, which makes a 1080p decode ~15% faster, and gives torchvision's
    packed channels-last layout. Only clean files in the cases of ``_TURBO_OUTPUT`` take this
    path; anything else (other modes, warnings from libjpeg, damaged data, sizes over Pillow's
    decompression-bomb limit) returns None and goes through Pillow, which stays the reference.
    """
    simplejpeg = _simplejpeg()
    if simplejpeg is None:
        return None
    from PIL import Image

    try:
        height, width, colour_space, _ = simplejpeg.decode_jpeg_header(data)
        output = _TURBO_OUTPUT.get((colour_space, mode))
        if output is None or (Image.MAX_IMAGE_PIXELS is not None and width * height > Image.MAX_IMAGE_PIXELS):
            return None
        hwc = simplejpeg.decode_jpeg(data, colorspace=output, fastdct=False, fastupsample=False, strict=True)
    except (ValueError, MemoryError):
        return None
    return torch.from_numpy(hwc).permute(2, 0, 1)


# --------------------------------------------------------------------------- errors

_KNOWN_JPEG_MARKERS = frozenset([0x01, *range(0xC0, 0xD0), *range(0xD0, 0xD8), 0xD8, 0xD9, 0xDA,
                                 0xDB, 0xDC, 0xDD, 0xDE, 0xDF, *range(0xE0, 0xF0), 0xFE])


def _jpeg_bad_marker(data: memoryview) -> int | None:
    """The first marker code libjpeg would reject as unknown, scanning headers and entropy data."""
    buf = bytes(data)
    i, n = 2, len(buf)
    in_scan = False
    while i + 1 < n:
        if in_scan:
            j = buf.find(b"\xff", i)
            if j < 0 or j + 1 >= n:
                return None
            code = buf[j + 1]
            if code == 0x00 or code == 0xFF or 0xD0 <= code <= 0xD7:
                i = j + 1
                continue
            i, in_scan = j, False
            continue
        if buf[i] != 0xFF:
            return None
        code = buf[i + 1]
        if code == 0xFF:
            i += 1
            continue
        if code not in _KNOWN_JPEG_MARKERS:
            return code
        if code == 0xD9:
            return None
        if code in (0x01, 0xD8) or 0xD0 <= code <= 0xD7:
            i += 2
            continue
        if i + 4 > n:
            return None
        length = struct.unpack(">H", buf[i + 2 : i + 4])[0]
        i += 2 + length
        if code == 0xDA:
            in_scan = True
    return None


def _decode_error(fmt: str, data: memoryview, exc: BaseException) -> DecodeError:
    # Pillow names the in-memory file it was given, which means nothing to the caller
    message = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "the data", str(exc))
    if fmt == "jpeg":
        marker = _jpeg_bad_marker(data)
        if marker is not None:
            return DecodeError(f"Unsupported marker type 0x{marker:02x} (JPEG data is corrupt: {message})")
        if "truncated" in message.lower():
            return DecodeError(f"Image is incomplete or truncated ({message})")
        return DecodeError(f"JPEG data is corrupt: {message}")
    if fmt == "png":
        if "truncated" in message.lower():
            return DecodeError(f"Out of bound read in decode_png: the PNG data is truncated ({message})")
        return DecodeError(f"PNG data is corrupt: {message}")
    return DecodeError(f"{fmt.upper()} data is corrupt: {message}")


# --------------------------------------------------------------------------- PNG structure

def _check_png(data: memoryview) -> tuple[int, int, bool]:
    """(bit depth, colour type, has a tRNS chunk) of a PNG whose chunks are all complete up to IEND.

    libpng (and so torchvision) fails on a PNG cut short anywhere, while Pillow accepts one that
    lacks only its last bytes; walking the chunk lengths makes gpuvio fail like libpng.
    """
    n = len(data)
    if n < 8:
        raise DecodeError("Content is too small for png!")
    if bytes(data[:8]) != _PNG_SIGNATURE:
        raise UnsupportedFormatError("Content is not png!")
    header: tuple[int, int] | None = None
    transparency = False
    offset = 8
    while True:
        if offset + 8 > n:
            raise DecodeError(
                f"Out of bound read in decode_png: the PNG data ends inside a chunk header at byte {offset}")
        length, kind = struct.unpack_from(">I4s", data, offset)
        end = offset + 12 + length
        if end > n:
            raise DecodeError(
                f"Out of bound read in decode_png: the {kind.decode('latin-1')!r} chunk at byte {offset} "
                f"needs {length} bytes, only {max(n - offset - 12, 0)} are left")
        if kind == b"IHDR" and length >= 13:
            header = (data[offset + 16], data[offset + 17])
        elif kind == b"tRNS":
            transparency = True
        elif kind == b"IEND":
            break
        offset = end
    if header is None:
        raise DecodeError("PNG data is corrupt: it has no IHDR chunk")
    return (*header, transparency)


def _check_pixels(width: int, height: int) -> None:
    """Pillow's decompression-bomb rule (warn above ``PIL.Image.MAX_IMAGE_PIXELS``, refuse above
    twice it), for the decoders that are not Pillow's, applied to the header's size."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > 2 * limit:
        raise ResourceLimitError(
            f"image size ({width}x{height} = {width * height} pixels) exceeds twice the limit of {limit} "
            "pixels (a possible decompression bomb); raise PIL.Image.MAX_IMAGE_PIXELS to allow it")
    if limit is not None and width * height > limit:
        import warnings

        warnings.warn(f"image size ({width * height} pixels) exceeds the limit of {limit} pixels",
                      Image.DecompressionBombWarning, stacklevel=5)


# PNG colour type -> the channels it stores (palette PNGs never take the FFmpeg path)
_PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
_MODE_CHANNELS = {ImageReadMode.GRAY: 1, ImageReadMode.GRAY_ALPHA: 2, ImageReadMode.RGB: 3,
                  ImageReadMode.RGB_ALPHA: 4}
# FFmpeg's pixel format for each (bytes per sample, channels) a PNG decodes to
_FFMPEG_PNG_FORMATS = {"gray": (1, 1), "ya8": (1, 2), "rgb24": (1, 3), "rgba": (1, 4),
                       "gray16be": (2, 1), "ya16be": (2, 2), "rgb48be": (2, 3), "rgba64be": (2, 4)}


def _ffmpeg_decodes_png(bit_depth: int, colour_type: int, transparency: bool, mode: ImageReadMode) -> bool:
    """Whether FFmpeg's PNG decoder serves this file and mode; Pillow does everything else.

    FFmpeg decodes PNGs about 1.5x faster than Pillow (SIMD row filters, no 4-byte pixels) and
    releases the GIL throughout; 16-bit PNGs always go this way, since Pillow keeps only 8 bits
    of their colour. 8-bit files go this way when the result is the file's own channels: no
    palette, no tRNS, no channel conversion (those keep Pillow's established behaviour).
    """
    if bit_depth == 16:
        return True
    stored = _PNG_CHANNELS.get(colour_type)
    return (bit_depth == 8 and stored is not None and not transparency
            and (mode is ImageReadMode.UNCHANGED or _MODE_CHANNELS.get(mode) == stored))


def _decode_png_ffmpeg(data: memoryview, colour_type: int, mode: ImageReadMode) -> torch.Tensor:
    """A PNG through FFmpeg's decoder: ``Tensor[C, H, W]`` uint8, or uint16 for 16-bit files.

    C is the file's channel count, plus alpha from a tRNS colour key (which FFmpeg applies)
    except in ``UNCHANGED``, where libpng leaves the key out. CRCs are checked, so that a corrupt
    chunk fails like libpng instead of giving damaged pixels.
    """
    import av

    # before FFmpeg allocates anything
    _check_pixels(*struct.unpack(">II", bytes(data[16:24])))
    try:
        codec = av.CodecContext.create("png", "r")
        codec.options = {"err_detect": "crccheck+explode"}
        frames = codec.decode(av.Packet(bytes(data))) + codec.decode(None)
    except av.FFmpegError as exc:
        raise _decode_error("png", data, exc) from None
    if not frames:
        raise DecodeError("Out of bound read in decode_png: the PNG data is truncated (no image decoded)")
    frame = frames[0]
    layout = _FFMPEG_PNG_FORMATS.get(frame.format.name)
    if layout is None:
        raise DecodeError(f"unexpected PNG layout {frame.format.name} (colour type {colour_type})")
    size, channels = layout
    plane = frame.planes[0]
    dtype = np.uint8 if size == 1 else np.dtype(">u2")
    rows = np.frombuffer(plane, dtype=dtype).reshape(frame.height, plane.line_size // size)
    hwc = rows[:, : frame.width * channels].reshape(frame.height, frame.width, channels)
    # 8 bits: the tensor views FFmpeg's frame buffer (the array's base keeps the frame alive);
    # 16 bits: one copy, byte-swapped to native order
    image = torch.from_numpy(hwc if size == 1 else hwc.astype(np.uint16)).permute(2, 0, 1)
    stored = _PNG_CHANNELS.get(colour_type, channels)
    return image[:stored] if channels > stored and mode is ImageReadMode.UNCHANGED else image


def _convert_channels(image: torch.Tensor, mode: ImageReadMode) -> torch.Tensor:
    """Mode conversion for a ``Tensor[C, H, W]`` uint8/uint16 decoded outside Pillow, with Pillow's luma weights."""
    channels = image.shape[0]
    if mode is ImageReadMode.UNCHANGED or _MODE_CHANNELS.get(mode) == channels:
        return image
    opaque = 255 if image.dtype == torch.uint8 else 65535
    colour = image[:3] if channels >= 3 else image[:1]
    alpha = image[-1:] if channels in (2, 4) else torch.full_like(image[:1], opaque)
    if mode in (ImageReadMode.GRAY, ImageReadMode.GRAY_ALPHA) and colour.shape[0] == 3:
        c = colour.to(torch.int64)
        colour = ((c[0] * 19595 + c[1] * 38470 + c[2] * 7471 + 0x8000) >> 16)[None].to(image.dtype)
    elif mode in (ImageReadMode.RGB, ImageReadMode.RGB_ALPHA) and colour.shape[0] == 1:
        colour = colour.expand(3, -1, -1)
    if mode in (ImageReadMode.GRAY_ALPHA, ImageReadMode.RGB_ALPHA):
        return torch.cat([colour, alpha])
    return colour.contiguous() if colour.stride(0) == 0 else colour


# --------------------------------------------------------------------------- AVIF and HEIC

def _avif_bit_depth(data: memoryview) -> int:
    """The largest bit depth among the AV1 configurations (``av1C`` boxes) of an AVIF file."""
    depth, buf, start = 8, bytes(data[:1 << 20]), 0
    while (at := buf.find(b"av1C", start)) >= 0 and at + 7 <= len(buf):
        flags = buf[at + 6]  # seq_tier_0, high_bitdepth, twelve_bit, monochrome, ...
        if flags & 0x40:
            depth = max(depth, 12 if flags & 0x20 else 10)
        start = at + 4
    return depth


def _require_pillow_avif() -> None:
    from PIL import features

    if not features.check("avif"):
        raise UnsupportedFormatError(
            "decoding AVIF needs a Pillow built with AVIF support (the Pillow >= 11.3 wheels are)")


def _decode_avif_deep(data: memoryview) -> torch.Tensor:
    """A 10- or 12-bit AVIF (no alpha) through FFmpeg's AV1 decoder: ``Tensor[3, H, W] uint16``.

    Pillow's AVIF decoder gives 8 bits only. The colour conversion is swscale's accurate path with
    the file's matrix and range, scaled to the full 16-bit range (as libavif's 16-bit output is).
    """
    import av

    from ._frames import _accurate_flags

    try:
        with av.open(io.BytesIO(bytes(data)), metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            _check_pixels(stream.codec_context.width, stream.codec_context.height)
            frame = next(container.decode(stream))
            # planar output: swscale's packed rgb48 output mangles colours on this accurate path
            gbr = frame.reformat(format="gbrp16le", interpolation=_accurate_flags(),
                                 src_color_range=frame.color_range or None, dst_color_range="JPEG")
    except (av.FFmpegError, IndexError, StopIteration) as exc:
        raise DecodeError(f"AVIF data is corrupt: {exc or 'no image in it'}") from None
    hwc = np.empty((gbr.height, gbr.width, 3), dtype=np.uint16)
    for channel, plane in zip((1, 2, 0), gbr.planes):  # planes in G, B, R order
        rows = np.frombuffer(plane, dtype="<u2").reshape(gbr.height, plane.line_size // 2)
        hwc[:, :, channel] = rows[:, : gbr.width]
    return torch.from_numpy(hwc).permute(2, 0, 1)


def _decode_heic(data: memoryview) -> torch.Tensor:
    """A HEIC through libheif (``pillow-heif``): ``Tensor[C, H, W]``, C = 3 or 4 (with alpha).

    uint8 for 8-bit files; uint16 for 10/12-bit ones, whose values are shifted to the top of
    the 16 bits (as torchvision does). libheif applies the file's rotation and mirroring.
    """
    try:
        import pillow_heif
    except ImportError:
        raise UnsupportedFormatError(
            "decoding HEIC needs the pillow-heif package: pip install 'gpuvio[heic]'") from None
    try:
        heif = pillow_heif.open_heif(bytes(data), convert_hdr_to_8bit=False)
        width, height = heif.size
    except (ValueError, RuntimeError, OSError, SyntaxError, EOFError) as exc:
        raise DecodeError(f"HEIC data is corrupt: {exc}") from None
    except IndexError:  # pillow-heif found no image in the file
        raise DecodeError("HEIC data is corrupt: it holds no image") from None
    _check_pixels(width, height)  # before libheif decodes: opening reads the header only
    try:
        layout, raw, stride = heif.mode, heif.data, heif.stride
    except (ValueError, RuntimeError, OSError, SyntaxError, EOFError) as exc:
        raise DecodeError(f"HEIC data is corrupt: {exc}") from None
    base, _, bits = layout.partition(";")
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}.get(base)
    if channels is None:
        raise DecodeError(f"unexpected HEIC pixel layout {layout!r}")
    dtype = np.dtype("<u2") if bits == "16" else np.dtype(np.uint8)
    if stride < width * channels * dtype.itemsize or len(raw) < stride * height:
        # libheif decoded another size than the header announced
        raise DecodeError(f"HEIC data is corrupt: {len(raw)} decoded bytes do not hold {width}x{height} {layout}")
    rows = np.frombuffer(raw, dtype=dtype, count=stride * height // dtype.itemsize).reshape(
        height, stride // dtype.itemsize)
    hwc = rows[:, : width * channels].reshape(height, width, channels)
    return torch.from_numpy(hwc.astype(dtype.newbyteorder("="))).permute(2, 0, 1)


# --------------------------------------------------------------------------- decoding

def _open(data: memoryview, fmt: str) -> Any:
    from PIL import Image

    try:
        return Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[fmt]])
    except Image.DecompressionBombError as exc:
        raise ResourceLimitError(f"{exc} Raise PIL.Image.MAX_IMAGE_PIXELS to allow it.") from None
    except (OSError, SyntaxError, ValueError, struct.error, EOFError, RuntimeError) as exc:  # AVIF: RuntimeError
        if fmt == "png" and len(data) < 8:
            raise DecodeError("Content is too small for png!") from None
        raise _decode_error(fmt, data, exc) from None


def _load(im: Any, fmt: str, data: memoryview) -> None:
    from PIL import Image

    # one read and one decoder call for the whole file instead of 64 KiB pieces
    im.decodermaxblock = max(len(data), 65536)
    try:
        im.load()
    except Image.DecompressionBombError as exc:
        raise ResourceLimitError(str(exc)) from None
    except (OSError, SyntaxError, ValueError, struct.error, EOFError, IndexError, RuntimeError) as exc:
        raise _decode_error(fmt, data, exc) from None


def _target_mode(im: Any, mode: ImageReadMode) -> str:
    """The Pillow mode the result is taken from (before loading; JPEG drafts already applied)."""
    if mode is not ImageReadMode.UNCHANGED:
        return _TARGET[mode]
    if im.mode in _CHANNELS:
        return im.mode
    if im.mode == "1":
        return "L"
    if im.mode in ("PA", "RGBa", "La") or "transparency" in im.info:
        return "RGBA"
    return "RGB"


def _convert(im: Any, target: str) -> Any:
    """Bring a loaded image to Pillow mode ``target``."""
    if im.mode == target:
        return im
    if im.mode == "1":
        im = im.convert("L")  # 0/255
    # palette and tRNS transparency only survive a conversion through RGBA; a palette with
    # transparency goes that way for every mode, which gives the same colours and spares the
    # user Pillow's warning about converting it directly
    if im.mode != "RGBA" and ((target in ("LA", "RGBA") and (im.mode == "P" or "transparency" in im.info))
                              or (im.mode == "P" and "transparency" in im.info)):
        im = im.convert("RGBA")
    return im if im.mode == target else im.convert(target)


def _orientation(im: Any) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block must not fail the decode itself
        return 1
    return value if isinstance(value, int) else 1


# formats whose result is packed (torchvision's channels-last memory, which its tests check); for
# JPEG and PNG the zero-copy view of Pillow's 4-byte pixels is kept (see the module docstring)
_PACKED_FORMATS = frozenset({"gif", "webp", "avif", "heic"})


def _packed(image: torch.Tensor) -> torch.Tensor:
    """``image`` (``[C, H, W]`` or ``[N, C, H, W]``) in packed channels-last memory, copied only if needed."""
    batch = image if image.dim() == 4 else image[None]
    if batch.is_contiguous(memory_format=torch.channels_last):
        return image
    packed = batch.contiguous(memory_format=torch.channels_last)
    return packed if image.dim() == 4 else packed[0]


def _decode(data: memoryview, fmt: str, mode: ImageReadMode, apply_exif_orientation: bool) -> torch.Tensor:
    """:func:`decode` before its packing step."""
    if fmt == "png":
        bit_depth, colour_type, transparency = _check_png(data)
        if _ffmpeg_decodes_png(bit_depth, colour_type, transparency, mode):
            image = _convert_channels(_decode_png_ffmpeg(data, colour_type, mode), mode)
            if apply_exif_orientation:
                image = apply_orientation(image, exif_orientation(data))
            return image
    if fmt == "jpeg":
        image = _decode_jpeg_turbo(data, mode)
        if image is not None:
            if apply_exif_orientation:
                image = apply_orientation(image, exif_orientation(data))
            return image
    if fmt == "heic":
        return _convert_channels(_decode_heic(data), mode)
    if fmt == "avif":
        _require_pillow_avif()
    im = _open(data, fmt)
    try:
        if fmt == "gif":
            return _decode_gif(im, mode, data)
        if fmt == "avif" and getattr(im, "n_frames", 1) > 1:
            raise DecodeError(f"the AVIF file holds {im.n_frames} images (an animation); decode it as a video")
        if fmt == "avif" and (depth := _avif_bit_depth(data)) > 8:
            if im.mode not in ("RGB", "L"):
                raise UnsupportedFormatError(
                    f"{depth}-bit AVIF with alpha is not supported (8-bit AVIF and 10/12-bit AVIF "
                    "without alpha are)")
            image = _convert_channels(_decode_avif_deep(data), mode)
            orientation = _orientation(im) if apply_exif_orientation else 1
            return apply_orientation(image, orientation) if orientation != 1 else image
        if fmt == "jpeg":
            _prepare_jpeg(im, mode)
        target = _target_mode(im, mode)
        buffer = _decode_into_tensor(im) if target == im.mode and fmt in ("jpeg", "png") else None
        core = im.im if buffer is not None else None
        _load(im, fmt, data)
        if buffer is not None and im.im is core:
            image = _bands(buffer, target)
        else:
            image = pil_to_tensor(_convert(im, target))
        orientation = _orientation(im) if apply_exif_orientation else 1
    finally:
        im.close()
    return apply_orientation(image, orientation) if orientation != 1 else image


def decode(data: memoryview, fmt: str, mode: ImageReadMode, apply_exif_orientation: bool) -> torch.Tensor:
    """Decode one encoded image of a known format.

    Returns:
        ``Tensor[C, H, W]`` uint8 (uint16 for 16-bit PNG and 10/12-bit AVIF and HEIC), or
        ``Tensor[N, C, H, W]`` for an animated GIF. GIF, WebP, AVIF and HEIC results are packed
        channels-last memory, like torchvision's.
    """
    image = _decode(data, fmt, mode, apply_exif_orientation)
    return _packed(image) if fmt in _PACKED_FORMATS else image


def _decode_gif(im: Any, mode: ImageReadMode, data: memoryview) -> torch.Tensor:
    """Every frame of a GIF, composited by Pillow; RGB in ``UNCHANGED``, like torchvision.

    Returns ``Tensor[C, H, W]`` for a single frame, else ``Tensor[N, C, H, W]`` (channels-last).
    """
    target = "RGB" if mode is ImageReadMode.UNCHANGED else _TARGET[mode]
    count = getattr(im, "n_frames", 1)
    out: torch.Tensor | None = None
    for index in range(count):
        try:
            im.seek(index)
        except EOFError as exc:
            raise _decode_error("gif", data, exc) from None
        _load(im, "gif", data)
        frame = pil_to_tensor(_convert(im, target))
        if count == 1:
            return frame
        if out is None:
            out = torch.empty((count, *frame.shape[1:], frame.shape[0]), dtype=torch.uint8)
        # copied now: the frame may view the image's own memory, which the next seek overwrites
        out[index].copy_(frame.permute(1, 2, 0))
    assert out is not None
    return out.permute(0, 3, 1, 2)


# --------------------------------------------------------------------------- encoding

def _to_pillow(image: torch.Tensor) -> Any:
    """A Pillow image of a ``Tensor[C, H, W] uint8`` (C = 1 or 3), in as few copies as possible."""
    from PIL import Image

    height, width = image.shape[1:]
    hwc_view = image.permute(1, 2, 0)
    if hwc_view.is_contiguous():  # e.g. a decoded image: channels-last memory already
        hwc = hwc_view.numpy()
        return Image.fromarray(hwc[:, :, 0], "L") if hwc.shape[2] == 1 else Image.fromarray(hwc, "RGB")
    # Planar memory: Pillow wraps each plane without a copy and interleaves them straight into
    # its own 4-byte pixels, one pass (4x faster at 1080p than packing an RGB array first)
    chw = image.contiguous().numpy()
    planes = [Image.frombuffer("L", (width, height), plane, "raw", "L", 0, 1) for plane in chw]
    return planes[0] if len(planes) == 1 else Image.merge("RGB", planes)


def encode_jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """``Tensor[N] uint8`` JPEG bytes of a ``Tensor[C, H, W] uint8`` (C = 1 or 3), as Pillow writes them."""
    out = io.BytesIO()
    try:
        _to_pillow(image).save(out, format="JPEG", quality=quality)
    except (OSError, ValueError) as exc:
        raise InvalidArgumentError(f"JPEG encoding failed: {exc}") from None
    return torch.frombuffer(bytearray(out.getbuffer()), dtype=torch.uint8)


def encode_png(image: torch.Tensor, compression_level: int) -> torch.Tensor:
    """``Tensor[N] uint8`` PNG bytes of a ``Tensor[C, H, W] uint8`` (C = 1 or 3)."""
    out = io.BytesIO()
    _to_pillow(image).save(out, format="PNG", compress_level=compression_level)
    return torch.frombuffer(bytearray(out.getbuffer()), dtype=torch.uint8)
