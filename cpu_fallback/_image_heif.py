"""AVIF and HEIC on the CPU: Pillow's libavif for 8-bit AVIF (through the Pillow path), FFmpeg's
AV1 decoder for 10/12-bit AVIF, and libheif (``pillow-heif``) for HEIC."""

from __future__ import annotations

import io

import numpy as np
import torch

from gpuvio._errors import DecodeError, UnsupportedFormatError

from ._image_checks import check_pixels

__all__ = ["avif_bit_depth", "decode_avif_deep", "decode_heic", "require_pillow_avif"]


def avif_bit_depth(data: memoryview) -> int:
    """The largest bit depth among the AV1 configurations (``av1C`` boxes) of an AVIF file."""
    depth, buf, start = 8, bytes(data[:1 << 20]), 0
    while (at := buf.find(b"av1C", start)) >= 0 and at + 7 <= len(buf):
        flags = buf[at + 6]  # seq_tier_0, high_bitdepth, twelve_bit, monochrome, ...
        if flags & 0x40:
            depth = max(depth, 12 if flags & 0x20 else 10)
        start = at + 4
    return depth


def require_pillow_avif() -> None:
    from PIL import features

    if not features.check("avif"):
        raise UnsupportedFormatError(
            "decoding AVIF needs a Pillow built with AVIF support (the Pillow >= 11.3 wheels are)")


def decode_avif_deep(data: memoryview) -> torch.Tensor:
    """A 10- or 12-bit AVIF (no alpha) through FFmpeg's AV1 decoder: ``Tensor[3, H, W] uint16``.

    Pillow's AVIF decoder gives 8 bits only. The colour conversion is swscale's accurate path with
    the file's matrix and range, scaled to the full 16-bit range (as libavif's 16-bit output is).
    """
    import av

    from ._frames import _accurate_flags

    try:
        with av.open(io.BytesIO(bytes(data)), metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            check_pixels(stream.codec_context.width, stream.codec_context.height)
            frame = next(container.decode(stream))
            # planar output: swscale's packed rgb48 output mangles colours on this accurate path
            gbr = frame.reformat(format="gbrp16le", interpolation=_accurate_flags(),
                                 src_color_range=frame.color_range or None, dst_color_range="JPEG")
    except (av.FFmpegError, IndexError, StopIteration) as exc:
        raise DecodeError(f"AVIF data is corrupt: {exc or 'no image in it'}") from None
    hwc = np.empty((gbr.height, gbr.width, 3), dtype=np.uint16)
    for channel, plane in zip((1, 2, 0), gbr.planes):  # planes in G, B, R order
        rows = np.frombuffer(plane, dtype="<u2").reshape(gbr.height, plane.line_size // 2)
        hwc[:, :, channel] = rows[:, : gbr.width]
    return torch.from_numpy(hwc).permute(2, 0, 1)


def decode_heic(data: memoryview) -> torch.Tensor:
    """A HEIC through libheif (``pillow-heif``): ``Tensor[C, H, W]``, C = 3 or 4 (with alpha).

    uint8 for 8-bit files; uint16 for 10/12-bit ones, whose values are shifted to the top of
    the 16 bits (as torchvision does). libheif applies the file's rotation and mirroring.
    """
    try:
        import pillow_heif
    except ImportError:
        raise UnsupportedFormatError(
            "decoding HEIC needs the pillow-heif package: pip install 'gpuvio[heic]'") from None
    try:
        heif = pillow_heif.open_heif(bytes(data), convert_hdr_to_8bit=False)
        width, height = heif.size
    except (ValueError, RuntimeError, OSError, SyntaxError, EOFError) as exc:
        raise DecodeError(f"HEIC data is corrupt: {exc}") from None
    except IndexError:  # pillow-heif found no image in the file
        raise DecodeError("HEIC data is corrupt: it holds no image") from None
    check_pixels(width, height)  # before libheif decodes: opening reads the header only
    try:
        layout, raw, stride = heif.mode, heif.data, heif.stride
    except (ValueError, RuntimeError, OSError, SyntaxError, EOFError) as exc:
        raise DecodeError(f"HEIC data is corrupt: {exc}") from None
    base, _, bits = layout.partition(";")
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}.get(base)
    if channels is None:
        raise DecodeError(f"unexpected HEIC pixel layout {layout!r}")
    dtype = np.dtype("<u2") if bits == "16" else np.dtype(np.uint8)
    if stride < width * channels * dtype.itemsize or len(raw) < stride * height:
        # libheif decoded another size than the header announced
        raise DecodeError(f"HEIC data is corrupt: {len(raw)} decoded bytes do not hold {width}x{height} {layout}")
    rows = np.frombuffer(raw, dtype=dtype, count=stride * height // dtype.itemsize).reshape(
        height, stride // dtype.itemsize)
    hwc = rows[:, : width * channels].reshape(height, width, channels)
    return torch.from_numpy(hwc.astype(dtype.newbyteorder("="))).permute(2, 0, 1)
