"""What every CPU image decoder shares when things go wrong: torchvision's error messages for a
library's exception, and Pillow's decompression-bomb limit for the decoders that are not Pillow's."""

from __future__ import annotations

import re

from gpuvio._errors import DecodeError, ResourceLimitError
from gpuvio._jpeg import first_bad_marker

__all__ = ["check_pixels", "decode_error"]


def decode_error(fmt: str, data: memoryview, exc: BaseException) -> DecodeError:
    """The :class:`DecodeError` torchvision would raise for ``exc``, a decoder library's failure on ``data``."""
    # Pillow names the in-memory file it was given, which means nothing to the caller
    message = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "the data", str(exc))
    if fmt == "jpeg":
        marker = first_bad_marker(data)
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


def check_pixels(width: int, height: int) -> None:
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
