"""Image front-end: torchvision.io's image functions, validated here and dispatched to a backend.

The pixel semantics (what each :class:`ImageReadMode` gives for each kind of file) are those of
the CPU backend, ``cpu_fallback._image``, whose docstring also lists where they knowingly differ
from torchvision's. Error types and messages follow torchvision's (``RuntimeError`` subclasses
with its wording, e.g. "Image is incomplete or truncated"), without its C++ file/line prefix.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Literal, overload

import torch

from ._dispatch import select_backend
from ._errors import (
    DecodeError,
    GpuvioError,
    InvalidArgumentError,
    InvalidInputTypeError,
    UnsupportedFormatError,
    for_item,
)
from ._formats import ImageFormat, sniff_image_format
from ._protocols import DecodedImage, EncodedImage
from ._source import atomic_output, encoded_view, read_file
from ._types import DeviceLike, ImageReadMode
from .transforms import Transform, TransformsLike, as_transforms, plan

__all__ = [
    "decode_avif",
    "decode_gif",
    "decode_heic",
    "decode_image",
    "decode_jpeg",
    "decode_png",
    "decode_webp",
    "encode_jpeg",
    "encode_png",
    "read_image",
    "write_jpeg",
    "write_png",
]

OnError = Literal["raise", "skip"]
_ALL_FORMATS: tuple[ImageFormat, ...] = ("jpeg", "png", "gif", "webp", "avif", "heic")


def _format_error(data: memoryview, allowed: tuple[ImageFormat, ...]) -> GpuvioError:
    head = bytes(data[:2]).ljust(2, b"\0")
    if allowed == ("jpeg",):
        return UnsupportedFormatError(f"Not a JPEG file: starts with 0x{head[0]:02x} 0x{head[1]:02x}")
    if allowed == ("png",):
        if len(data) < 8:
            return DecodeError("Content is too small for png!")
        return UnsupportedFormatError("Content is not png!")
    if len(allowed) == 1:
        # the first words are the ones torchvision's decoder libraries say for data not theirs
        fmt, start = allowed[0], bytes(data[:8])
        is_bmff = bytes(data[4:8]) == b"ftyp"
        prefix = {
            "gif": "DGifOpenFileName() failed - 103",
            "webp": "WebPGetFeatures failed.",
            "avif": "avifDecoderParse failed: " + ("not an AVIF brand" if is_bmff else "BMFF parsing failed"),
            "heic": "decode_heif failed: " + ("not a HEIC brand" if is_bmff else "Invalid input: No 'ftyp' box"),
        }.get(fmt, "Unsupported image file")
        return UnsupportedFormatError(f"{prefix} (not {fmt.upper()} data: it starts with {start!r})")
    names = ", ".join(allowed[:-1]) + f" and {allowed[-1]}"
    return UnsupportedFormatError(
        f"Unsupported image file. Only {names} are currently supported "
        f"(the data starts with {bytes(data[:8])!r}).")


def _check_encoded_tensor(source: Any) -> None:
    """torchvision's checks of a tensor given to a one-format decoder (decode_jpeg, decode_png, ...).

    In torchvision's order (its C++ ``validate_encoded_data``, 0.21+): contiguity, dtype, shape,
    each message starting with torchvision's own words. The shape and dtype messages also carry
    the wording of torchvision before 0.21 ("Expected a non empty 1-dimensional tensor",
    "Expected a torch.uint8 tensor"), so that code matching either version's message matches.
    ``decode_image`` keeps its own (older) torchvision wording, and accepts non-contiguous input.
    """
    if not isinstance(source, torch.Tensor):
        return
    if not source.is_contiguous():
        raise InvalidArgumentError("Input tensor must be contiguous.")
    if source.dtype != torch.uint8:
        raise InvalidInputTypeError(
            f"Input tensor must have uint8 data type, got {source.dtype} (Expected a torch.uint8 tensor)")
    if source.dim() != 1 or source.numel() == 0:
        raise InvalidArgumentError(
            f"Input tensor must be 1-dimensional and non-empty, got {source.dim()} dims and "
            f"{source.numel()} numels, shape {tuple(source.shape)} (Expected a non empty 1-dimensional tensor)")


def _prepare(source: Any, allowed: tuple[ImageFormat, ...]) -> EncodedImage | GpuvioError:
    """(bytes, format) of one input, or the per-image error to raise or skip."""
    try:
        if isinstance(source, (str, os.PathLike)):
            data = read_file(source).numpy().data
            if data.nbytes == 0:
                return DecodeError(f"the file {os.fspath(source)!r} is empty")
        else:
            if len(allowed) == 1:
                _check_encoded_tensor(source)
            data = encoded_view(source, what="input")
    except GpuvioError as exc:  # per image, so that a batch can name or skip it
        return exc
    fmt = sniff_image_format(data)
    if fmt is None or fmt not in allowed:
        return _format_error(data, allowed)
    return data, fmt


def _transformed(result: DecodedImage, steps: tuple[Transform, ...]) -> DecodedImage:
    if not steps or isinstance(result, BaseException):
        return result
    try:
        return plan(steps, int(result.shape[-2]), int(result.shape[-1])).apply(result)
    except GpuvioError as exc:  # a crop larger than this image: its own error, to raise or skip
        return exc


def _decode(input: Any, mode: ImageReadMode | str, apply_exif_orientation: bool, device: DeviceLike,
            backend: str | None, on_error: OnError, allowed: tuple[ImageFormat, ...],
            transforms: TransformsLike = None) -> Any:
    mode = ImageReadMode.parse(mode)
    steps = as_transforms(transforms)
    if on_error not in ("raise", "skip"):
        raise InvalidArgumentError(f"on_error must be 'raise' or 'skip'; got {on_error!r}")
    batch = isinstance(input, (list, tuple))
    sources = list(input) if batch else [input]
    if not sources:
        raise InvalidArgumentError("Input list must contain at least one element")
    prepared = [_prepare(s, allowed) for s in sources]
    chosen, target = select_backend("decode_image", device, backend)
    good = [p for p in prepared if not isinstance(p, GpuvioError)]
    decoded: list[DecodedImage] = []
    if good:
        decoded = chosen.decode_images(good, mode=mode, apply_exif_orientation=apply_exif_orientation,
                                       device=target, on_error=on_error)
    if len(decoded) != len(good):
        raise RuntimeError(f"backend {chosen.name!r} returned {len(decoded)} results for {len(good)} images")
    # each input's result: its image, or the error it raised (while preparing it, or in the backend)
    outputs = iter(decoded)
    results: list[DecodedImage] = [p if isinstance(p, GpuvioError) else next(outputs) for p in prepared]
    if steps:
        # decoded first, then resized and cropped by torchvision's own ops on the result's device
        # (libjpeg's DCT scaling misses the tolerance: benchmarks/jpeg_dct_scaling.py), one image
        # after another in list order on this thread, so random windows are drawn just as
        # torchvision's RandomCrop applied to each image in turn would draw them
        results = [_transformed(r, steps) for r in results]
    if not batch:
        if isinstance(results[0], BaseException):
            raise results[0]
        return results[0]
    failed = [(i, r) for i, r in enumerate(results) if isinstance(r, BaseException)]
    if failed and on_error == "raise":
        index, first = failed[0]
        raise for_item(first, "image", index, len(results)) from first
    if failed:
        reasons = "; ".join(f"{i}: {r}" for i, r in failed[:5])
        warnings.warn(f"skipped {len(failed)} of {len(results)} images that failed to decode ({reasons})",
                      RuntimeWarning, stacklevel=3)
    return [r for r in results if not isinstance(r, BaseException)]


@overload
def decode_image(input: torch.Tensor | bytes | str | os.PathLike[str],
                 mode: ImageReadMode | str = ..., apply_exif_orientation: bool = ..., *,
                 device: DeviceLike = ..., backend: str | None = ..., on_error: OnError = ...,
                 transforms: TransformsLike = ...) -> torch.Tensor: ...
@overload
def decode_image(input: list[torch.Tensor | bytes | str | os.PathLike[str]]
                 | tuple[torch.Tensor | bytes | str | os.PathLike[str], ...],
                 mode: ImageReadMode | str = ..., apply_exif_orientation: bool = ..., *,
                 device: DeviceLike = ..., backend: str | None = ...,
                 on_error: OnError = ..., transforms: TransformsLike = ...) -> list[torch.Tensor]: ...


def decode_image(input: Any, mode: ImageReadMode | str = ImageReadMode.UNCHANGED,
                 apply_exif_orientation: bool = False, *, device: DeviceLike = "cpu",
                 backend: str | None = None, on_error: OnError = "raise",
                 transforms: TransformsLike = None) -> Any:
    """Decode a JPEG, PNG, GIF, WebP, AVIF or HEIC image; the format is read from the data itself.

    Args:
        input: the encoded image as a ``Tensor[N] uint8`` (e.g. from :func:`read_file`), bytes, or
            a path; or a list of these, which is decoded as one batch.
        mode: channel layout of the result (:class:`ImageReadMode` or its name). Default
            ``UNCHANGED``: the file's own channels.
        apply_exif_orientation: turn the image upright according to its EXIF orientation tag.
            Default False.
        device: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (the GPU if one is usable).
        backend: force a backend by name (see :func:`gpuvio.backends`).
        on_error: for lists, ``"raise"`` (default) raises for the first bad image, naming its index;
            ``"skip"`` leaves bad images out of the result and warns which.
        transforms: :mod:`gpuvio.transforms` applied to each image after decoding (and after
            the EXIF orientation), on ``device``, with one random window per image. Default None.

    Returns:
        ``Tensor[C, H, W]`` uint8 (uint16 for 16-bit PNGs and 10/12-bit AVIF/HEIC;
        ``Tensor[N, C, H, W]`` for an animated GIF) on ``device``, or a list of them for a list input. On the CPU it is a channels-first
        view of channels-last memory; 2- and 3-channel images decoded by Pillow keep its 4-byte
        pixel stride (call ``.contiguous()`` for packed memory).

    Raises:
        UnsupportedFormatError: the data is not one of the supported formats.
        DecodeError: the data is corrupt or truncated (a ``RuntimeError``, like torchvision's).
        MediaFileNotFoundError: a path does not exist (a ``FileNotFoundError``).

    Unlike torchvision's, ``bytes`` are taken as encoded data (torchvision reads them as a file
    name), lists are accepted, every mode is honoured for every format (torchvision refuses
    the alpha modes for JPEGs and ignores the mode for GIFs), and AVIF and HEIC are decoded here
    too (torchvision has only :func:`decode_avif` / :func:`decode_heic` for them).
    """
    return _decode(input, mode, apply_exif_orientation, device, backend, on_error, _ALL_FORMATS, transforms)


def decode_jpeg(input: Any, mode: ImageReadMode | str = ImageReadMode.UNCHANGED,
                device: DeviceLike = "cpu", apply_exif_orientation: bool = False, *,
                backend: str | None = None, on_error: OnError = "raise") -> Any:
    """Decode a JPEG (or a list of JPEGs, as a batch). See :func:`decode_image` for the arguments.

    Returns:
        ``Tensor[C, H, W]`` uint8 (C is 1 for grayscale, 3 for colour, 4 for CMYK in ``UNCHANGED``),
        or a list of them. CMYK comes as the file stores it (inverted for Adobe files), like
        torchvision; ``GRAY`` is libjpeg's own luma. ``GRAY_ALPHA``/``RGB_ALPHA`` add an opaque
        alpha (torchvision raises for them).

    Raises:
        ValueError: ``input`` is an empty list ("Input list must contain at least one element").
        RuntimeError: a tensor that is not contiguous, uint8, 1-D and non-empty (torchvision
            0.21's messages, e.g. "Input tensor must be 1-dimensional and non-empty, ..."; the same
            for the other one-format decoders).
    """
    return _decode(input, mode, apply_exif_orientation, device, backend, on_error, ("jpeg",))


def decode_png(input: Any, mode: ImageReadMode | str = ImageReadMode.UNCHANGED,
               apply_exif_orientation: bool = False, *, device: DeviceLike = "cpu",
               backend: str | None = None) -> Any:
    """Decode a PNG. 16-bit PNGs give ``Tensor[C, H, W] uint16`` with their exact values, others uint8.

    In ``UNCHANGED`` mode a palette PNG gives its palette indices, ``Tensor[1, H, W]``, a 1-bit PNG
    gives 0/255, and a transparency chunk (tRNS) is ignored; the ``*_ALPHA`` modes turn it into
    alpha at every bit depth (torchvision ignores it for gray and 16-bit images, and gives a wrong
    alpha for palette PNGs without one and for 1-bit PNGs; gpuvio gives 255 there).
    ``GRAY`` uses Pillow's fixed ITU-R 601-2 luma weights (libpng's rounding differs by 1, and it
    takes other weights from a cHRM chunk).
    """
    return _decode(input, mode, apply_exif_orientation, device, backend, "raise", ("png",))


def decode_gif(input: Any, *, device: DeviceLike = "cpu") -> Any:
    """Decode a GIF into RGB, as Pillow composites its frames.

    Returns:
        ``Tensor[3, H, W]`` uint8 for a single frame, ``Tensor[N, 3, H, W]`` (channels-last
        memory) for an animation. ``decode_image`` gives the same for GIFs in ``UNCHANGED``.
    """
    return _decode(input, ImageReadMode.UNCHANGED, False, device, None, "raise", ("gif",))


def decode_webp(input: Any, mode: ImageReadMode | str = ImageReadMode.UNCHANGED, *,
                device: DeviceLike = "cpu") -> Any:
    """Decode a WebP (its first frame): ``Tensor[C, H, W]`` uint8.

    C is 3 or 4 in ``UNCHANGED`` (4 when the file has alpha); other modes convert (torchvision
    ignores ``GRAY`` for WebP and returns colour).
    """
    return _decode(input, mode, False, device, None, "raise", ("webp",))


def decode_avif(input: Any, mode: ImageReadMode | str = ImageReadMode.UNCHANGED, *,
                device: DeviceLike = "cpu") -> Any:
    """Decode an AVIF still image (through Pillow's libavif; no extra package needed).

    Returns:
        ``Tensor[C, H, W]``: C is 3, or 4 when the file has alpha, in ``UNCHANGED``; other modes
        convert. uint8 for 8-bit files; uint16 (full 0..65535 range) for 10/12-bit files, which
        FFmpeg's AV1 decoder decodes (without alpha: 10/12-bit AVIF with alpha raises
        ``UnsupportedFormatError``). An animated AVIF raises ``DecodeError`` (decode it as a
        video), as torchvision does. torchvision ignores ``GRAY`` modes here; gpuvio converts.
    """
    return _decode(input, mode, False, device, None, "raise", ("avif",))


def decode_heic(input: Any, mode: ImageReadMode | str = ImageReadMode.UNCHANGED, *,
                device: DeviceLike = "cpu") -> Any:
    """Decode a HEIC (HEIF with HEVC) image's primary picture, through libheif (``pip install 'gpuvio[heic]'``).

    Returns:
        ``Tensor[C, H, W]``: C is 3, or 4 when the file has alpha, in ``UNCHANGED``; other modes
        convert. uint8 for 8-bit files; uint16 for 10/12-bit ones, the values shifted to the top
        of the 16 bits (``value << (16 - bits)``), as torchvision does. The file's rotation and
        mirroring are applied by libheif. Without ``pillow-heif`` installed it raises
        ``UnsupportedFormatError`` saying so.
    """
    return _decode(input, mode, False, device, None, "raise", ("heic",))


def read_image(path: str | os.PathLike[str], mode: ImageReadMode | str = ImageReadMode.UNCHANGED,
               apply_exif_orientation: bool = False, *, device: DeviceLike = "cpu",
               backend: str | None = None, transforms: TransformsLike = None) -> torch.Tensor:
    """Read and decode a JPEG, PNG, GIF, WebP, AVIF or HEIC file. See :func:`decode_image`
    (``transforms`` too).

    Returns:
        ``Tensor[C, H, W]`` uint8 (uint16 for 16-bit PNGs).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInputTypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    return _decode(path, mode, apply_exif_orientation, device, backend, "raise", _ALL_FORMATS, transforms)


# --------------------------------------------------------------------------- encoding

def _check_encodable(image: Any) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise InvalidInputTypeError(f"expected an image tensor, got {type(image).__name__}")
    if image.dtype != torch.uint8:
        raise InvalidInputTypeError(f"Input tensor dtype should be uint8, got {image.dtype}")
    if image.dim() != 3:
        raise InvalidArgumentError(
            f"Input data should be a 3-dimensional tensor [C, H, W], got shape {tuple(image.shape)}")
    if image.shape[0] not in (1, 3):
        raise InvalidArgumentError(f"The number of channels should be 1 or 3, got: {image.shape[0]}")
    if image.shape[1] == 0 or image.shape[2] == 0:
        raise InvalidArgumentError(f"cannot encode an empty image of shape {tuple(image.shape)}")
    return image


def _check_quality(quality: Any) -> int:
    if isinstance(quality, bool) or not isinstance(quality, int):
        raise InvalidInputTypeError(f"quality must be an int between 1 and 100, got {quality!r}")
    if not 1 <= quality <= 100:
        raise InvalidArgumentError(
            f"Image quality should be a positive number between 1 and 100, got {quality}")
    return quality


def encode_jpeg(input: Any, quality: int = 75) -> Any:
    """Encode ``Tensor[C, H, W] uint8`` images (C = 1 or 3) as JPEG.

    The bytes are identical to Pillow's ``Image.save(..., quality=quality)`` (4:2:0 chroma
    subsampling, no optimisation), for contiguous and non-contiguous tensors alike.

    Args:
        input: one image, or a list of images encoded as a batch.
        quality: 1..100, default 75.

    Returns:
        ``Tensor[N] uint8`` of JPEG bytes (a list for a list input), on the input's device.

    Raises:
        ValueError: quality outside 1..100, an empty list, or an image with no pixels.
        RuntimeError: a tensor that is not uint8 ``[C, H, W]`` with C = 1 or 3 (torchvision's
            messages, e.g. "The number of channels should be 1 or 3, got: 4").
    """
    quality = _check_quality(quality)
    batch = isinstance(input, (list, tuple))
    images = [_check_encodable(i) for i in (input if batch else [input])]
    if batch and not images:
        raise InvalidArgumentError("encode_jpeg requires at least one input tensor when a list is passed")
    device = images[0].device
    chosen, _ = select_backend("encode_jpeg", "auto" if device.type == "cuda" else "cpu")
    encoded = chosen.encode_jpeg(images, quality=quality)
    encoded = [e.to(i.device) for e, i in zip(encoded, images)]
    return encoded if batch else encoded[0]


def _check_compression(level: Any) -> int:
    if isinstance(level, bool) or not isinstance(level, int):
        raise InvalidInputTypeError(f"compression_level must be an int between 0 and 9, got {level!r}")
    if not 0 <= level <= 9:
        raise InvalidArgumentError(f"Compression level should be between 0 and 9, got {level}")
    return level


def encode_png(input: torch.Tensor, compression_level: int = 6) -> torch.Tensor:
    """Encode a ``Tensor[C, H, W] uint8`` image (C = 1 or 3) as PNG.

    Args:
        compression_level: zlib level 0 (none, fastest) .. 9 (smallest), default 6.

    Returns:
        ``Tensor[N] uint8`` of PNG bytes, on the CPU. Decoding them gives ``input`` back exactly.

    Raises:
        RuntimeError: compression level outside 0..9, or a tensor that is not uint8 ``[C, H, W]``
            with C = 1 or 3 (torchvision's messages).
    """
    level = _check_compression(compression_level)
    image = _check_encodable(input)
    chosen, _ = select_backend("encode_png", "cpu")
    return chosen.encode_png(image, compression_level=level)


def _write(data: torch.Tensor, filename: str | os.PathLike[str]) -> None:
    with atomic_output(filename) as tmp, open(tmp, "wb") as f:
        f.write(data.cpu().numpy().data)


def write_jpeg(input: torch.Tensor, filename: str | os.PathLike[str], quality: int = 75) -> None:
    """Encode ``Tensor[C, H, W] uint8`` as JPEG into ``filename``; never leaves a partial file."""
    _write(encode_jpeg(input, quality), filename)


def write_png(input: torch.Tensor, filename: str | os.PathLike[str], compression_level: int = 6) -> None:
    """Encode ``Tensor[C, H, W] uint8`` as PNG into ``filename``; never leaves a partial file."""
    _write(encode_png(input, compression_level), filename)
