"""Image decoding on the CPU backend, pixel for pixel against Pillow (and exact 16-bit PNG values).

The expected tensors are computed here with Pillow from the same bytes: every ``ImageReadMode``
on every shared logo / torchcodec image, EXIF orientations, GIF and WebP, interlaced PNGs,
16-bit PNGs built by a tiny raw PNG writer (so the expected values are known exactly), and the
memory safety of the zero-copy view of Pillow's pixels.
"""

from __future__ import annotations

import gc
import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps, ImageSequence

import gpuvio
from conftest import IMAGE_DEVICES, assert_pixels
from gpuvio import ImageReadMode

# Pillow's advice when the reference converts a palette with transparency; gpuvio itself must not
# warn (see test_palette_with_transparency_decodes_without_warnings)
pytestmark = pytest.mark.filterwarnings("ignore:Palette images with Transparency:UserWarning")

MODES = [ImageReadMode.UNCHANGED, ImageReadMode.GRAY, ImageReadMode.GRAY_ALPHA, ImageReadMode.RGB,
         ImageReadMode.RGB_ALPHA]
_PIL_TARGET = {ImageReadMode.GRAY: "L", ImageReadMode.GRAY_ALPHA: "LA", ImageReadMode.RGB: "RGB",
               ImageReadMode.RGB_ALPHA: "RGBA"}

LOGOS = ["logos/rgb_pytorch.jpg", "logos/gray_pytorch.jpg", "logos/cmyk_pytorch.jpg",
         "logos/rgb_pytorch.png", "logos/rgbalpha_pytorch.png", "logos/gray_pytorch.png",
         "logos/grayalpha_pytorch.png", "logos/palette_pytorch.png", "grace_hopper_517x606.jpg",
         "interlaced_png/wizard_low.png", "interlaced_png/wizard_low-interlaced.png",
         "damaged_jpeg/bad_huffman.jpg"]
TORCHCODEC = ["cmyk.jpg", "gradient.jpg", "gradient.png", "gradient_interlaced.png", "grayscale.jpg",
              "grayscale.png", "grayscale_alpha.png", "rgba.png"]
SHARED_8BIT = [("torchvision", "images", n) for n in LOGOS] + [("torchcodec", n) for n in TORCHCODEC]


def hwc_to_chw(array: np.ndarray) -> torch.Tensor:
    """``Tensor[C, H, W]`` from a Pillow-style ``ndarray[H, W]`` or ``[H, W, C]``."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor[None] if tensor.dim() == 2 else tensor.permute(2, 0, 1)


def pillow_reference(data: bytes, mode: ImageReadMode) -> torch.Tensor:
    """What Pillow gives for ``mode``: the result every decode in gpuvio must equal.

    * UNCHANGED keeps Pillow's mode (palette indices for ``P``); 1-bit images become 0/255 gray.
      An Adobe CMYK JPEG gives its stored (inverted) ink values, as libjpeg and torchvision do.
    * GRAY of a colour JPEG is libjpeg's own luma (Pillow's ``draft("L")``), as in torchvision.
    * Modes with alpha honour palette / tRNS transparency (via RGBA), like libpng's tRNS_to_alpha.
    """
    with Image.open(io.BytesIO(data)) as im:
        if mode is ImageReadMode.UNCHANGED:
            if im.mode == "1":
                return hwc_to_chw(np.array(im.convert("L")))
            out = hwc_to_chw(np.array(im))
            if im.format == "JPEG" and im.mode == "CMYK" and "adobe" in im.info:
                out = 255 - out
            return out
        target = _PIL_TARGET[mode]
        if im.format == "JPEG" and target in ("L", "LA") and im.mode == "RGB":
            im.draft("L", im.size)
        im.load()
        if target in ("LA", "RGBA") and (im.mode == "P" or "transparency" in im.info):
            im = im.convert("RGBA")
        return hwc_to_chw(np.array(im.convert(target)))


def assert_same(actual: torch.Tensor, expected: torch.Tensor, device: str = "cpu", *, jpeg: bool = False) -> None:
    """Equal to Pillow's pixels; on a GPU, a JPEG within nvJPEG's tolerance (see conftest.assert_pixels)."""
    if device != "cpu":
        assert_pixels(actual, expected, device, kind="jpeg" if jpeg else "lossless")
        return
    assert actual.device.type == "cpu"
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    if not torch.equal(actual, expected):  # assert_close only for its report
        torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def _is_jpeg(data: bytes) -> bool:
    return data[:2] == b"\xff\xd8"


# --------------------------------------------------------------------------- shared media


@pytest.mark.parametrize("device", IMAGE_DEVICES)
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
@pytest.mark.parametrize("parts", SHARED_8BIT, ids=lambda p: p[-1])
def test_decode_shared_images_equal_pillow(parts: tuple[str, ...], mode: ImageReadMode, device: str, media) -> None:
    path = media(*parts)
    data = path.read_bytes()
    expected = pillow_reference(data, mode)
    jpeg = path.suffix == ".jpg"
    assert_same(gpuvio.decode_image(gpuvio.read_file(path), mode=mode, device=device), expected, device, jpeg=jpeg)
    assert_same(gpuvio.read_image(path, mode, device=device), expected, device, jpeg=jpeg)
    # bytes and mode names too
    assert_same(gpuvio.decode_image(data, mode=mode.name, device=device), expected, device, jpeg=jpeg)
    specific = gpuvio.decode_jpeg if jpeg else gpuvio.decode_png
    assert_same(specific(gpuvio.read_file(path), mode=mode, device=device), expected, device, jpeg=jpeg)


@pytest.mark.parametrize("name,channels", [
    ("logos/palette_pytorch.png", 1), ("logos/cmyk_pytorch.jpg", 4), ("logos/gray_pytorch.jpg", 1),
    ("logos/gray_pytorch.png", 1), ("logos/grayalpha_pytorch.png", 2), ("logos/rgbalpha_pytorch.png", 4),
    ("logos/rgb_pytorch.jpg", 3)])
@pytest.mark.parametrize("device", IMAGE_DEVICES)
def test_unchanged_keeps_the_files_channels(name: str, channels: int, device: str, media) -> None:
    path = media("torchvision", "images", *name.split("/"))
    image = gpuvio.read_image(path, device=device)
    assert image.shape == (channels, 100, 100)
    assert image.dtype == torch.uint8 and image.device.type == device
    if "palette" in name:  # palette indices, not colours
        with Image.open(path) as im:
            assert int(image.max()) < len(im.getpalette()) // 3


def test_palette_with_transparency_decodes_without_warnings(media) -> None:
    data = media("torchvision", "images", "logos", "palette_pytorch.png").read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for mode in MODES:
            gpuvio.decode_png(data, mode=mode)


@pytest.mark.parametrize("device", IMAGE_DEVICES)
def test_interlaced_png_equals_its_plain_twin(media, device: str) -> None:
    plain_path = media("torchvision", "images", "interlaced_png", "wizard_low.png")
    plain = gpuvio.read_image(plain_path, device=device)
    interlaced = gpuvio.read_image(media("torchvision", "images", "interlaced_png", "wizard_low-interlaced.png"),
                                   device=device)
    assert_same(interlaced.cpu(), plain.cpu())
    assert_same(plain, pillow_reference(plain_path.read_bytes(), ImageReadMode.UNCHANGED), device)


@pytest.mark.parametrize("device", IMAGE_DEVICES)
def test_path_types_and_sources_agree(tmp_path: Path, media, device: str) -> None:
    path = media("torchvision", "images", "grace_hopper_517x606.jpg")
    reference = gpuvio.read_image(str(path), device=device)
    assert reference.device.type == device
    assert torch.equal(gpuvio.read_image(Path(path), device=device), reference)
    raw = path.read_bytes()
    for source in (raw, bytearray(raw), memoryview(raw), torch.frombuffer(bytearray(raw), dtype=torch.uint8),
                   path, str(path)):
        assert torch.equal(gpuvio.decode_image(source, device=device), reference)
    # a 1-D tensor that is a non-contiguous view of the bytes is fine as well
    doubled = torch.frombuffer(bytearray(raw), dtype=torch.uint8).repeat_interleave(2)[::2]
    assert torch.equal(gpuvio.decode_image(doubled, device=device), reference)
    pillow = pillow_reference(raw, ImageReadMode.UNCHANGED)
    assert_same(reference, pillow, device, jpeg=True)
    auto = gpuvio.decode_image(raw, device="auto")  # the GPU where there is one
    assert_same(auto, pillow, auto.device.type, jpeg=True)


# --------------------------------------------------------------------------- generated images


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _noise(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = rng.integers(0, 256, (height // 4 + 1, width // 4 + 1, channels), dtype=np.uint8)
    big = smooth.repeat(4, 0).repeat(4, 1)[:height, :width]
    return np.clip(big.astype(int) + rng.integers(-20, 21, big.shape), 0, 255).astype(np.uint8)


def _generated_images() -> dict[str, bytes]:
    rgb = Image.fromarray(_noise(45, 67, 3))
    rgba = Image.fromarray(_noise(45, 67, 4, seed=1), "RGBA")
    gray = rgb.convert("L")
    palette = rgb.quantize(40)
    palette_trns = palette.copy()
    palette_trns.info["transparency"] = 3
    gray_trns = gray.copy()
    return {
        "jpeg_rgb_420.jpg": _encode(rgb, "JPEG", quality=90),
        "jpeg_rgb_444.jpg": _encode(rgb, "JPEG", quality=90, subsampling=0),
        "jpeg_rgb_422.jpg": _encode(rgb, "JPEG", quality=85, subsampling=1),
        "jpeg_progressive.jpg": _encode(rgb, "JPEG", quality=80, progressive=True),
        "jpeg_gray.jpg": _encode(gray, "JPEG", quality=90),
        "jpeg_cmyk.jpg": _encode(rgb.convert("CMYK"), "JPEG", quality=90),
        "png_rgb.png": _encode(rgb, "PNG"),
        "png_rgba.png": _encode(rgba, "PNG"),
        "png_la.png": _encode(rgba.convert("LA"), "PNG"),
        "png_palette.png": _encode(palette, "PNG"),
        "png_palette_trns.png": _encode(palette_trns, "PNG", transparency=3),
        "png_gray_trns.png": _encode(gray_trns, "PNG", transparency=17),
        "png_rgb_trns.png": _encode(rgb, "PNG", transparency=tuple(int(v) for v in np.array(rgb)[5, 5])),
        "png_1bit.png": _encode(Image.fromarray(_noise(33, 35, 1)[:, :, 0] > 128), "PNG"),
        "webp_lossless_rgb.webp": _encode(rgb, "WEBP", lossless=True),
        "webp_lossless_rgba.webp": _encode(rgba, "WEBP", lossless=True),
        "webp_lossy_rgb.webp": _encode(rgb, "WEBP", quality=80),
    }


GENERATED = _generated_images()


@pytest.mark.parametrize("device", IMAGE_DEVICES)
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
@pytest.mark.parametrize("name", sorted(GENERATED))
def test_decode_generated_images_equal_pillow(name: str, mode: ImageReadMode, device: str) -> None:
    data = GENERATED[name]
    expected = pillow_reference(data, mode)
    assert_same(gpuvio.decode_image(data, mode=mode, device=device), expected, device, jpeg=_is_jpeg(data))
    if name.startswith("webp"):
        assert_same(gpuvio.decode_webp(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=mode),
                    expected)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
def test_pillows_own_memory_path_gives_the_same_pixels(monkeypatch: pytest.MonkeyPatch,
                                                       mode: ImageReadMode) -> None:
    # with LOAD_TRUNCATED_IMAGES set, JPEG/PNG are not decoded straight into tensor memory
    from PIL import ImageFile

    direct = {n: gpuvio.decode_image(d, mode=mode) for n, d in GENERATED.items()}
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    for name, data in GENERATED.items():
        assert_same(gpuvio.decode_image(data, mode=mode), direct[name])


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
def test_libjpeg_turbo_path_equals_the_pillow_path(monkeypatch: pytest.MonkeyPatch, mode: ImageReadMode,
                                                   media) -> None:
    # the optional simplejpeg fast path must give the Pillow path's pixels, bit for bit
    pytest.importorskip("simplejpeg", reason="the optional simplejpeg package is not installed")
    from gpuvio.cpu_fallback import _image

    sources = [d for n, d in GENERATED.items() if n.endswith(".jpg")]
    for name in ("logos/rgb_pytorch.jpg", "logos/gray_pytorch.jpg", "logos/cmyk_pytorch.jpg",
                 "grace_hopper_517x606.jpg"):
        sources.append(media("torchvision", "images", *name.split("/")).read_bytes())
    taken = [_image._decode_jpeg_turbo(memoryview(d), mode) is not None for d in sources]
    fast = [gpuvio.decode_image(d, mode=mode) for d in sources]
    monkeypatch.setattr(_image, "_decode_jpeg_turbo", lambda data, mode: None)
    for data, image in zip(sources, fast):
        assert_same(image, gpuvio.decode_image(data, mode=mode))
    if mode is not ImageReadMode.GRAY_ALPHA:
        assert any(taken)


def test_one_bit_png_gives_0_and_255() -> None:
    image = gpuvio.decode_image(GENERATED["png_1bit.png"])
    assert image.shape[0] == 1
    assert set(image.unique().tolist()) <= {0, 255}


def test_decoded_tensors_are_channels_last_views_that_own_their_memory() -> None:
    for name in ("jpeg_rgb_420.jpg", "png_rgba.png", "png_la.png", "jpeg_gray.jpg"):
        image = gpuvio.decode_image(GENERATED[name])
        expected = pillow_reference(GENERATED[name], ImageReadMode.UNCHANGED)
        if image.shape[0] > 1:
            assert image.stride(0) < image.stride(2) < image.stride(1)  # H, W, C memory order
        else:
            assert image.is_contiguous()
        # the result is writable and writes stay private to it
        image[:, 0, 0] = 7
        again = gpuvio.decode_image(GENERATED[name])
        assert_same(again, expected)


# --------------------------------------------------------------------------- GIF


def _gif_frames(count: int, transparency: bool = False) -> bytes:
    frames = [Image.fromarray(_noise(24, 31, 3, seed=s)).quantize(32) for s in range(count)]
    options: dict[str, object] = {"duration": 40}
    if transparency:
        options["transparency"] = 5
    if count > 1:
        options.update(save_all=True, append_images=frames[1:], disposal=2)
    return _encode(frames[0], "GIF", **options)


@pytest.mark.parametrize("device", IMAGE_DEVICES)
@pytest.mark.parametrize("count,transparency", [(1, False), (1, True), (4, False), (3, True)])
def test_gif_equals_pillow_rgb_frames(count: int, transparency: bool, device: str) -> None:
    data = _gif_frames(count, transparency)
    with Image.open(io.BytesIO(data)) as im:
        frames = [hwc_to_chw(np.array(f.convert("RGB"))) for f in ImageSequence.Iterator(im)]
    expected = torch.stack(frames) if count > 1 else frames[0]
    # torchvision's decode_gif gives RGB; UNCHANGED through decode_image does the same
    assert_same(gpuvio.decode_gif(torch.frombuffer(bytearray(data), dtype=torch.uint8)), expected)
    for decoded in (gpuvio.decode_image(data, device=device),
                    gpuvio.decode_image(data, mode=ImageReadMode.RGB, device=device)):
        assert_same(decoded, expected, device)
    gray = gpuvio.decode_image(data, mode=ImageReadMode.GRAY, device=device)
    assert gray.shape[-3] == 1 and gray.device.type == device


# --------------------------------------------------------------------------- 16-bit PNG


def raw_png(pixels: np.ndarray, colour_type: int, *, interlaced: bool = False) -> bytes:
    """A 16-bit PNG of ``pixels`` (``ndarray[H, W, C] uint16``), written by hand (filter 0 / Adam7)."""
    height, width, _ = pixels.shape
    big_endian = pixels.astype(">u2")

    def scanlines(block: np.ndarray) -> bytes:
        return b"".join(b"\0" + row.tobytes() for row in block)

    if interlaced:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                  (0, 1, 1, 2)]  # Adam7: (x0, y0, dx, dy)
        raw = b"".join(scanlines(big_endian[y0::dy, x0::dx]) for x0, y0, dx, dy in passes
                       if big_endian[y0::dy, x0::dx].size)
    else:
        raw = scanlines(big_endian)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, int(interlaced))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


_COLOUR_TYPES = {0: 1, 4: 2, 2: 3, 6: 4}  # PNG colour type -> channels


def _pillow_luma16(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma with Pillow's 16.16 fixed-point weights, on 16-bit values."""
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint16)


@pytest.mark.parametrize("device", IMAGE_DEVICES)
@pytest.mark.parametrize("interlaced", [False, True])
@pytest.mark.parametrize("colour_type", sorted(_COLOUR_TYPES))
def test_16bit_png_exact_values(colour_type: int, interlaced: bool, device: str) -> None:
    channels = _COLOUR_TYPES[colour_type]
    rng = np.random.default_rng(colour_type)
    pixels = rng.integers(0, 65536, (13, 21, channels), dtype=np.uint16)
    pixels[0, 0] = 0
    pixels[0, 1] = 65535
    data = raw_png(pixels, colour_type, interlaced=interlaced)

    unchanged = gpuvio.decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8), device=device)
    assert unchanged.dtype == torch.uint16
    assert_same(unchanged, hwc_to_chw(pixels), device)

    colour = pixels[..., :3] if channels >= 3 else pixels[..., :1]
    alpha = pixels[..., -1:] if channels in (2, 4) else np.full_like(pixels[..., :1], 65535)
    gray = _pillow_luma16(colour)[..., None] if colour.shape[-1] == 3 else colour
    rgb = np.repeat(colour, 3, axis=-1) if colour.shape[-1] == 1 else colour
    expected = {ImageReadMode.GRAY: gray, ImageReadMode.GRAY_ALPHA: np.concatenate([gray, alpha], -1),
                ImageReadMode.RGB: rgb, ImageReadMode.RGB_ALPHA: np.concatenate([rgb, alpha], -1)}
    for mode, want in expected.items():
        assert_same(gpuvio.decode_image(data, mode=mode, device=device), hwc_to_chw(want), device)


@pytest.mark.parametrize("colour_type", [0, 2])
def test_16bit_png_transparency_key(colour_type: int) -> None:
    channels = _COLOUR_TYPES[colour_type]
    pixels = np.random.default_rng(7).integers(0, 65536, (6, 9, channels), dtype=np.uint16)
    pixels[2, 3] = pixels[4, 5] = pixels[0, 0]
    key = pixels[0, 0].astype(">u2").tobytes()
    plain = raw_png(pixels, colour_type)
    trns = struct.pack(">I", len(key)) + b"tRNS" + key + struct.pack(">I", zlib.crc32(b"tRNS" + key))
    data = plain[:33] + trns + plain[33:]
    # UNCHANGED keeps the stored channels; the alpha modes make the key colour transparent
    assert_same(gpuvio.decode_png(data), hwc_to_chw(pixels))
    transparent = np.all(pixels == pixels[0, 0], axis=-1)
    alpha = torch.from_numpy(np.where(transparent, 0, 65535).astype(np.uint16))
    for mode in (ImageReadMode.GRAY_ALPHA, ImageReadMode.RGB_ALPHA):
        decoded = gpuvio.decode_png(data, mode=mode)
        assert_same(decoded[-1], alpha)
    assert gpuvio.decode_png(data, mode=ImageReadMode.RGB).shape[0] == 3


@pytest.mark.xfail(strict=True, reason="known gap found with generated media: a 16-bit colour PNG whose zTXt "
                   "'Raw profile type exif' holds malformed EXIF does not decode (FFmpeg's PNG decoder, which "
                   "gpuvio uses for 16-bit colour, parses the profile); libpng and Pillow ignore it")
def test_16bit_png_with_a_malformed_raw_exif_profile_decodes() -> None:
    pixels = np.random.default_rng(5).integers(0, 65536, (10, 12, 3), dtype=np.uint16)
    plain = raw_png(pixels, 2)
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = 1
    body = (b"Exif\0\0" + exif.tobytes()).hex()  # Pillow's bytes already start with "Exif\0\0": twice
    text = f"\nexif\n{len(body) // 2:8d}\n{body}\n".encode()
    chunk_body = b"Raw profile type exif\0\0" + zlib.compress(text)
    ztxt = (struct.pack(">I", len(chunk_body)) + b"zTXt" + chunk_body
            + struct.pack(">I", zlib.crc32(b"zTXt" + chunk_body)))
    data = plain[:33] + ztxt + plain[33:]
    with Image.open(io.BytesIO(data)) as im:  # Pillow reads past it (and keeps 16-bit colour's high bytes)
        assert np.array_equal(np.array(im), (pixels >> 8).astype(np.uint8))
    assert_same(gpuvio.decode_png(data), hwc_to_chw(pixels))


@pytest.mark.parametrize("device", IMAGE_DEVICES)
@pytest.mark.parametrize("parts", [
    ("torchvision", "images", "logos", "rgb_pytorch16.png"),
    ("torchvision", "images", "logos", "rgbalpha_pytorch16.png"),
    ("torchcodec", "gradient_16bit.png"), ("torchcodec", "grayscale_16bit.png")], ids=lambda p: p[-1])
def test_shared_16bit_pngs_agree_with_pillow(parts: tuple[str, ...], device: str, media) -> None:
    path = media(*parts)
    image = gpuvio.read_image(path, device=device)
    assert image.dtype == torch.uint16 and image.device.type == device
    image = image.cpu()
    with Image.open(path) as im:
        if im.mode.startswith("I;16"):  # Pillow keeps 16-bit gray exactly
            expected = torch.from_numpy(np.array(im).astype(np.uint16))[None]
            assert_same(image, expected)
        else:  # Pillow keeps the high byte of 16-bit colour
            assert_same((image.to(torch.int32) >> 8).to(torch.uint8), hwc_to_chw(np.array(im)))


# --------------------------------------------------------------------------- EXIF orientation


def _oriented(codec: str, orientation: int, array: np.ndarray) -> bytes:
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = orientation
    return _encode(image, codec, exif=exif.tobytes(), **({"quality": 90} if codec == "JPEG" else {}))


@pytest.mark.parametrize("device", IMAGE_DEVICES)
@pytest.mark.parametrize("codec", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8, 0, 9])
def test_exif_orientation_equals_exif_transpose(codec: str, orientation: int, device: str) -> None:
    data = _oriented(codec, orientation, _noise(40, 57, 3, seed=orientation))
    jpeg = codec == "JPEG"
    with Image.open(io.BytesIO(data)) as im:
        upright = ImageOps.exif_transpose(im)
        expected = hwc_to_chw(np.array(upright.convert("RGB")))
    assert_same(gpuvio.decode_image(data, apply_exif_orientation=True, device=device), expected, device, jpeg=jpeg)
    gray = gpuvio.decode_image(data, mode=ImageReadMode.GRAY, apply_exif_orientation=True, device=device)
    assert gray.shape == (1, *expected.shape[1:])
    # off by default: the stored pixels
    with Image.open(io.BytesIO(data)) as im:
        stored = hwc_to_chw(np.array(im.convert("RGB")))
    assert_same(gpuvio.decode_image(data, device=device), stored, device, jpeg=jpeg)


@pytest.mark.parametrize("device", IMAGE_DEVICES)
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_of_a_16bit_png(orientation: int, device: str) -> None:
    pixels = np.random.default_rng(0).integers(0, 65536, (9, 14, 3), dtype=np.uint16)
    plain = raw_png(pixels, 2)
    # splice an eXIf chunk (made by Pillow) in front of IDAT
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = orientation
    body = exif.tobytes()
    body = body[6:] if body.startswith(b"Exif\0\0") else body  # PNG's eXIf holds the TIFF data only
    exif_chunk = (struct.pack(">I", len(body)) + b"eXIf" + body
                  + struct.pack(">I", zlib.crc32(b"eXIf" + body)))
    data = plain[:33] + exif_chunk + plain[33:]
    with Image.open(io.BytesIO(data)) as im:
        assert im.getexif().get(0x0112) == orientation
    turns = {3: lambda a: a[::-1, ::-1], 6: lambda a: np.rot90(a, -1), 8: lambda a: np.rot90(a, 1)}
    expected = hwc_to_chw(turns[orientation](pixels))
    assert_same(gpuvio.decode_image(data, apply_exif_orientation=True, device=device), expected, device)


@pytest.mark.parametrize("device", IMAGE_DEVICES)
@pytest.mark.parametrize("size", [65533, 1, 7, 10, 23, 33])
def test_invalid_exif_is_ignored(size: int, device: str) -> None:
    image = Image.fromarray(_noise(32, 33, 3))
    data = _encode(image, "JPEG", exif=b"1" * size)
    with Image.open(io.BytesIO(data)) as im:
        expected = hwc_to_chw(np.array(ImageOps.exif_transpose(im)))
    assert_same(gpuvio.decode_image(data, apply_exif_orientation=True, device=device), expected, device, jpeg=True)


# --------------------------------------------------------------------------- zero-copy memory


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGB", "RGBA", "CMYK"])
def test_pillow_pixel_view_is_exact_and_outlives_the_image(mode: str) -> None:
    from gpuvio.cpu_fallback._image import pil_to_tensor

    source = Image.fromarray(_noise(61, 83, 4, seed=3), "RGBA")
    im = source.convert("RGB").quantize(100) if mode == "P" else source.convert(mode)
    im.load()
    channels = {"L": 1, "LA": 2, "P": 1, "RGB": 3, "RGBA": 4, "CMYK": 4}[mode]
    expected = np.frombuffer(im.tobytes(), np.uint8).reshape(61, 83, channels).copy()
    tensor = pil_to_tensor(im)
    del im, source
    gc.collect()
    # reuse the freed memory, then check that the tensor's pixels are untouched
    junk = [np.full((61, 83, 4), 0x5A, np.uint8) for _ in range(64)]
    assert tensor.shape == (channels, 61, 83)
    assert np.array_equal(tensor.permute(1, 2, 0).numpy(), expected)
    del junk


def test_decoded_images_survive_garbage_collection() -> None:
    expected = {n: pillow_reference(GENERATED[n], ImageReadMode.UNCHANGED) for n in GENERATED
                if not n.startswith("png_1bit")}
    decoded = {n: gpuvio.decode_image(GENERATED[n]) for n in expected}
    gc.collect()
    junk = [bytearray(b"\xa5" * 20000) for _ in range(200)]
    for name, image in decoded.items():
        assert_same(image, expected[name])
    del junk
