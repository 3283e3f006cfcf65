"""Would libjpeg's DCT scaling keep ``decode_image(..., transforms=[Resize(n)])`` within tolerance?

Issue 13 allows libjpeg's scaled decoding (Pillow's ``draft``: the IDCT computes a 1/2 or 1/4
size image straight from the coefficients, skipping most of the decode) only where the result,
after the final resize, stays within a mean absolute difference of 0.5 uint8 levels of the
reference: the full decode, then torchvision's antialiased bilinear resize
(:func:`gpuvio.transforms.apply`, equal to ``v2.functional.resize``).

This script measures that difference, and the time saved, for each downscale factor
(shorter side / n) and DCT scale, on:

* real footage: frames of the clips in ``../shared/media/torchvision/videos`` (when present),
  re-encoded as JPEG at quality 75 and 95, 4:2:0;
* content that stresses a filter: small text, uniform noise, 3-pixel stripes, a zone plate
  (1024x768, quality 90, 4:2:0);
* the benchmark's generated 1080p JPEG (``gpuvio bench``'s ``jpeg_1080p.jpg`` content).

Prints a table and, with ``--json OUT``, writes it. Run it with the test venv:
``python benchmarks/jpeg_dct_scaling.py [--json OUT]`` (about 10 s on 2 cores).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gpuvio.transforms import Resize, apply  # noqa: E402

VIDEOS = REPO.parent / "shared" / "media" / "torchvision" / "videos"
FACTORS = (3, 4, 4.8, 6, 8, 12, 16)
SCALES = (2, 4)


def _jpeg(rgb: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", quality=quality, subsampling=2)  # 4:2:0
    return out.getvalue()


def _decode(data: bytes, scale: int) -> torch.Tensor:
    """``Tensor[3, H/scale, W/scale] uint8``: libjpeg at DCT scale 1/``scale`` (1: the full decode)."""
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    if scale > 1:
        image.draft("RGB", (image.width // scale, image.height // scale))
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)


def _footage() -> dict[str, bytes]:
    import av

    out: dict[str, bytes] = {}
    for path in sorted(VIDEOS.glob("*.mp4"))[:3] + sorted(VIDEOS.glob("*.avi"))[:2]:
        with av.open(str(path)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if index == 20:
                    break
        rgb = frame.to_ndarray(format="rgb24")
        rgb = rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]  # even sizes: DCT scales align
        for quality in (75, 95):
            out[f"{path.name[:16]} q{quality}"] = _jpeg(rgb, quality)
    return out


def _stress() -> dict[str, bytes]:
    from PIL import Image, ImageDraw

    height, width = 768, 1024
    yy, xx = np.mgrid[:height, :width]
    text = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(text)
    for y in range(0, height, 12):
        draw.text((2, y), "The quick brown fox jumps over the lazy dog 0123456789 " * 3, fill=(0, 0, 0))
    gray = {
        "stripes3": ((xx // 3) % 2 * 255).astype(np.uint8),
        "zoneplate": (127.5 + 127.5 * np.cos((xx**2 + yy**2) * np.pi / 2048)).astype(np.uint8),
    }
    images = {"text": np.array(text),
              "noise": np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)}
    images.update({name: plane[..., None].repeat(3, 2) for name, plane in gray.items()})
    return {name: _jpeg(rgb, 90) for name, rgb in images.items()}


def _generated() -> dict[str, bytes]:
    import tempfile

    from gpuvio._samples import make_sample_image

    with tempfile.TemporaryDirectory() as tmp:
        path = make_sample_image(Path(tmp) / "jpeg_1080p.jpg", width=1920, height=1080, quality=90)
        return {"generated 1080p q90": path.read_bytes()}


def _ms(fn: Any, repeats: int = 7) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def measure(name: str, data: bytes, timing: bool) -> dict[str, Any]:
    full = _decode(data, 1)
    height, width = full.shape[1:]
    row: dict[str, Any] = {"image": name, "size": f"{width}x{height}", "mean_abs_diff": {}, "ms": {}}
    for factor in FACTORS:
        size = round(min(height, width) / factor)
        reference = apply(full, [Resize(size)]).double()
        for scale in SCALES:
            if factor / scale < 1.5:
                continue
            scaled = _decode(data, scale)
            if scaled.shape[1] * scale != height or scaled.shape[2] * scale != width:
                continue  # the scaled grid would not line up with the full one
            diff = (apply(scaled, [Resize(size)]).double() - reference).abs().mean()
            row["mean_abs_diff"][f"{factor}x/dct{scale}"] = round(float(diff), 3)
            if timing and factor == 4.8:
                row["ms"][f"dct{scale}"] = round(_ms(lambda: apply(_decode(data, scale), [Resize(size)])), 2)
        if timing and factor == 4.8:
            row["ms"]["full"] = round(_ms(lambda: apply(_decode(data, 1), [Resize(size)])), 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the table as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sets = {"footage": _footage() if VIDEOS.is_dir() else {}, "stress": _stress(), "generated": _generated()}
    rows = []
    for kind, images in sets.items():
        for name, data in images.items():
            row = measure(name, data, timing=kind == "generated")
            row["set"] = kind
            rows.append(row)
            cells = " ".join(f"{k}:{v:.2f}" for k, v in row["mean_abs_diff"].items())
            timing = f"  ms (decode+resize, 1 thread): {row['ms']}" if row["ms"] else ""
            print(f"{kind:9s} {name:22s} {row['size']:>9s}  {cells}{timing}")
    worst: dict[str, float] = {}
    for row in rows:
        for key, value in row["mean_abs_diff"].items():
            worst[key] = max(worst.get(key, 0.0), value)
    print("worst mean |diff| per factor/scale:", {k: worst[k] for k in sorted(worst, key=lambda k: (float(k.split('x')[0]), k))})
    if args.json:
        args.json.write_text(json.dumps({"bound": 0.5, "rows": rows, "worst": worst}, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
