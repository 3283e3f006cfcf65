"""Pillow's side of the CPU image decoder: opening and loading files, mode conversion, GIF
frames, and getting Pillow's pixels into tensors without copying them where that can be done.

Two ways out of Pillow without a copy: :func:`decode_into_tensor` points a not yet loaded image
at tensor memory, so that the decoder writes there; :func:`pil_to_tensor` views the memory of a
loaded image through the Arrow C data interface. Both give Pillow's pixel layout: 1 byte per
pixel for L and P, 4 for the other modes (so RGB and LA views skip the unused bytes).
"""

from __future__ import annotations

import ctypes
import functools
import io
import struct
from typing import Any

import numpy as np
import torch

from gpuvio._errors import DecodeError, ResourceLimitError
from gpuvio._types import ImageReadMode

from ._image_checks import decode_error

__all__ = ["bands", "convert", "decode_gif", "decode_into_tensor", "load_image", "open_image",
           "pil_orientation", "pil_to_tensor", "prepare_jpeg", "target_mode"]

_PIL_FORMAT = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP", "avif": "AVIF"}
_CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4, "P": 1}
# Pillow stores RGB and LA in 4 bytes per pixel; these are the byte offsets of their channels.
_ARROW_BANDS = {"L": (0,), "P": (0,), "LA": (0, 3), "RGB": (0, 1, 2), "RGBA": (0, 1, 2, 3),
                "CMYK": (0, 1, 2, 3)}
_TARGET = {ImageReadMode.GRAY: "L", ImageReadMode.GRAY_ALPHA: "LA", ImageReadMode.RGB: "RGB",
           ImageReadMode.RGB_ALPHA: "RGBA"}


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


def bands(hwc: torch.Tensor, mode: str) -> torch.Tensor:
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
        return bands(torch.from_numpy(hwc), im.mode)
    width, height = im.size
    data = bytearray(im.tobytes())
    return torch.frombuffer(data, dtype=torch.uint8).view(height, width, _CHANNELS[im.mode]).permute(2, 0, 1)


# --------------------------------------------------------------------------- decoding into torch memory

# Modes whose Pillow pixel layout a decoder can write straight into a tensor: 1 byte (L, P) or
# 4 bytes (the rest) per pixel.
_MAPPABLE = frozenset({"L", "P", "LA", "RGB", "RGBA", "CMYK"})


def decode_into_tensor(im: Any) -> torch.Tensor | None:
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


def prepare_jpeg(im: Any, mode: ImageReadMode) -> None:
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


# --------------------------------------------------------------------------- opening, loading, converting

def open_image(data: memoryview, fmt: str) -> Any:
    """A Pillow image of ``data`` (its header read, its pixels not yet), for format ``fmt``."""
    from PIL import Image

    try:
        return Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[fmt]])
    except Image.DecompressionBombError as exc:
        raise ResourceLimitError(f"{exc} Raise PIL.Image.MAX_IMAGE_PIXELS to allow it.") from None
    except (OSError, SyntaxError, ValueError, struct.error, EOFError, RuntimeError) as exc:  # AVIF: RuntimeError
        if fmt == "png" and len(data) < 8:
            raise DecodeError("Content is too small for png!") from None
        raise decode_error(fmt, data, exc) from None


def load_image(im: Any, fmt: str, data: memoryview) -> None:
    """Decode the pixels of an image from :func:`open_image`, with torchvision's errors."""
    from PIL import Image

    # one read and one decoder call for the whole file instead of 64 KiB pieces
    im.decodermaxblock = max(len(data), 65536)
    try:
        im.load()
    except Image.DecompressionBombError as exc:
        raise ResourceLimitError(str(exc)) from None
    except (OSError, SyntaxError, ValueError, struct.error, EOFError, IndexError, RuntimeError) as exc:
        raise decode_error(fmt, data, exc) from None


def target_mode(im: Any, mode: ImageReadMode) -> str:
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


def convert(im: Any, target: str) -> Any:
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


def pil_orientation(im: Any) -> int:
    """The EXIF orientation Pillow read from an open image, 1 when absent or unreadable."""
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block must not fail the decode itself
        return 1
    return value if isinstance(value, int) else 1


# formats whose result is packed (torchvision's channels-last memory, which its tests check); for


def decode_gif(im: Any, mode: ImageReadMode, data: memoryview) -> torch.Tensor:
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
            raise decode_error("gif", data, exc) from None
        load_image(im, "gif", data)
        frame = pil_to_tensor(convert(im, target))
        if count == 1:
            return frame
        if out is None:
            out = torch.empty((count, *frame.shape[1:], frame.shape[0]), dtype=torch.uint8)
        # copied now: the frame may view the image's own memory, which the next seek overwrites
        out[index].copy_(frame.permute(1, 2, 0))
    assert out is not None
    return out.permute(0, 3, 1, 2)
