"""Generated sample media: realistic, reproducible clips and images made on the spot.

The demo, the tests and the benchmarks need media of known size, codec and content without
downloading anything. Flat colour bars decode unrealistically fast, so the clips here pan a
camera over a multi-octave noise texture with colour gradients and moving shapes: the encoder
spends its bitrate the way it does on real footage.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["make_sample_image", "make_sample_video", "texture"]


def texture(height: int, width: int, *, seed: int = 0) -> np.ndarray:
    """A natural-looking RGB texture, ``ndarray[H, W, 3] uint8``.

    Sums value noise over several octaves (coarse blobs to fine grain) per channel and mixes
    in smooth colour gradients, so it has both flat areas and detail, like a photograph.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros((height, width, 3), dtype=np.float32)
    amplitude, total = 1.0, 0.0
    for cells in (4, 9, 21, 47, 103, 211):
        grid = rng.random((cells + 1, cells + 1, 3), dtype=np.float32)
        ys = np.linspace(0, cells, height, dtype=np.float32)
        xs = np.linspace(0, cells, width, dtype=np.float32)
        y0 = np.minimum(ys.astype(np.int64), cells - 1)
        x0 = np.minimum(xs.astype(np.int64), cells - 1)
        fy = (ys - y0)[:, None, None]
        fx = (xs - x0)[None, :, None]
        fy = fy * fy * (3 - 2 * fy)  # smoothstep hides the grid
        fx = fx * fx * (3 - 2 * fx)
        top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
        bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
        out += amplitude * (top * (1 - fy) + bottom * fy)
        total += amplitude
        amplitude *= 0.6
    out /= total
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    gradient = np.stack(
        [xx / max(width - 1, 1), yy / max(height - 1, 1), 1 - xx / max(width - 1, 1)], axis=-1
    )
    out = 0.65 * out + 0.35 * gradient
    out = (out - out.min()) / max(float(out.max() - out.min()), 1e-6)
    return (out * 255).round().astype(np.uint8)


def _draw_shapes(frame: np.ndarray, index: int, fps: float) -> None:
    """Moving discs and a bar, so that motion is not a single global pan."""
    height, width = frame.shape[:2]
    t = index / fps
    yy, xx = np.ogrid[0:height, 0:width]
    for k, colour in enumerate(((230, 40, 40), (40, 200, 60), (250, 220, 30))):
        cx = (0.5 + 0.4 * math.sin(1.3 * t + 2.1 * k)) * width
        cy = (0.5 + 0.35 * math.cos(0.9 * t + 1.7 * k)) * height
        radius = (0.06 + 0.02 * k) * min(height, width)
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
        frame[mask] = colour
    bar = int((0.5 + 0.45 * math.sin(0.7 * t)) * (width - 1))
    frame[:, max(bar - 3, 0) : bar + 3] = (255, 255, 255)


def make_sample_video(
    path: str | os.PathLike[str],
    *,
    width: int = 640,
    height: int = 360,
    seconds: float = 2.0,
    fps: int | Fraction = 30,
    codec: str = "libx264",
    bit_rate: int | None = None,
    pix_fmt: str = "yuv420p",
    gop: int = 30,
    audio: bool = True,
    audio_rate: int = 44100,
    seed: int = 0,
) -> Path:
    """Encode a clip that pans over a textured scene, with an optional AAC tone.

    ``bit_rate`` defaults to about 4.5 Mbit/s scaled by the frame area relative to 720p, which is
    typical of web video. The audio track is a stereo sine sweep. Returns the path written.
    """
    import av

    path = Path(path)
    fps = Fraction(fps).limit_denominator(1001)
    n_frames = max(1, round(seconds * fps))
    if bit_rate is None:
        bit_rate = int(4_500_000 * (width * height) / (1280 * 720))
    scene = texture(int(height * 1.5) + 2, int(width * 1.5) + 2, seed=seed)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt
        stream.bit_rate = bit_rate
        stream.gop_size = gop
        if codec.startswith("libx26"):
            stream.options = {"preset": "veryfast"}
        astream = None
        if audio:
            astream = container.add_stream("aac", rate=audio_rate, layout="stereo")
            # no perceptual noise substitution: its decoded noise depends on where decoding
            # began, so no range read after a seek could equal a full decode sample for sample
            astream.options = {"aac_pns": "0"}
        for i in range(n_frames):
            # the camera drifts along a Lissajous path over the larger scene
            t = i / float(fps)
            oy = int((0.5 + 0.5 * math.sin(0.8 * t)) * (scene.shape[0] - height))
            ox = int((0.5 + 0.5 * math.sin(0.5 * t + 1.0)) * (scene.shape[1] - width))
            frame = scene[oy : oy + height, ox : ox + width].copy()
            _draw_shapes(frame, i, float(fps))
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if astream is not None:
            _encode_tone(container, astream, seconds=n_frames / float(fps), rate=audio_rate)
    return path


def _encode_tone(container, stream, *, seconds: float, rate: int) -> None:
    import av

    total = int(seconds * rate)
    t = np.arange(total, dtype=np.float64) / rate
    sweep = 2 * math.pi * (220 * t + 200 * t * t / max(seconds, 1e-3))
    samples = np.stack([0.4 * np.sin(sweep), 0.3 * np.sin(sweep * 1.5)]).astype(np.float32)
    chunk = 1024
    for start in range(0, total, chunk):
        part = np.ascontiguousarray(samples[:, start : start + chunk])
        frame = av.AudioFrame.from_ndarray(part, format="fltp", layout="stereo")
        frame.sample_rate = rate
        frame.pts = start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def make_sample_image(
    path: str | os.PathLike[str],
    *,
    width: int = 500,
    height: int = 375,
    quality: int = 90,
    mode: str = "RGB",
    seed: int = 0,
) -> Path:
    """Write a textured image; the format follows the suffix (``.jpg``, ``.png``, ...)."""
    from PIL import Image

    path = Path(path)
    pixels = texture(height, width, seed=seed)
    _draw_shapes(pixels, seed, 30.0)
    image = Image.fromarray(pixels, "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, quality=quality)
    else:
        image.save(path)
    return path
