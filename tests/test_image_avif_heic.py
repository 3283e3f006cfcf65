"""AVIF and HEIC decoding (torchvision's ``decode_avif`` / ``decode_heic``), made here from known pixels.

8-bit AVIF goes through Pillow's libavif, so it must equal Pillow exactly; 10-bit AVIF goes
through FFmpeg's AV1 decoder and is compared with Pillow's 8-bit rendering of the same file
within a tolerance. HEIC goes through libheif (pillow-heif) and must equal what pillow-heif
gives, including the 16-bit layout torchvision uses for 10-bit files (values shifted to the top).
"""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
import torch
from PIL import Image, features

import gpuvio
from conftest import IMAGE_DEVICES, assert_pixels
from gpuvio import ImageReadMode
from gpuvio._formats import sniff_image_format

needs_avif = pytest.mark.skipif(not features.check("avif"), reason="this Pillow has no AVIF support")

MODES = list(ImageReadMode)


def _picture(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth gradient with noise and a sharp edge: ``ndarray[H, W, 3] uint8``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, np.where(x > width // 2, 220.0, 30.0)], axis=2)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def _avif(array: np.ndarray, **save: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="AVIF", quality=90, **save)
    return out.getvalue()


def _avif_10bit(array: np.ndarray) -> bytes:
    """A 10-bit 4:2:0 AVIF of ``array`` encoded by SVT-AV1 through PyAV."""
    import av

    if "libsvtav1" not in av.codecs_available:
        pytest.skip("this PyAV build has no AV1 encoder")
    out = io.BytesIO()
    with av.open(out, "w", format="avif") as container:
        stream = container.add_stream("libsvtav1", rate=1)
        stream.height, stream.width = array.shape[:2]
        stream.pix_fmt = "yuv420p10le"
        frame = av.VideoFrame.from_ndarray(array, format="rgb24").reformat(format="yuv420p10le")
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return out.getvalue()


def _pillow(data: bytes, mode: ImageReadMode) -> torch.Tensor:
    """Pillow's decode of ``data`` in ``mode``: ``Tensor[C, H, W] uint8``."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        target = {ImageReadMode.GRAY: "L", ImageReadMode.GRAY_ALPHA: "LA", ImageReadMode.RGB: "RGB",
                  ImageReadMode.RGB_ALPHA: "RGBA"}.get(mode, im.mode)
        array = np.array(im.convert(target))
    tensor = torch.from_numpy(array)
    return tensor[None] if tensor.dim() == 2 else tensor.permute(2, 0, 1)


@pytest.fixture(scope="module")
def heif():
    return pytest.importorskip("pillow_heif", reason="pillow-heif is not installed (pip install 'gpuvio[heic]')")


def _heic(heif, array: np.ndarray, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    heif.from_bytes(mode=mode, size=(array.shape[1], array.shape[0]), data=array.tobytes()).save(out, quality=-1)
    return out.getvalue()


# --------------------------------------------------------------------------- recognising the files


@needs_avif
def test_avif_and_heic_are_told_apart_from_each_other_and_from_mp4(heif, generated):
    assert sniff_image_format(_avif(_picture())) == "avif"
    assert sniff_image_format(_heic(heif, _picture())) == "heic"
    assert sniff_image_format(generated["h264"].read_bytes()[:64]) is None  # an MP4 has an ftyp box too
    with pytest.raises(gpuvio.UnsupportedFormatError, match="not AVIF data"):
        gpuvio.decode_avif(_heic(heif, _picture()))
    with pytest.raises(gpuvio.UnsupportedFormatError, match="not HEIC data"):
        gpuvio.decode_heic(_avif(_picture()))


# --------------------------------------------------------------------------- AVIF


@needs_avif
@pytest.mark.parametrize("device", IMAGE_DEVICES)
@pytest.mark.parametrize("alpha", [False, True], ids=["rgb", "rgba"])
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
def test_8bit_avif_equals_pillow(mode: ImageReadMode, alpha: bool, device: str):
    picture = _picture()
    if alpha:
        picture = np.dstack([picture, np.linspace(0, 255, picture.shape[1], dtype=np.uint8)[None].repeat(48, 0)])
    data = _avif(picture)
    expected = _pillow(data, mode)
    got = gpuvio.decode_avif(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=mode, device=device)
    assert got.dtype == torch.uint8
    # (on a GPU, within the video tolerance: an AV1 decoder there would convert from YUV itself)
    assert_pixels(got, expected, device, kind="video")
    assert_pixels(gpuvio.decode_image(data, mode=mode, device=device), expected, device, kind="video")


@needs_avif
def test_10bit_avif_gives_uint16_close_to_pillows_8bit_rendering():
    data = _avif_10bit(_picture(seed=1))
    got = gpuvio.decode_avif(data)
    assert got.dtype == torch.uint16 and got.shape == (3, 48, 64)
    eight = (got.to(torch.int32) + 128) // 257  # libavif's own 8-bit output, to compare
    diff = (eight - _pillow(data, ImageReadMode.RGB).to(torch.int32)).abs()
    assert diff.max() <= 6 and diff.float().mean() < 1.0, (diff.max(), diff.float().mean())
    gray = gpuvio.decode_avif(data, mode="GRAY_ALPHA")
    assert gray.dtype == torch.uint16 and gray.shape == (2, 48, 64)
    assert int(gray[1].to(torch.int32).min()) == 65535


@needs_avif
def test_animated_avif_is_refused_like_torchvision():
    frames = [Image.fromarray(_picture(seed=s)) for s in range(3)]
    out = io.BytesIO()
    frames[0].save(out, format="AVIF", save_all=True, append_images=frames[1:], duration=40)
    with pytest.raises(gpuvio.DecodeError, match="holds 3 images"):
        gpuvio.decode_avif(out.getvalue())


@needs_avif
def test_truncated_avif_raises_a_decode_error():
    data = _avif(_picture())
    for cut in (30, len(data) // 2, len(data) - 10):
        with pytest.raises(gpuvio.DecodeError, match="AVIF data is corrupt") as info:
            gpuvio.decode_avif(data[:cut])
        assert "BytesIO" not in str(info.value)


@needs_avif
def test_avif_over_the_pixel_limit_is_refused(monkeypatch):
    data = _avif_10bit(_picture())
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(gpuvio.ResourceLimitError):
        gpuvio.decode_avif(data)
    with pytest.raises(gpuvio.ResourceLimitError):
        gpuvio.decode_avif(_avif(_picture()))


@needs_avif
def test_avif_without_pillow_support_says_so(monkeypatch):
    data = _avif(_picture())
    real_check = features.check
    monkeypatch.setattr(features, "check", lambda name: False if name == "avif" else real_check(name))
    with pytest.raises(gpuvio.UnsupportedFormatError, match="Pillow built with AVIF support"):
        gpuvio.decode_avif(data)


# --------------------------------------------------------------------------- HEIC


@pytest.mark.parametrize("device", IMAGE_DEVICES)
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
def test_8bit_heic_equals_pillow_heif(heif, mode: ImageReadMode, device: str):
    data = _heic(heif, _picture())
    heif.register_heif_opener()
    expected = _pillow(data, mode)
    got = gpuvio.decode_heic(data, mode=mode, device=device)
    assert got.dtype == torch.uint8
    # (on a GPU, within the video tolerance: an HEVC decoder there would convert from YUV itself)
    assert_pixels(got, expected, device, kind="video")
    assert_pixels(gpuvio.decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=mode,
                                      device=device), expected, device, kind="video")


def test_10bit_heic_keeps_its_bits_at_the_top_of_uint16(heif):
    picture = _picture(seed=2).astype(np.uint16) * 257
    data = _heic(heif, picture, mode="RGB;16")
    got = gpuvio.decode_heic(data)
    assert got.dtype == torch.uint16 and got.shape == (3, 48, 64)
    values = got.to(torch.int32)
    assert int((values % 64).max()) == 0  # 10 significant bits, shifted left by 6
    decoded = heif.open_heif(data, convert_hdr_to_8bit=False)
    raw = np.frombuffer(decoded.data, dtype="<u2").reshape(48, decoded.stride // 2)[:, : 64 * 3]
    assert torch.equal(values, torch.from_numpy(raw.reshape(48, 64, 3).astype(np.int32)).permute(2, 0, 1))
    assert (values - torch.from_numpy(picture.astype(np.int32)).permute(2, 0, 1)).abs().float().mean() < 8 * 257  # lossy


def test_heic_with_alpha(heif):
    picture = np.dstack([_picture(), np.full((48, 64), 200, np.uint8)])
    got = gpuvio.decode_heic(_heic(heif, picture, mode="RGBA"))
    assert got.shape == (4, 48, 64)
    assert int(got[3].min()) >= 190  # lossy, but near the alpha it was given
    assert gpuvio.decode_heic(_heic(heif, picture, mode="RGBA"), mode="RGB").shape == (3, 48, 64)


def test_corrupt_heic_raises_a_decode_error(heif):
    data = _heic(heif, _picture())
    for cut in (40, len(data) // 2):
        with pytest.raises(gpuvio.DecodeError):
            gpuvio.decode_heic(data[:cut])


def test_heic_without_pillow_heif_says_what_to_install(heif, monkeypatch):
    data = _heic(heif, _picture())
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # as if it were not installed
    with pytest.raises(gpuvio.UnsupportedFormatError, match=r"pip install 'gpuvio\[heic\]'"):
        gpuvio.decode_heic(data)


def test_heic_over_the_pixel_limit_is_refused(heif, monkeypatch):
    data = _heic(heif, _picture())
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(gpuvio.ResourceLimitError):
        gpuvio.decode_heic(data)
