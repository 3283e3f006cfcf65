"""Image decoding and encoding on the CPU with Pillow (and FFmpeg's PNG decoder for 16-bit PNGs).

This is the reference behaviour every image backend reproduces:

* Output is ``Tensor[C, H, W]``: uint8, or uint16 for 16-bit PNGs. Like torchvision, the tensor
  is a channels-first *view* of channels-last memory.
* ``UNCHANGED`` keeps the file's channels: gray 1, gray+alpha 2, RGB 3, RGBA or CMYK 4; a palette
  PNG gives its palette indices. ``GRAY`` uses libjpeg's own luma for JPEGs and Pillow's
  ITU-R 601-2 luma otherwise; ``RGB``/``GRAY`` drop alpha; ``*_ALPHA`` modes add an opaque alpha
  where the file has none (transparency chunks of palette and gray PNGs are honoured).
* Pillow's errors become torchvision's: ``RuntimeError("Image is incomplete or truncated")``
  for a truncated JPEG, ``"Unsupported marker type 0x.."`` for a corrupt one, and so on.
"""

from __future__ import annotations

import ctypes
import io
import struct
from typing import Any

import numpy as np
import torch

from gpuvio._errors import DecodeError, InvalidArgumentError, ResourceLimitError, UnsupportedFormatError
from gpuvio._orientation import apply_orientation, exif_orientation
from gpuvio._types import ImageReadMode

__all__ = ["decode", "encode_jpeg", "encode_png"]

_PIL_FORMAT = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP"}
_CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4, "P": 1}
# Pillow stores RGB and LA in 4 bytes per pixel; these are the byte offsets of their channels.
_ARROW_BANDS = {"L": (0,), "P": (0,), "LA": (0, 3), "RGB": (0, 1, 2), "RGBA": (0, 1, 2, 3),
                "CMYK": (0, 1, 2, 3)}


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


def pil_to_tensor(im: Any) -> torch.Tensor:
    """``Tensor[C, H, W] uint8`` from a loaded Pillow image of mode L, LA, P, RGB, RGBA or CMYK."""
    channels = _CHANNELS[im.mode]
    hwc = _zero_copy_hwc(im)
    if hwc is not None:
        bands = _ARROW_BANDS[im.mode]
        tensor = torch.from_numpy(hwc)
        if len(bands) == hwc.shape[2]:
            out = tensor
        elif bands == (0, 3):
            out = tensor[:, :, ::3]
        else:
            out = tensor[:, :, : len(bands)]
        return out.permute(2, 0, 1)
    width, height = im.size
    data = bytearray(im.tobytes())
    return torch.frombuffer(data, dtype=torch.uint8).view(height, width, channels).permute(2, 0, 1)


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
    message = str(exc)
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


# --------------------------------------------------------------------------- decoding

def _open(data: memoryview, fmt: str) -> Any:
    from PIL import Image

    try:
        return Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[fmt]])
    except Image.DecompressionBombError as exc:
        raise ResourceLimitError(f"{exc} Raise PIL.Image.MAX_IMAGE_PIXELS to allow it.") from None
    except (OSError, SyntaxError, ValueError, struct.error, EOFError) as exc:
        if fmt == "png" and len(data) < 8:
            raise DecodeError("Content is too small for png!") from None
        raise _decode_error(fmt, data, exc) from None


def _load(im: Any, fmt: str, data: memoryview) -> None:
    from PIL import Image

    try:
        im.load()
    except Image.DecompressionBombError as exc:
        raise ResourceLimitError(str(exc)) from None
    except (OSError, SyntaxError, ValueError, struct.error, EOFError, IndexError) as exc:
        raise _decode_error(fmt, data, exc) from None


def _convert(im: Any, mode: ImageReadMode, fmt: str) -> Any:
    """Bring a loaded image to the Pillow mode that ``mode`` asks for."""
    if im.mode == "1":
        im = im.convert("L")
    if mode is ImageReadMode.UNCHANGED:
        if im.mode in _CHANNELS:
            return im
        if im.mode in ("PA", "RGBa", "La") or "transparency" in im.info:
            return im.convert("RGBA")
        return im.convert("RGB")
    # transparency stored beside palette/gray/RGB pixels only survives a conversion via RGBA
    wants_alpha = mode in (ImageReadMode.GRAY_ALPHA, ImageReadMode.RGB_ALPHA)
    if wants_alpha and (im.mode == "P" or "transparency" in im.info) and im.mode != "RGBA":
        im = im.convert("RGBA")
    target = {ImageReadMode.GRAY: "L", ImageReadMode.GRAY_ALPHA: "LA",
              ImageReadMode.RGB: "RGB", ImageReadMode.RGB_ALPHA: "RGBA"}[mode]
    return im if im.mode == target else im.convert(target)


def _png_header(data: memoryview) -> tuple[int, int] | None:
    """(bit depth, colour type) from a PNG's IHDR, or None if it is unreadable."""
    if len(data) < 33 or bytes(data[12:16]) != b"IHDR":
        return None
    return data[24], data[25]


def _decode_png16(data: memoryview, colour_type: int) -> torch.Tensor:
    """A 16-bit PNG through FFmpeg's PNG decoder (Pillow keeps only 8 bits of colour PNGs)."""
    import av

    try:
        codec = av.CodecContext.create("png", "r")
        frames = codec.decode(av.Packet(bytes(data))) + codec.decode(None)
    except av.FFmpegError as exc:
        raise _decode_error("png", data, exc) from None
    if not frames:
        raise DecodeError("Out of bound read in decode_png: the PNG data is truncated (no image decoded)")
    frame = frames[0]
    channels = {"gray16be": 1, "ya16be": 2, "rgb48be": 3, "rgba64be": 4}.get(frame.format.name)
    if channels is None:
        raise DecodeError(f"unexpected 16-bit PNG layout {frame.format.name} (colour type {colour_type})")
    plane = frame.planes[0]
    rows = np.frombuffer(plane, dtype=">u2").reshape(frame.height, plane.line_size // 2)
    hwc = rows[:, : frame.width * channels].reshape(frame.height, frame.width, channels)
    return torch.from_numpy(hwc.astype(np.uint16)).permute(2, 0, 1)


def _convert16(image: torch.Tensor, mode: ImageReadMode) -> torch.Tensor:
    """Mode conversion for ``Tensor[C, H, W] uint16``, with Pillow's luma weights."""
    if mode is ImageReadMode.UNCHANGED:
        return image
    channels = image.shape[0]
    colour = image[:3] if channels >= 3 else image[:1]
    alpha = image[-1:] if channels in (2, 4) else torch.full_like(image[:1], 65535)
    if mode in (ImageReadMode.GRAY, ImageReadMode.GRAY_ALPHA) and colour.shape[0] == 3:
        c = colour.to(torch.int64)
        colour = ((c[0] * 19595 + c[1] * 38470 + c[2] * 7471 + 0x8000) >> 16)[None].to(torch.uint16)
    elif mode in (ImageReadMode.RGB, ImageReadMode.RGB_ALPHA) and colour.shape[0] == 1:
        colour = colour.expand(3, -1, -1)
    if mode in (ImageReadMode.GRAY_ALPHA, ImageReadMode.RGB_ALPHA):
        return torch.cat([colour, alpha])
    return colour.contiguous() if colour.stride(0) == 0 else colour


def decode(data: memoryview, fmt: str, mode: ImageReadMode, apply_exif_orientation: bool) -> torch.Tensor:
    """Decode one encoded image of a known format.

    Returns:
        ``Tensor[C, H, W]`` uint8 (uint16 for 16-bit PNG), or ``Tensor[N, C, H, W]`` for an
        animated GIF.
    """
    if fmt == "png":
        if len(data) < 8:
            raise DecodeError("Content is too small for png!")
        if bytes(data[:8]) != b"\x89PNG\r\n\x1a\n":
            raise UnsupportedFormatError("Content is not png!")
        header = _png_header(data)
        if header is not None and header[0] == 16:
            image = _convert16(_decode_png16(data, header[1]), mode)
            if apply_exif_orientation:
                image = apply_orientation(image, exif_orientation(data))
            return image
    im = _open(data, fmt)
    try:
        if fmt == "jpeg" and mode is ImageReadMode.GRAY and im.mode in ("RGB", "YCbCr"):
            # libjpeg's grayscale output is the Y channel itself, as torchvision returns it
            im.draft("L", im.size)
        if fmt == "gif" and getattr(im, "n_frames", 1) > 1:
            return _decode_animation(im, mode, data)
        _load(im, fmt, data)
        orientation = 1
        if apply_exif_orientation:
            orientation = im.getexif().get(0x0112, 1)
        converted = _convert(im, mode, fmt)
        image = pil_to_tensor(converted)
    finally:
        im.close()
    if apply_exif_orientation and orientation != 1:
        image = apply_orientation(image, orientation if isinstance(orientation, int) else 1)
    return image


def _decode_animation(im: Any, mode: ImageReadMode, data: memoryview) -> torch.Tensor:
    frames = []
    for index in range(im.n_frames):
        try:
            im.seek(index)
        except EOFError as exc:
            raise _decode_error("gif", data, exc) from None
        _load(im, "gif", data)
        target = ImageReadMode.RGB if mode is ImageReadMode.UNCHANGED else mode
        frames.append(pil_to_tensor(_convert(im, target, "gif")).contiguous())
    return torch.stack(frames)


# --------------------------------------------------------------------------- encoding

def _to_pillow(image: torch.Tensor) -> Any:
    from PIL import Image

    hwc = image.permute(1, 2, 0).contiguous().numpy()
    if hwc.shape[2] == 1:
        return Image.fromarray(hwc[:, :, 0], "L")
    return Image.fromarray(hwc, "RGB")


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
