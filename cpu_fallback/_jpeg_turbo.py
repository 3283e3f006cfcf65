"""The optional libjpeg-turbo fast path for JPEGs (the ``simplejpeg`` package), straight into
packed tensor memory. Pillow stays the reference: this path only takes files and modes where it
gives Pillow's pixels exactly."""

from __future__ import annotations

import functools
from typing import Any

import torch

from gpuvio._types import ImageReadMode

__all__ = ["decode_jpeg_turbo"]


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


def decode_jpeg_turbo(data: memoryview, mode: ImageReadMode) -> torch.Tensor | None:
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
