"""GPU image benchmark: batched JPEG decode/encode through gpuvio's nvImageCodec backend.

``run(results)`` is what the device-check script calls: it generates 256 ImageNet-size JPEGs
(500x375, photo-like texture plus sensor-like noise, about 80 KB each), then appends
``{"name", "value", "unit"}`` records:

* ``decode_jpeg_cuda_batch_imgs_per_s``: ``gpuvio.decode_jpeg(list_of_256, device="cuda")``, one
  batch, the user-facing path (input checks, JPEG screening, nvImageCodec, DLPack hand-off).
* ``decode_jpeg_cuda_batch_nvimgcodec_raw_imgs_per_s``: nvImageCodec's own batch decode of the
  same data, without gpuvio around it (shows gpuvio's overhead).
* ``decode_jpeg_cuda_batch_gpu_only_imgs_per_s``: the backend restricted to the CUDA decoder (no
  hardware engine), and ``image_parity_mean_abs_diff_gpu_only`` for it.
* ``image_parity_mean_abs_diff``: the largest per-image mean |GPU - CPU backend| over the 256
  images and the shared JPEGs (0..255 scale; the target is < 1).
* ``nvimgcodec_decoded_on_gpu``: 1 when nvImageCodec returned device buffers (nvJPEG was found),
  0 when it fell back to its CPU codecs (then the "cuda" numbers are not GPU decoding).
* ``encode_jpeg_cuda_batch_imgs_per_s``: ``gpuvio.encode_jpeg(list_of_256_cuda_tensors, 75)``.
* ``decode_jpeg_cpu_backend_all_cores_imgs_per_s`` / ``encode_jpeg_cpu_backend_all_cores_imgs_per_s``:
  the CPU backend (Pillow) on every core of the same machine, for comparison.
* ``decode_jpeg_cuda_batch_torchvision_imgs_per_s``: ``torchvision.io.decode_jpeg`` on the GPU,
  when torchvision is installed (a peer, same batch).

Standalone: ``python benchmarks/gpu_image.py [--cpu-only] [--images N] [--repeats N] [--json OUT]``.
``--cpu-only`` is a dry run for machines without a GPU: the nvImageCodec metrics then come from
its CPU-only mode and carry ``cpu_only`` in their names, never ``cuda``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable from a checkout without installing
    sys.path.insert(0, str(REPO))

import numpy as np
import torch

SHARED_JPEGS = [
    ("torchvision", "images", "grace_hopper_517x606.jpg"),
    ("torchvision", "images", "logos", "rgb_pytorch.jpg"),
    ("torchvision", "images", "logos", "gray_pytorch.jpg"),
    ("torchcodec", "gradient.jpg"),
    ("torchcodec", "grayscale.jpg"),
]


def make_jpegs(count: int = 256, *, width: int = 500, height: int = 375, quality: int = 92,
               seed: int = 0) -> list[bytes]:
    """``count`` distinct photo-like JPEGs (crops of textured scenes plus per-image noise)."""
    from PIL import Image

    from gpuvio._samples import _draw_shapes, texture

    rng = np.random.default_rng(seed)
    scenes = []
    for s in range(8):
        scene = texture(height * 2, width * 2, seed=seed + s)
        _draw_shapes(scene, seed + s, 30.0)
        scenes.append(scene)
    out = []
    for index in range(count):
        scene = scenes[index % len(scenes)]
        y = int(rng.integers(0, scene.shape[0] - height))
        x = int(rng.integers(0, scene.shape[1] - width))
        crop = scene[y : y + height, x : x + width].astype(np.int16)
        noisy = np.clip(crop + rng.normal(0, 10, crop.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noisy).save(buffer, format="JPEG", quality=quality)
        out.append(buffer.getvalue())
    return out


def _shared_jpegs() -> list[bytes]:
    media = Path(os.environ.get("GPUVIO_MEDIA", REPO.parent / "shared" / "media"))
    return [media.joinpath(*parts).read_bytes() for parts in SHARED_JPEGS if media.joinpath(*parts).exists()]


def _time(fn: Callable[[], Any], *, repeats: int, warmup: int, sync: Callable[[], None]) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _parity(got: list[torch.Tensor], want: list[torch.Tensor]) -> float:
    """The largest per-image mean absolute difference (0..255 scale)."""
    worst = 0.0
    for g, w in zip(got, want):
        if g.shape != w.shape:
            return float("inf")
        worst = max(worst, (g.cpu().float() - w.float()).abs().mean().item())
    return worst


def _cpu_all_cores(cpu: Any, items: list[tuple[memoryview, str]], repeats: int) -> tuple[float, float]:
    """(decode img/s, encode img/s) of the CPU backend with one thread per core."""
    from gpuvio._types import ImageReadMode

    workers = os.cpu_count() or 1
    decoded = cpu.decode_images(items, mode=ImageReadMode.RGB, apply_exif_orientation=False,
                                device=torch.device("cpu"), on_error="raise")
    images = [d.contiguous() for d in decoded]

    def decode_one(item: tuple[memoryview, str]) -> Any:
        return cpu.decode_images([item], mode=ImageReadMode.RGB, apply_exif_orientation=False,
                                 device=torch.device("cpu"), on_error="raise")

    def encode_one(image: torch.Tensor) -> Any:
        return cpu.encode_jpeg([image], quality=75)

    with ThreadPoolExecutor(workers) as pool:
        dec = _time(lambda: list(pool.map(decode_one, items)), repeats=repeats, warmup=1, sync=lambda: None)
        enc = _time(lambda: list(pool.map(encode_one, images)), repeats=repeats, warmup=1, sync=lambda: None)
    return len(items) / dec, len(items) / enc


def run(results: list[dict[str, Any]], *, cpu_only: bool = False, images: int = 256, repeats: int = 7,
        log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Measure and append ``{"name", "value", "unit"}`` records to ``results`` (also returned)."""
    import gpuvio
    from cpu_fallback import CpuBackend
    from gpuvio._backends._nvimgcodec import NvImgCodecBackend
    from gpuvio._types import ImageReadMode

    def record(name: str, value: float, unit: str) -> None:
        results.append({"name": name, "value": round(float(value), 3), "unit": unit})
        log(f"  {name}: {value:,.2f} {unit}")

    if not cpu_only and not torch.cuda.is_available():
        raise RuntimeError("no CUDA device: run with --cpu-only for a dry run")
    start = time.perf_counter()
    jpegs = make_jpegs(images)
    log(f"gpu_image: {len(jpegs)} JPEGs 500x375, mean {np.mean([len(j) for j in jpegs]) / 1e3:.0f} KB "
        f"(generated in {time.perf_counter() - start:.1f} s)")
    items = [(memoryview(j), "jpeg") for j in jpegs]
    tensors = [torch.frombuffer(bytearray(j), dtype=torch.uint8) for j in jpegs]
    cpu = CpuBackend()
    reference = cpu.decode_images(items, mode=ImageReadMode.RGB, apply_exif_orientation=False,
                                  device=torch.device("cpu"), on_error="raise")
    shared = _shared_jpegs()
    shared_items = [(memoryview(j), "jpeg") for j in shared]
    shared_reference = cpu.decode_images(shared_items, mode=ImageReadMode.RGB, apply_exif_orientation=False,
                                         device=torch.device("cpu"), on_error="raise")

    if cpu_only:
        device = torch.device("cpu")
        tag = "nvimgcodec_cpu_only"

        def sync() -> None:
            return None
    else:
        device = torch.device("cuda", torch.cuda.current_device())
        tag = "cuda"
        log(f"  device: {torch.cuda.get_device_name(device)}")

        def sync() -> None:
            torch.cuda.synchronize(device)

    backend = NvImgCodecBackend(cpu_only=cpu_only)
    log(f"  {backend!r}")

    def decode_backend(b: Any, batch: list[tuple[memoryview, str]]) -> list[Any]:
        return b.decode_images(batch, mode=ImageReadMode.RGB, apply_exif_orientation=False, device=device,
                               on_error="raise")

    # the user-facing path: the front-end (input checks) around the backend
    if cpu_only:
        decode = lambda: decode_backend(backend, items)
    else:
        decode = lambda: gpuvio.decode_jpeg(tensors, device=device, backend="nvimgcodec")
    seconds = _time(decode, repeats=repeats, warmup=2, sync=sync)
    record(f"decode_jpeg_{tag}_batch_imgs_per_s", len(jpegs) / seconds, "img/s")

    parity = max(_parity(decode_backend(backend, items), reference),
                 _parity(decode_backend(backend, shared_items), shared_reference))
    record("image_parity_mean_abs_diff" + ("_cpu_only" if cpu_only else ""), parity, "mean |diff| (0-255)")
    fallbacks = backend.fallbacks.counts()
    if fallbacks:
        log(f"  CPU fallbacks: {fallbacks}")

    errors: list[str] = []

    def section(label: str, measure: Callable[[], None]) -> None:
        """Run one measurement; a failure is logged and reported at the end, the rest still runs."""
        try:
            measure()
        except Exception as exc:  # one broken measurement must not lose the others
            errors.append(f"{label}: {type(exc).__name__}: {exc}")
            log(f"  {label} FAILED: {type(exc).__name__}: {exc}")

    def raw_library() -> None:
        # nvImageCodec alone, same data and batch, no gpuvio code around it
        nv = backend._nv
        decoder, _ = backend._codec("decoder", backend._device_id(device))
        params = nv.DecodeParams(apply_exif_orientation=False, color_spec=nv.ColorSpec.SRGB,
                                 sample_format=nv.SampleFormat.I_RGB)
        streams = [nv.CodeStream(np.frombuffer(j, dtype=np.uint8)) for j in jpegs]

        def raw() -> list[Any]:
            return decoder.decode(streams, params=params, cuda_stream=backend._stream(device))

        seconds = _time(raw, repeats=repeats, warmup=1, sync=sync)
        record(f"decode_jpeg_{tag}_batch_nvimgcodec_raw_imgs_per_s", len(jpegs) / seconds, "img/s")
        if not cpu_only:
            # 1 when nvImageCodec's decoders wrote device buffers (nvJPEG found), 0 when it fell back
            # to its CPU codecs (e.g. the nvjpeg wheel or library is missing): the numbers mean little then
            on_gpu = all(image is not None and image.buffer_kind == nv.ImageBufferKind.STRIDED_DEVICE
                         for image in raw())
            record("nvimgcodec_decoded_on_gpu", 1.0 if on_gpu else 0.0, "bool")

    def gpu_only_decoder() -> None:
        gpu_only = NvImgCodecBackend(backend_kinds=["gpu"])
        seconds = _time(lambda: decode_backend(gpu_only, items), repeats=repeats, warmup=2, sync=sync)
        record("decode_jpeg_cuda_batch_gpu_only_imgs_per_s", len(jpegs) / seconds, "img/s")
        record("image_parity_mean_abs_diff_gpu_only",
               max(_parity(decode_backend(gpu_only, items), reference),
                   _parity(decode_backend(gpu_only, shared_items), shared_reference)), "mean |diff| (0-255)")

    def encoding() -> None:
        # 256 decoded images, quality 75, one batch
        sources = [r.contiguous().to(device) for r in reference]
        if cpu_only:
            encode = lambda: backend.encode_jpeg(sources, quality=75)
        else:
            encode = lambda: gpuvio.encode_jpeg(sources, quality=75)
        seconds = _time(encode, repeats=repeats, warmup=2, sync=sync)
        record(f"encode_jpeg_{tag}_batch_imgs_per_s", len(jpegs) / seconds, "img/s")

    def torchvision_peer() -> None:
        try:
            import torchvision.io as tvio
        except ImportError:
            log("  torchvision not installed: no peer number")
            return
        tv = lambda: tvio.decode_jpeg(tensors, device=device)
        seconds = _time(tv, repeats=repeats, warmup=2, sync=sync)
        record("decode_jpeg_cuda_batch_torchvision_imgs_per_s", len(jpegs) / seconds, "img/s")
        record("image_parity_mean_abs_diff_torchvision", _parity(tv(), reference), "mean |diff| (0-255)")

    def cpu_backend() -> None:
        dec, enc = _cpu_all_cores(cpu, items, repeats=max(2, repeats // 2))
        record("decode_jpeg_cpu_backend_all_cores_imgs_per_s", dec, "img/s")
        record("encode_jpeg_cpu_backend_all_cores_imgs_per_s", enc, "img/s")
        record("cpu_cores", os.cpu_count() or 1, "cores")

    section("nvImageCodec raw decode", raw_library)
    if not cpu_only:
        section("CUDA-decoder-only backend", gpu_only_decoder)
    section("encode_jpeg", encoding)
    if not cpu_only:
        section("torchvision peer", torchvision_peer)
    section("CPU backend on all cores", cpu_backend)
    if errors:
        raise RuntimeError("gpu_image: some measurements failed (the others are in the results): "
                           + "; ".join(errors))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-only", action="store_true",
                        help="dry run without a GPU: nvImageCodec's CPU-only mode (names say cpu_only)")
    parser.add_argument("--images", type=int, default=256, help="JPEGs per batch (default 256)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per measurement (default 7)")
    parser.add_argument("--json", metavar="OUT", help="also write the records as JSON")
    args = parser.parse_args(argv)
    results: list[dict[str, Any]] = []
    run(results, cpu_only=args.cpu_only, images=args.images, repeats=args.repeats)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
