"""Channels and memory layout of decoded image tensors, for the decoders that are not Pillow's
(FFmpeg's PNG and AV1 decoders, libheif), and the packing step some formats get."""

from __future__ import annotations

import torch

from gpuvio._types import ImageReadMode

__all__ = ["MODE_CHANNELS", "PACKED_FORMATS", "convert_channels", "pack_channels_last"]

MODE_CHANNELS = {ImageReadMode.GRAY: 1, ImageReadMode.GRAY_ALPHA: 2, ImageReadMode.RGB: 3,
                 ImageReadMode.RGB_ALPHA: 4}


def convert_channels(image: torch.Tensor, mode: ImageReadMode) -> torch.Tensor:
    """Mode conversion for a ``Tensor[C, H, W]`` uint8/uint16 decoded outside Pillow, with Pillow's luma weights."""
    channels = image.shape[0]
    if mode is ImageReadMode.UNCHANGED or MODE_CHANNELS.get(mode) == channels:
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


# JPEG and PNG the zero-copy view of Pillow's 4-byte pixels is kept (see the module docstring)
PACKED_FORMATS = frozenset({"gif", "webp", "avif", "heic"})


def pack_channels_last(image: torch.Tensor) -> torch.Tensor:
    """``image`` (``[C, H, W]`` or ``[N, C, H, W]``) in packed channels-last memory, copied only if needed."""
    batch = image if image.dim() == 4 else image[None]
    if batch.is_contiguous(memory_format=torch.channels_last):
        return image
    packed = batch.contiguous(memory_format=torch.channels_last)
    return packed if image.dim() == 4 else packed[0]
