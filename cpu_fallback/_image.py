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

The decoder is split by concern: this module picks the path for each file (:func:`decode`); the
Pillow path is in ``_image_pillow``, PNG's chunk check and FFmpeg decoder in ``_image_png``, the
libjpeg-turbo fast path in ``_jpeg_turbo``, AVIF and HEIC in ``_image_heif``, channel conversion
and packing in ``_image_layout``, torchvision's error messages in ``_image_checks``, and the
encoders in ``_image_encode``. The JPEG marker walk itself is :mod:`gpuvio._jpeg`.
"""

from __future__ import annotations

import torch

from gpuvio._errors import DecodeError, UnsupportedFormatError
from gpuvio._orientation import apply_orientation, exif_orientation
from gpuvio._types import ImageReadMode

from ._image_encode import encode_jpeg, encode_png
from ._image_heif import avif_bit_depth, decode_avif_deep, decode_heic, require_pillow_avif
from ._image_layout import PACKED_FORMATS, convert_channels, pack_channels_last
from ._image_pillow import (
    bands,
    convert,
    decode_gif,
    decode_into_tensor,
    load_image,
    open_image,
    pil_orientation,
    pil_to_tensor,
    prepare_jpeg,
    target_mode,
)
from ._image_png import check_png, decode_png_ffmpeg, ffmpeg_decodes_png

# called through this module's name, so that a test can turn the fast path off by patching it here
from ._jpeg_turbo import decode_jpeg_turbo as _decode_jpeg_turbo

__all__ = ["decode", "encode_jpeg", "encode_png", "pil_to_tensor"]


def _decode(data: memoryview, fmt: str, mode: ImageReadMode, apply_exif_orientation: bool) -> torch.Tensor:
    """:func:`decode` before its packing step."""
    if fmt == "png":
        bit_depth, colour_type, transparency = check_png(data)
        if ffmpeg_decodes_png(bit_depth, colour_type, transparency, mode):
            image = convert_channels(decode_png_ffmpeg(data, colour_type, mode), mode)
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
        return convert_channels(decode_heic(data), mode)
    if fmt == "avif":
        require_pillow_avif()
    im = open_image(data, fmt)
    try:
        if fmt == "gif":
            return decode_gif(im, mode, data)
        if fmt == "avif" and getattr(im, "n_frames", 1) > 1:
            raise DecodeError(f"the AVIF file holds {im.n_frames} images (an animation); decode it as a video")
        if fmt == "avif" and (depth := avif_bit_depth(data)) > 8:
            if im.mode not in ("RGB", "L"):
                raise UnsupportedFormatError(
                    f"{depth}-bit AVIF with alpha is not supported (8-bit AVIF and 10/12-bit AVIF "
                    "without alpha are)")
            image = convert_channels(decode_avif_deep(data), mode)
            orientation = pil_orientation(im) if apply_exif_orientation else 1
            return apply_orientation(image, orientation) if orientation != 1 else image
        if fmt == "jpeg":
            prepare_jpeg(im, mode)
        target = target_mode(im, mode)
        buffer = decode_into_tensor(im) if target == im.mode and fmt in ("jpeg", "png") else None
        core = im.im if buffer is not None else None
        load_image(im, fmt, data)
        if buffer is not None and im.im is core:
            image = bands(buffer, target)
        else:
            image = pil_to_tensor(convert(im, target))
        orientation = pil_orientation(im) if apply_exif_orientation else 1
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
    return pack_channels_last(image) if fmt in PACKED_FORMATS else image


