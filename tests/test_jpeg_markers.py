"""gpuvio/_jpeg.py, the one JPEG marker walker, against what Pillow reads from the same files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from gpuvio._jpeg import first_bad_marker, read_frame, segments


def _jpeg(mode: str, *, subsampling: int = 0, progressive: bool = False, size: tuple[int, int] = (48, 40)) -> bytes:
    rng = np.random.default_rng(7)
    channels = {"L": 1, "RGB": 3, "CMYK": 4}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, subsampling=subsampling, progressive=progressive)
    return out.getvalue()


@pytest.mark.parametrize(("mode", "subsampling", "progressive"),
                         [("RGB", 0, False), ("RGB", 1, False), ("RGB", 2, True), ("L", 0, True), ("CMYK", 0, False)])
def test_frame_header_agrees_with_pillow(mode: str, subsampling: int, progressive: bool) -> None:
    data = _jpeg(mode, subsampling=subsampling, progressive=progressive)
    frame = read_frame(data)
    assert frame is not None
    with Image.open(io.BytesIO(data)) as image:
        assert (frame.width, frame.height) == image.size
        assert frame.components == len(image.getbands())
        assert frame.progressive == bool(image.info.get("progressive", False))
        if frame.components == 3:
            from PIL import JpegImagePlugin

            pillow = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}[JpegImagePlugin.get_sampling(image)]
            assert frame.chroma_subsampling == pillow
    assert data[frame.offset:frame.offset + 2] == bytes([0xFF, frame.sof])
    assert frame.scan_start is not None and frame.scan_start < len(data)
    assert first_bad_marker(data) is None
    codes = [s.marker for s in segments(data)]
    assert frame.sof in codes


def test_truncated_and_foreign_data() -> None:
    data = _jpeg("RGB")
    frame = read_frame(data)
    assert frame is not None
    assert read_frame(b"not a jpeg at all") is None
    truncated = read_frame(data[: frame.offset + 6])  # cut inside the frame header
    assert truncated is None or truncated.scan_start is None


def test_a_reserved_marker_is_named() -> None:
    data = bytearray(_jpeg("RGB"))
    frame = read_frame(bytes(data))
    assert frame is not None
    # replace the APP0 marker after SOI by a reserved code libjpeg rejects (0xFF 0x02)
    assert data[2] == 0xFF
    data[3] = 0x02
    assert first_bad_marker(bytes(data)) == 0x02
