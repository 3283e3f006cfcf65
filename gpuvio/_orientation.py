"""EXIF orientation: read the tag and apply it to a ``[..., C, H, W]`` tensor on any device."""

from __future__ import annotations

import io

import torch

__all__ = ["apply_orientation", "exif_orientation"]


def exif_orientation(data: bytes | memoryview) -> int:
    """The EXIF orientation (1..8) of an encoded JPEG/PNG/WebP, 1 when absent or unreadable."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            value = image.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block must not fail the decode itself
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def apply_orientation(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Turn an image stored with EXIF ``orientation`` upright, as Pillow's ``exif_transpose`` does.

    ``image`` is ``Tensor[..., C, H, W]``; the result is a view or a new tensor of the same dtype.
    """
    h, w = image.dim() - 2, image.dim() - 1
    if orientation == 2:
        return image.flip(w)
    if orientation == 3:
        return image.flip(h, w)
    if orientation == 4:
        return image.flip(h)
    if orientation == 5:
        return image.transpose(h, w)
    if orientation == 6:
        return image.transpose(h, w).flip(w)
    if orientation == 7:
        return image.transpose(h, w).flip(h, w)
    if orientation == 8:
        return image.transpose(h, w).flip(h)
    return image
