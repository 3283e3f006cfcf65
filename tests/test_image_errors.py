"""Bad input to the image API: torchvision's exception types and messages, batches, atomic writes."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gpuvio
from conftest import IMAGE_DEVICES
from gpuvio import ImageReadMode


def _jpeg_bytes(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _u8(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


# --------------------------------------------------------------------------- damaged files


@pytest.mark.parametrize("name,message", [
    ("corrupt34_2.jpg", "Image is incomplete or truncated"),
    ("corrupt34_3.jpg", "Image is incomplete or truncated"),
    ("corrupt34_4.jpg", "Image is incomplete or truncated"),
    ("corrupt.jpg", "Unsupported marker type"),
])
@pytest.mark.parametrize("device", IMAGE_DEVICES)
def test_damaged_jpegs_raise_torchvisions_errors(name: str, message: str, device: str, media) -> None:
    path = media("torchvision", "images", "damaged_jpeg", name)
    data = gpuvio.read_file(path)
    for decode in (gpuvio.decode_jpeg, gpuvio.decode_image):
        with pytest.raises(RuntimeError, match=message):
            decode(data, device=device)
    with pytest.raises(gpuvio.DecodeError, match=message):
        gpuvio.read_image(path, ImageReadMode.RGB, device=device)


@pytest.mark.parametrize("device", IMAGE_DEVICES)
def test_bad_huffman_jpeg_decodes(device: str, media) -> None:
    # libjpeg warns about the bad Huffman code and decodes the rest, as Pillow does
    path = media("torchvision", "images", "damaged_jpeg", "bad_huffman.jpg")
    image = gpuvio.decode_jpeg(gpuvio.read_file(path), device=device)
    with Image.open(path) as im:
        assert image.shape == (3, im.height, im.width) and image.device.type == device
        if device == "cpu":
            assert torch.equal(image.permute(1, 2, 0), torch.from_numpy(np.array(im.convert("RGB"))))


@pytest.mark.parametrize("device", IMAGE_DEVICES)
def test_truncated_jpeg_made_here(device: str) -> None:
    data = _jpeg_bytes()
    for cut in (len(data) // 2, len(data) - 3, 200):
        with pytest.raises(RuntimeError, match="Image is incomplete or truncated"):
            gpuvio.decode_jpeg(_u8(data[:cut]), device=device)


@pytest.mark.parametrize("device", IMAGE_DEVICES)
def test_damaged_pngs_raise_torchvisions_errors(device: str, media) -> None:
    sigsegv = gpuvio.read_file(media("torchvision", "images", "damaged_png", "sigsegv.png"))
    heapbof = gpuvio.read_file(media("torchvision", "images", "toosmall_png", "heapbof.png"))
    for decode in (gpuvio.decode_png, gpuvio.decode_image):
        with pytest.raises(RuntimeError, match="Out of bound read in decode_png"):
            decode(sigsegv, device=device)
    with pytest.raises(RuntimeError, match="Content is too small for png"):
        gpuvio.decode_png(heapbof, device=device)
    with pytest.raises(RuntimeError, match="Content is too small for png"):
        gpuvio.decode_png(torch.zeros(5, dtype=torch.uint8), device=device)


@pytest.mark.parametrize("device", IMAGE_DEVICES)
def test_truncated_png_made_here(device: str) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buffer, "PNG")
    data = buffer.getvalue()
    for cut in (len(data) // 2, len(data) - 20):
        with pytest.raises(RuntimeError, match="Out of bound read in decode_png"):
            gpuvio.decode_png(_u8(data[:cut]), device=device)


def test_corrupt_png_data_raises_instead_of_giving_damaged_pixels() -> None:
    # libpng checks every chunk's CRC; a flipped bit in the pixel data must fail, not decode to
    # wrong pixels (torchvision 0.29.1 even crashes the process on such a file)
    buffer = io.BytesIO()
    y, x = np.mgrid[0:48, 0:64]
    smooth = np.stack([x * 4, y * 5, (x + y) * 2], axis=2).astype(np.uint8)  # zlib alone misses most flips here
    Image.fromarray(smooth).save(buffer, "PNG")
    data = buffer.getvalue()
    start, end = data.index(b"IDAT") + 4, data.index(b"IEND") - 8
    for position in range(start, end, max(1, (end - start) // 64)):
        damaged = bytearray(data)
        damaged[position] ^= 0x10
        with pytest.raises(RuntimeError, match="PNG data is corrupt"):
            gpuvio.decode_png(_u8(bytes(damaged)))


# --------------------------------------------------------------------------- decode argument errors


def test_decode_rejects_bad_tensors() -> None:
    for decode in (gpuvio.decode_gif, gpuvio.decode_webp):  # torchvision words these differently
        with pytest.raises(RuntimeError, match="Input tensor must be 1-dimensional"):
            decode(torch.empty((100, 1), dtype=torch.uint8))
        with pytest.raises(RuntimeError, match="Input tensor must have uint8 data type"):
            decode(torch.empty((100,), dtype=torch.float16))
        with pytest.raises(RuntimeError, match="Expected a non empty 1-dimensional tensor"):
            decode(torch.empty((0,), dtype=torch.uint8))
    for decode in (gpuvio.decode_jpeg, gpuvio.decode_png, gpuvio.decode_image):
        with pytest.raises(RuntimeError, match="Expected a non empty 1-dimensional tensor"):
            decode(torch.empty((100, 1), dtype=torch.uint8))
        with pytest.raises(RuntimeError, match="Expected a non empty 1-dimensional tensor"):
            decode(torch.empty((), dtype=torch.uint8))
        with pytest.raises(RuntimeError, match="Expected a non empty 1-dimensional tensor"):
            decode(torch.empty((0,), dtype=torch.uint8))
        with pytest.raises(RuntimeError, match="Expected a torch.uint8 tensor"):
            decode(torch.empty((100,), dtype=torch.float16))


def test_decode_rejects_other_formats(media) -> None:
    with pytest.raises(RuntimeError, match="Not a JPEG file"):
        gpuvio.decode_jpeg(torch.zeros(100, dtype=torch.uint8))
    with pytest.raises(RuntimeError, match="Content is not png"):
        gpuvio.decode_png(torch.randint(3, 5, (300,), dtype=torch.uint8))
    with pytest.raises(RuntimeError, match="Not a JPEG file"):
        gpuvio.decode_jpeg(gpuvio.read_file(media("torchvision", "images", "logos", "rgb_pytorch.png")))
    with pytest.raises(RuntimeError, match="Content is not png"):
        gpuvio.decode_png(_u8(_jpeg_bytes()))
    bmp = io.BytesIO()
    Image.new("RGB", (4, 4)).save(bmp, "BMP")
    for data in (torch.zeros(100, dtype=torch.uint8), _u8(bmp.getvalue()), _u8(b"\xff\xd8")):
        with pytest.raises(RuntimeError, match="Unsupported image file"):
            gpuvio.decode_image(data)
    for decode in (gpuvio.decode_gif, gpuvio.decode_webp):
        with pytest.raises(RuntimeError):
            decode(torch.randint(0, 256, (100,), dtype=torch.uint8))
        with pytest.raises(RuntimeError):
            decode(_u8(_jpeg_bytes()))


def test_decode_rejects_bad_modes_and_options() -> None:
    data = _u8(_jpeg_bytes())
    with pytest.raises(ValueError, match="UNCHANGED"):
        gpuvio.decode_image(data, mode="bogus")
    with pytest.raises(ValueError, match="raise"):
        gpuvio.decode_image([data], on_error="ignore")
    with pytest.raises(TypeError):
        gpuvio.decode_image(12345)
    with pytest.raises(TypeError):
        gpuvio.read_image(data)


def test_missing_files_raise_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpg"
    for call in (lambda: gpuvio.read_file(missing), lambda: gpuvio.read_image(missing),
                 lambda: gpuvio.read_image(str(missing)), lambda: gpuvio.decode_image(missing)):
        with pytest.raises(FileNotFoundError, match="No such file or directory"):
            call()
    with pytest.raises(RuntimeError):  # torchvision raises RuntimeError: both catch it
        gpuvio.read_file(missing)


def test_an_empty_file_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(RuntimeError, match="empty"):
        gpuvio.read_image(empty)


# --------------------------------------------------------------------------- encode argument errors


@pytest.mark.parametrize("encode", [gpuvio.encode_jpeg, gpuvio.encode_png])
def test_encode_rejects_bad_tensors(encode) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuntimeError, match="Input tensor dtype should be uint8"):
        encode(torch.empty((3, 100, 100), dtype=torch.float32))
    with pytest.raises(RuntimeError, match="The number of channels should be 1 or 3, got: 5"):
        encode(torch.empty((5, 100, 100), dtype=torch.uint8))
    with pytest.raises(RuntimeError, match="The number of channels should be 1 or 3, got: 4"):
        encode(torch.empty((4, 10, 10), dtype=torch.uint8))
    with pytest.raises(RuntimeError, match="Input data should be a 3-dimensional tensor"):
        encode(torch.empty((1, 3, 100, 100), dtype=torch.uint8))
    with pytest.raises(RuntimeError, match="Input data should be a 3-dimensional tensor"):
        encode(torch.empty((100, 100), dtype=torch.uint8))
    with pytest.raises(ValueError):  # torchvision crashes here; gpuvio raises
        encode(torch.empty((3, 0, 10), dtype=torch.uint8))
    with pytest.raises(TypeError):
        encode(np.zeros((3, 4, 4), np.uint8))


def test_encode_jpeg_quality_range() -> None:
    image = torch.zeros((3, 8, 8), dtype=torch.uint8)
    for quality in (-1, 0, 101):
        with pytest.raises(ValueError, match="Image quality should be a positive number between 1 and 100"):
            gpuvio.encode_jpeg(image, quality=quality)
    with pytest.raises(ValueError, match="encode_jpeg requires at least one input tensor when a list is passed"):
        gpuvio.encode_jpeg([])
    with pytest.raises(RuntimeError, match="Input tensor dtype should be uint8"):
        gpuvio.encode_jpeg([image, image.float()])


def test_encode_png_compression_range() -> None:
    image = torch.zeros((3, 8, 8), dtype=torch.uint8)
    for level in (-1, 10):
        with pytest.raises(RuntimeError, match="Compression level should be between 0 and 9"):
            gpuvio.encode_png(image, compression_level=level)


# --------------------------------------------------------------------------- batches


@pytest.mark.parametrize("device", IMAGE_DEVICES)
def test_batch_decode_names_the_bad_member(device: str) -> None:
    good = [_u8(_jpeg_bytes(s)) for s in range(3)]
    bad = torch.zeros(64, dtype=torch.uint8)
    with pytest.raises(RuntimeError, match=r"image 1 of 3: Not a JPEG file"):
        gpuvio.decode_jpeg([good[0], bad, good[1]], device=device)
    truncated = good[2][: good[2].numel() // 2]
    with pytest.raises(RuntimeError, match=r"image 2 of 3: Image is incomplete or truncated"):
        gpuvio.decode_image([good[0], good[1], truncated], device=device)


@pytest.mark.parametrize("device", IMAGE_DEVICES)
def test_batch_decode_skip_drops_bad_members_with_a_warning(device: str) -> None:
    good = [_u8(_jpeg_bytes(s)) for s in range(3)]
    bad = torch.zeros(64, dtype=torch.uint8)
    expected = [gpuvio.decode_jpeg(g, device=device) for g in good]
    with pytest.warns(RuntimeWarning, match=r"skipped 2 of 5 .*1: .*3: "):
        out = gpuvio.decode_image([good[0], bad, good[1], good[2][:100], good[2]], on_error="skip", device=device)
    assert len(out) == 3
    for got, want in zip(out, [expected[0], expected[1], expected[2]]):
        assert got.device == want.device and torch.equal(got, want)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(gpuvio.decode_jpeg(good, on_error="skip", device=device)) == 3


def test_batch_members_that_are_not_images_are_named_or_skipped(tmp_path: Path) -> None:
    good = _u8(_jpeg_bytes())
    missing = tmp_path / "missing.jpg"
    with pytest.raises(FileNotFoundError, match=r"image 1 of 2: .*No such file or directory"):
        gpuvio.decode_image([good, missing])
    with pytest.raises(RuntimeError, match=r"image 0 of 2: Expected a torch.uint8 tensor"):
        gpuvio.decode_image([good.float(), good])
    with pytest.warns(RuntimeWarning, match="skipped 2 of 4"):
        out = gpuvio.decode_image([missing, good, good, good.view(1, -1)], on_error="skip")
    assert len(out) == 2


def test_batch_decode_gives_lists() -> None:
    good = [_u8(_jpeg_bytes(s)) for s in range(3)]
    out = gpuvio.decode_jpeg(good, mode=ImageReadMode.GRAY)
    assert isinstance(out, list) and [o.shape for o in out] == [(1, 16, 24)] * 3
    assert all(torch.equal(o, gpuvio.decode_jpeg(g, mode=ImageReadMode.GRAY)) for o, g in zip(out, good))
    with pytest.raises(ValueError, match="Input list must contain at least one element"):
        gpuvio.decode_jpeg([])


# --------------------------------------------------------------------------- atomic writes


@pytest.mark.parametrize("write,suffix", [(gpuvio.write_jpeg, ".jpg"), (gpuvio.write_png, ".png")])
def test_failed_writes_leave_no_file(tmp_path: Path, write, suffix: str) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / f"new{suffix}"
    with pytest.raises(RuntimeError, match="Input tensor dtype should be uint8"):
        write(torch.zeros((3, 8, 8), dtype=torch.float32), target)
    with pytest.raises(RuntimeError, match="The number of channels"):
        write(torch.zeros((2, 8, 8), dtype=torch.uint8), target)
    assert os.listdir(tmp_path) == []

    existing = tmp_path / f"existing{suffix}"
    existing.write_bytes(b"keep me")
    with pytest.raises(RuntimeError):
        write(torch.zeros((4, 8, 8), dtype=torch.uint8), existing)
    if write is gpuvio.write_jpeg:
        with pytest.raises(ValueError):
            write(torch.zeros((3, 8, 8), dtype=torch.uint8), existing, quality=0)
    else:
        with pytest.raises(ValueError):
            write(torch.zeros((3, 8, 8), dtype=torch.uint8), existing, compression_level=11)
    assert existing.read_bytes() == b"keep me"
    assert os.listdir(tmp_path) == [existing.name]

    with pytest.raises(FileNotFoundError):
        write(torch.zeros((3, 8, 8), dtype=torch.uint8), tmp_path / "no_such_dir" / f"x{suffix}")
    write(torch.zeros((3, 8, 8), dtype=torch.uint8), existing)
    assert existing.read_bytes() != b"keep me"
    assert os.listdir(tmp_path) == [existing.name]


def test_write_file_rejects_bad_data_and_keeps_the_old_file(tmp_path: Path) -> None:
    existing = tmp_path / "data.bin"
    existing.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="Expected a torch.uint8 tensor"):
        gpuvio.write_file(existing, torch.zeros(4, dtype=torch.float32))
    with pytest.raises(RuntimeError, match="Expected a non empty 1-dimensional tensor"):
        gpuvio.write_file(existing, torch.zeros((2, 2), dtype=torch.uint8))
    assert existing.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["data.bin"]
