"""Shared types: image read modes, device and source specifications."""

from __future__ import annotations

import enum
import os
from typing import TYPE_CHECKING, Literal, Union

if TYPE_CHECKING:
    import torch

__all__ = ["COLOR_POLICIES", "ColorPolicy", "DeviceLike", "ImageReadMode", "PtsUnit", "Source", "check_color"]


class ImageReadMode(enum.Enum):
    """How decoded image channels are arranged.

    ``UNCHANGED`` keeps the file's own layout (1 channel for grayscale, 2 for grayscale + alpha,
    3 for RGB, 4 for RGBA or CMYK; palette images give their palette indices). The others
    convert: ``GRAY`` -> 1, ``GRAY_ALPHA`` -> 2, ``RGB`` -> 3, ``RGB_ALPHA`` -> 4 channels.
    Strings such as ``"RGB"`` or ``"gray_alpha"`` are accepted wherever a mode is.
    """

    UNCHANGED = 0
    GRAY = 1
    GRAY_ALPHA = 2
    RGB = 3
    RGB_ALPHA = 4
    # torchvision's alias for RGB_ALPHA
    RGBA = 4

    @classmethod
    def parse(cls, mode: ImageReadMode | str) -> ImageReadMode:
        """Turn an enum member or its name (any case) into a member."""
        if isinstance(mode, cls):
            return mode
        if isinstance(mode, str):
            member = cls.__members__.get(mode.upper())
            if member is not None:
                return member
        from ._errors import InvalidArgumentError

        allowed = ", ".join(m for m in cls.__members__ if m != "RGBA")
        raise InvalidArgumentError(f"mode must be an ImageReadMode or one of {allowed}; got {mode!r}")


#: Where results go: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` or a ``torch.device``.
DeviceLike = Union[str, "torch.device"]

#: How decoded video is turned into RGB (``color=``). ``"torchvision"`` (default): torchvision
#: 0.8's pixels, i.e. PyAV's ``frame.to_rgb()`` (swscale's default conversion), which plain PyAV
#: and torchcodec's CPU decoder give too. ``"accurate"``: bilinear chroma upsampling at the
#: codec's chroma siting and exact rounding (see ``gpuvio/_color.py``): a few levels closer to
#: the source at sharp colour edges, and different from torchvision's pixels.
ColorPolicy = Literal["torchvision", "accurate"]
COLOR_POLICIES: tuple[str, ...] = ("torchvision", "accurate")


def check_color(color: object) -> ColorPolicy:
    """``color`` itself if it is a colour policy; InvalidArgumentError naming the choices if not."""
    if color not in COLOR_POLICIES:
        from ._errors import InvalidArgumentError

        raise InvalidArgumentError(f"color must be one of {', '.join(map(repr, COLOR_POLICIES))}; got {color!r}")
    return color  # type: ignore[return-value]


#: Unit of the start and end times of :func:`gpuvio.read_video`.
PtsUnit = Literal["pts", "sec"]

#: Encoded media: a path, raw bytes, or a 1-D uint8 tensor of the file's bytes.
Source = Union[str, os.PathLike, bytes, bytearray, memoryview, "torch.Tensor"]
