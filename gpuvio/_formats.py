"""Recognising encoded image formats from their first bytes, as torchvision does."""

from __future__ import annotations

import struct
from typing import Literal

__all__ = ["ImageFormat", "SUPPORTED_IMAGE_FORMATS", "sniff_image_format"]

ImageFormat = Literal["jpeg", "png", "gif", "webp", "avif", "heic"]
SUPPORTED_IMAGE_FORMATS: tuple[ImageFormat, ...] = ("jpeg", "png", "gif", "webp", "avif", "heic")

# ISO-BMFF (HEIF) brands of still images and image sequences; a video MP4's brands are others
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})


def _heif_brand(data: memoryview | bytes) -> ImageFormat | None:
    """``"avif"`` or ``"heic"`` from the brands of a leading ``ftyp`` box, else None."""
    head = bytes(data[:64])
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    size = min(struct.unpack(">I", head[:4])[0], len(head))
    brands = {head[8:12]} | {head[i : i + 4] for i in range(16, size - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "avif"
    if brands & _HEIC_BRANDS:
        return "heic"
    return None


def sniff_image_format(data: memoryview | bytes) -> ImageFormat | None:
    """The format of encoded image bytes, or ``None`` if it is none of the supported ones.

    Like torchvision, three bytes identify a JPEG (``FF D8 FF``) and four a PNG (``\\x89PNG``);
    a PNG too short to hold its signature is then reported by the PNG decoder. AVIF and HEIC are
    told apart by the brands of their ``ftyp`` box (an AVIF brand wins when both appear).
    """
    head = bytes(data[:12])
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:4] == b"\x89PNG":
        return "png"
    if head[:4] == b"GIF8":
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return _heif_brand(data)
