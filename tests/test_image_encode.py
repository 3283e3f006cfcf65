"""encode_jpeg / encode_png / write_jpeg / write_png / read_file / write_file on the CPU backend.

JPEG bytes must be identical to Pillow's ``save(quality=q)`` (for contiguous and non-contiguous
tensors alike), PNGs must round-trip exactly, lists give lists, and writes are atomic.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gpuvio
from conftest import IMAGE_DEVICES


def _image(channels: int, height: int = 37, width: int = 53, seed: int = 0) -> torch.Tensor:
    """``Tensor[C, H, W] uint8`` of smooth noise (JPEG-like content, not flat colour)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 3 + 1, width // 3 + 1, channels), dtype=np.uint8)
    fine = coarse.repeat(3, 0).repeat(3, 1)[:height, :width].astype(int)
    fine += rng.integers(-9, 10, (height, width, channels))
    return torch.from_numpy(np.clip(fine, 0, 255).astype(np.uint8)).permute(2, 0, 1).contiguous()


def pillow_jpeg(image: torch.Tensor, quality: int) -> bytes:
    hwc = image.permute(1, 2, 0).contiguous().numpy()
    pil = Image.fromarray(hwc[:, :, 0], "L") if hwc.shape[2] == 1 else Image.fromarray(hwc, "RGB")
    buffer = io.BytesIO()
    pil.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _variants(image: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same pixels in several memory layouts."""
    channels, height, width = image.shape
    wide = torch.zeros(channels, height, width * 2, dtype=torch.uint8)
    wide[:, :, ::2] = image
    padded = torch.zeros(channels + 2, height + 3, width + 5, dtype=torch.uint8)
    padded[1 : channels + 1, 2 : height + 2, 3 : width + 3] = image
    return {
        "contiguous": image,
        "channels_last": image.permute(1, 2, 0).contiguous().permute(2, 0, 1),
        "strided": wide[:, :, ::2],
        "cropped": padded[1 : channels + 1, 2 : height + 2, 3 : width + 3],
        "transposed": image.transpose(1, 2).contiguous().transpose(1, 2),
    }


@pytest.mark.parametrize("quality", [1, 10, 50, 75, 90, 100])
@pytest.mark.parametrize("channels", [1, 3])
def test_encode_jpeg_is_byte_identical_to_pillow(channels: int, quality: int) -> None:
    image = _image(channels, seed=quality)
    expected = pillow_jpeg(image, quality)
    for layout, tensor in _variants(image).items():
        encoded = gpuvio.encode_jpeg(tensor, quality=quality)
        assert encoded.dtype == torch.uint8 and encoded.dim() == 1, layout
        assert bytes(encoded.numpy()) == expected, layout


def test_encode_jpeg_default_quality_is_75() -> None:
    image = _image(3)
    assert bytes(gpuvio.encode_jpeg(image).numpy()) == pillow_jpeg(image, 75)


def test_encode_jpeg_of_a_decoded_image_view(media) -> None:
    # decode_image returns a channels-last view with a 4-byte pixel stride: it must encode the same
    path = media("torchvision", "images", "grace_hopper_517x606.jpg")
    decoded = gpuvio.read_image(path)
    assert bytes(gpuvio.encode_jpeg(decoded, quality=80).numpy()) == pillow_jpeg(decoded.contiguous(), 80)


@pytest.mark.parametrize("device", IMAGE_DEVICES)
@pytest.mark.parametrize("channels", [1, 3])
def test_encode_jpeg_on_each_device(channels: int, device: str) -> None:
    # a tensor on the GPU is encoded there: Pillow's bytes on the CPU; on the GPU another encoder's
    # bytes, with libjpeg's quantisation tables and subsampling for the quality, and no worse
    image = _image(channels, height=96, width=130, seed=11)
    expected = pillow_jpeg(image, 80)
    for layout, tensor in _variants(image).items():
        encoded = gpuvio.encode_jpeg(tensor.to(device), quality=80)
        assert encoded.dtype == torch.uint8 and encoded.dim() == 1 and encoded.device.type == device, layout
        data = bytes(encoded.cpu().numpy())
        if device == "cpu":
            assert data == expected, layout
            continue
        assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9", layout
        with Image.open(io.BytesIO(data)) as ours, Image.open(io.BytesIO(expected)) as pillow:
            assert ours.size == pillow.size and ours.mode == pillow.mode, layout
            assert all(ours.quantization.get(k) == q for k, q in pillow.quantization.items()), layout
            assert [layer[1:3] for layer in ours.layer] == [layer[1:3] for layer in pillow.layer], layout
            target = image.permute(1, 2, 0).squeeze(2).numpy().astype(np.float64)
            ours_error = np.abs(np.asarray(ours, dtype=np.float64) - target).mean()
            pillow_error = np.abs(np.asarray(pillow, dtype=np.float64) - target).mean()
            assert ours_error < pillow_error * 1.25 + 0.5, (layout, ours_error, pillow_error)
    batch = gpuvio.encode_jpeg([image.to(device), image.to(device)], quality=80)
    assert isinstance(batch, list) and len(batch) == 2 and all(e.device.type == device for e in batch)


def test_encode_jpeg_lists_give_lists() -> None:
    images = [_image(3, seed=1), _image(1, seed=2), _variants(_image(3, seed=3))["strided"]]
    encoded = gpuvio.encode_jpeg(images, quality=60)
    assert isinstance(encoded, list) and len(encoded) == 3
    for tensor, image in zip(encoded, images):
        assert bytes(tensor.numpy()) == pillow_jpeg(image, 60)
    assert isinstance(gpuvio.encode_jpeg((images[0],)), list)


def test_write_jpeg_writes_pillows_bytes(tmp_path: Path) -> None:
    image = _variants(_image(3, seed=5))["cropped"]
    target = tmp_path / "out.jpg"
    gpuvio.write_jpeg(image, target, quality=85)
    assert target.read_bytes() == pillow_jpeg(image, 85)
    gpuvio.write_jpeg(image, str(tmp_path / "default.jpg"))
    assert (tmp_path / "default.jpg").read_bytes() == pillow_jpeg(image, 75)
    # what write_jpeg wrote decodes to what Pillow decodes
    with Image.open(target) as im:
        assert torch.equal(gpuvio.read_image(target).permute(1, 2, 0), torch.from_numpy(np.array(im)))


@pytest.mark.parametrize("level", range(10))
@pytest.mark.parametrize("channels", [1, 3])
def test_encode_png_round_trips_exactly(channels: int, level: int) -> None:
    image = _image(channels, seed=level)
    for layout, tensor in _variants(image).items():
        encoded = gpuvio.encode_png(tensor, compression_level=level)
        assert encoded.dtype == torch.uint8 and encoded.dim() == 1
        assert torch.equal(gpuvio.decode_png(encoded), image), layout
        with Image.open(io.BytesIO(bytes(encoded.numpy()))) as im:
            assert im.mode == ("L" if channels == 1 else "RGB")
            assert np.array_equal(np.array(im).reshape(image.shape[1], image.shape[2], channels),
                                  image.permute(1, 2, 0).numpy())


def test_encode_png_levels_trade_size_for_speed() -> None:
    image = _image(3, height=64, width=64)
    sizes = [gpuvio.encode_png(image, compression_level=level).numel() for level in (0, 6, 9)]
    assert sizes[0] > sizes[1] >= sizes[2]
    assert sizes[0] >= 64 * 64 * 3  # level 0 stores the rows uncompressed


def test_write_png_round_trips(tmp_path: Path) -> None:
    for channels in (1, 3):
        image = _variants(_image(channels))["strided"]
        target = tmp_path / f"out{channels}.png"
        gpuvio.write_png(image, target, compression_level=3)
        assert torch.equal(gpuvio.read_image(target), image)
    gpuvio.write_png(image, str(tmp_path / "default.png"))
    assert torch.equal(gpuvio.read_image(tmp_path / "default.png"), image)


def test_read_file_and_write_file(tmp_path: Path) -> None:
    content = b"TorchVision\211\n" + bytes(range(256))
    for name in ("plain.bin", "日本語(Japanese).bin"):
        target = tmp_path / name
        target.write_bytes(content)
        data = gpuvio.read_file(target)
        assert data.dtype == torch.uint8 and data.dim() == 1
        assert torch.equal(data, torch.tensor(list(content), dtype=torch.uint8))
        assert torch.equal(gpuvio.read_file(str(target)), data)
        copy = tmp_path / f"copy-{name}"
        gpuvio.write_file(copy, data)
        assert copy.read_bytes() == content
        gpuvio.write_file(str(copy), data[::2])  # non-contiguous data is written as its values
        assert copy.read_bytes() == content[::2]
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert gpuvio.read_file(empty).numel() == 0


def test_encode_then_decode_is_identity_on_the_pixels_pillow_decodes(tmp_path: Path) -> None:
    image = _image(3, height=64, width=48)
    encoded = gpuvio.encode_jpeg(image, quality=92)
    gpuvio.write_file(tmp_path / "x.jpg", encoded)
    with Image.open(tmp_path / "x.jpg") as im:
        expected = torch.from_numpy(np.array(im)).permute(2, 0, 1)
    assert torch.equal(gpuvio.decode_jpeg(gpuvio.read_file(tmp_path / "x.jpg")), expected)
    assert os.listdir(tmp_path) == ["x.jpg"]
