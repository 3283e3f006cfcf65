"""Recognising encoded image formats from their first bytes, as torchvision does."""

from __future__ import annotations

from typing import Literal

__all__ = ["ImageFormat", "SUPPORTED_IMAGE_FORMATS", "sniff_image_format"]

ImageFormat = Literal["jpeg", "png", "gif", "webp"]
SUPPORTED_IMAGE_FORMATS = ("jpeg", "png", "gif", "webp")


def sniff_image_format(data: memoryview | bytes) -> ImageFormat | None:
    """The format of encoded image bytes, or ``None`` if it is none of the supported ones.

    Like torchvision, three bytes identify a JPEG (``FF D8 FF``) and four a PNG (``\\x89PNG``);
    a PNG too short to hold its signature is then reported by the PNG decoder.
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
    return None
