"""GPU image benchmark: batched JPEG decode/encode through gpuvio's nvImageCodec backend.

Run by ``benchmarks/device_check.py`` as a child process, or alone::

    python benchmarks/gpu_image.py [--cpu-only] [--images N] [--repeats N] [--json OUT.json]

It generates 256 ImageNet-size JPEGs (500x375, photo-like texture plus sensor-like noise, about
80 KB each), then records ``{"name", "value", "unit"}`` figures:

* ``decode_jpeg_cuda_batch_imgs_per_s``: ``gpuvio.decode_jpeg(list_of_256, device="cuda")``, one
  batch, the user-facing path (input checks, JPEG screening, nvImageCodec, DLPack hand-off).
* ``image_parity_mean_abs_diff``: the largest per-image mean |GPU - CPU backend| (0..255 scale;
  the target is < 1), worst over the image sets decoded wholly by nvImageCodec (``_generated``:
  the 256; ``_shared``: the shared test JPEGs, when present); ``image_parity_sets_on_gpu`` counts them.
* ``encode_jpeg_cuda_batch_imgs_per_s``: ``gpuvio.encode_jpeg(list_of_256_cuda_tensors, 75)``.
* ``decode_jpeg_cpu_backend_all_cores_imgs_per_s`` / ``encode_jpeg_cpu_backend_all_cores_imgs_per_s``:
  the CPU backend (Pillow) on every core of the same machine, for comparison.
* ``decode_jpeg_cuda_batch_nvimgcodec_raw_imgs_per_s``: nvImageCodec's own batch decode of the
  same data, without gpuvio around it (shows gpuvio's overhead); ``nvimgcodec_decoded_on_gpu``: 1
  when it returned device buffers (nvJPEG was found), 0 when it used its CPU codecs.
* ``decode_jpeg_cuda_batch_cuda_decoder_imgs_per_s``: the backend restricted to the CUDA decoder (no
  hardware engine; ``backend_kinds=["hybrid"]``), and ``image_parity_mean_abs_diff_cuda_decoder`` for it.
* ``decode_jpeg_cuda_batch_torchvision_imgs_per_s``: ``torchvision.io.decode_jpeg`` on the GPU,
  when torchvision is installed (a peer, same batch).
* the decode-time transform figures of ``gpu_transforms.py`` (issue 13), on the same batch:
  ``decode_image_{cuda,cpu}_resize224_batch_imgs_per_s`` (``transforms=[Resize(224)]``) and
  ``image_transform_parity_*`` (CUDA against CPU, per image, mean <= 0.5), in
  ``details["image_transforms"]``; ``--cpu-only`` measures the CPU figure alone.

A gpuvio figure counts only when nvImageCodec served all of it: images the backend handed to the
CPU backend (its ``fallbacks`` log) or that nvImageCodec decoded into host memory make it an
entry in ``errors`` instead. ``--cpu-only`` is a dry run for machines without a GPU: the
nvImageCodec figures then come from its CPU-only mode and carry ``cpu_only`` in their names,
never ``cuda``. ``--json`` is rewritten after every figure (see ``_record.py``). Exit status: 0
when every part ran, 1 when some failed (they are in ``errors``), anything else when it died.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _path in (str(REPO), str(HERE)):  # runnable from a checkout without installing
    if _path not in sys.path:
        sys.path.insert(0, _path)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import gpu_transforms  # noqa: E402
from _record import Recorder, caught_warnings  # noqa: E402

# the backend's RuntimeWarning when nvImageCodec decoded into host memory: its CPU codecs did the
# work (nvJPEG not found), so the "cuda" figure would be a CPU one
_HOST_WARNING = "returned host images"


class CpuServed(RuntimeError):
    """A CPU decoder or encoder did (part of) what was meant to be an nvImageCodec measurement."""

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
    """Median seconds of ``fn()`` over ``repeats`` runs after ``warmup`` untimed ones, each run
    between two ``sync()`` calls (gpuvio's benchmark harness)."""
    from gpuvio._bench._timing import median_time

    return median_time(fn, repeats=repeats, warmup=warmup, sync=sync)[0]


def _parity(got: list[torch.Tensor], want: list[torch.Tensor]) -> float:
    """The largest per-image mean absolute difference (0..255 scale)."""
    worst = 0.0
    for index, (g, w) in enumerate(zip(got, want, strict=True)):
        if g.shape != w.shape:
            raise AssertionError(f"image {index}: shape {tuple(g.shape)} vs the CPU backend's {tuple(w.shape)}")
        worst = max(worst, (g.cpu().float() - w.float()).abs().mean().item())
    return worst


def _served_by(backend: Any, what: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, raising :class:`CpuServed` if ``backend`` handed any image to the CPU backend in it
    (its ``fallbacks`` log grew) or nvImageCodec decoded into host memory (its warning)."""
    log = getattr(backend, "fallbacks", None)
    before = log.counts() if log is not None else {}
    with caught_warnings() as messages:
        out = fn()
    after = log.counts() if log is not None else {}
    moved = {reason: n - before.get(reason, 0) for reason, n in after.items() if n != before.get(reason, 0)}
    problems = ([f"images to the CPU backend: {moved}"] if moved else []) + \
        [m for m in messages if _HOST_WARNING in m][:1]
    if problems:
        raise CpuServed(f"{what}: not all done by {getattr(backend, 'name', backend)!r}, so this is no GPU "
                        f"figure ({'; '.join(problems)})")
    return out


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


def run(rec: Recorder, *, cpu_only: bool = False, images: int = 256, repeats: int = 7) -> None:
    """Measure and add every figure to ``rec``; a failing part becomes an error entry."""
    import gpuvio
    from gpuvio.cpu_fallback import CpuBackend
    from gpuvio import _dispatch
    from gpuvio._backends._nvimgcodec import NvImgCodecBackend
    from gpuvio._types import ImageReadMode

    log = rec.log
    if not cpu_only and not torch.cuda.is_available():
        rec.error("gpu_image", "torch sees no CUDA device: no GPU figure measured (--cpu-only is the dry run)")
        return
    cpu = CpuBackend()

    def cpu_decode(batch: list[tuple[memoryview, str]]) -> list[Any]:
        return cpu.decode_images(batch, mode=ImageReadMode.RGB, apply_exif_orientation=False,
                                 device=torch.device("cpu"), on_error="raise")

    data: dict[str, Any] = {}

    def media() -> None:
        start = time.perf_counter()
        jpegs = make_jpegs(images)
        log(f"gpu_image: {len(jpegs)} JPEGs 500x375, mean {np.mean([len(j) for j in jpegs]) / 1e3:.0f} KB "
            f"(generated in {time.perf_counter() - start:.1f} s)")
        data["items"] = [(memoryview(j), "jpeg") for j in jpegs]
        data["tensors"] = [torch.frombuffer(bytearray(j), dtype=torch.uint8) for j in jpegs]
        data["reference"] = cpu_decode(data["items"])
        data["jpegs"] = jpegs
        data["shared_items"] = [(memoryview(j), "jpeg") for j in _shared_jpegs()]
        data["shared_reference"] = cpu_decode(data["shared_items"])

    if not rec.guard("media", media):
        return
    jpegs, items, tensors, reference = data["jpegs"], data["items"], data["tensors"], data["reference"]
    count = len(jpegs)

    if cpu_only:
        device = torch.device("cpu")
        tag, suffix = "nvimgcodec_cpu_only", "_cpu_only"

        def sync() -> None:
            return None
    else:
        device = torch.device("cuda", torch.cuda.current_device())
        tag, suffix = "cuda", ""
        log(f"  device: {torch.cuda.get_device_name(device)}")

        def sync() -> None:
            torch.cuda.synchronize(device)

    def decode_backend(b: Any, batch: list[tuple[memoryview, str]]) -> list[Any]:
        return b.decode_images(batch, mode=ImageReadMode.RGB, apply_exif_orientation=False, device=device,
                               on_error="raise")

    def make_backend() -> None:
        data["backend"] = NvImgCodecBackend(cpu_only=cpu_only)
        log(f"  {data['backend']!r}")

    have_backend = rec.guard("nvImageCodec backend", make_backend)
    backend: Any = data.get("backend")

    def user_decode() -> None:
        # the user-facing path: the front-end (input checks) around the backend the dispatcher holds
        if cpu_only:
            served, decode = backend, lambda: decode_backend(backend, items)
        else:
            served = _dispatch.get_backend("nvimgcodec")
            decode = lambda: gpuvio.decode_jpeg(tensors, device=device, backend="nvimgcodec")
        seconds = _served_by(served, "decode_jpeg", lambda: _time(decode, repeats=repeats, warmup=2, sync=sync))
        rec.add(f"decode_jpeg_{tag}_batch_imgs_per_s", count / seconds, "img/s")

    parities: list[float] = []

    def parity(label: str, batch: list[tuple[memoryview, str]], want: list[torch.Tensor]) -> None:
        got = _served_by(backend, f"parity {label}", lambda: decode_backend(backend, batch))
        value = _parity(got, want)
        rec.add(f"image_parity_mean_abs_diff_{label}{suffix}", value, "mean |diff| (0-255)")
        parities.append(value)

    def encoding() -> None:
        # 256 decoded images, quality 75, one batch
        sources = [r.contiguous().to(device) for r in reference]
        if cpu_only:
            served, encode = backend, lambda: backend.encode_jpeg(sources, quality=75)
        else:
            # what gpuvio.encode_jpeg picks for CUDA tensors; the CPU backend there is no GPU figure
            served, _ = _dispatch.select_backend("encode_jpeg", "auto")
            if served.device_type != "cuda":
                raise CpuServed(f"encode_jpeg of CUDA tensors goes to the {served.name!r} backend")
            log(f"  encode_jpeg backend: {served.name}")
            encode = lambda: gpuvio.encode_jpeg(sources, quality=75)
        seconds = _served_by(served, "encode_jpeg", lambda: _time(encode, repeats=repeats, warmup=2, sync=sync))
        rec.add(f"encode_jpeg_{tag}_batch_imgs_per_s", count / seconds, "img/s")

    def cpu_backend() -> None:
        dec, enc = _cpu_all_cores(cpu, items, repeats=max(2, repeats // 2))
        rec.add("decode_jpeg_cpu_backend_all_cores_imgs_per_s", dec, "img/s")
        rec.add("encode_jpeg_cpu_backend_all_cores_imgs_per_s", enc, "img/s")
        rec.add("cpu_cores", os.cpu_count() or 1, "cores")

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
        rec.add(f"decode_jpeg_{tag}_batch_nvimgcodec_raw_imgs_per_s", count / seconds, "img/s")
        if not cpu_only:
            on_gpu = all(image is not None and image.buffer_kind == nv.ImageBufferKind.STRIDED_DEVICE
                         for image in raw())
            rec.add("nvimgcodec_decoded_on_gpu", 1.0 if on_gpu else 0.0, "bool")

    def gpu_only_decoder() -> None:
        # nvJPEG's CUDA decoder without the hardware engine: nvImageCodec files it as a hybrid
        # CPU+GPU backend (its GPU_ONLY kind has no JPEG decoder), the control for the engine's parity
        cuda_decoder = NvImgCodecBackend(backend_kinds=["hybrid"])
        seconds = _served_by(cuda_decoder, "CUDA-decoder-only decode", lambda: _time(
            lambda: decode_backend(cuda_decoder, items), repeats=repeats, warmup=2, sync=sync))
        rec.add("decode_jpeg_cuda_batch_cuda_decoder_imgs_per_s", count / seconds, "img/s")
        got = _served_by(cuda_decoder, "CUDA-decoder-only parity", lambda: decode_backend(cuda_decoder, items))
        rec.add("image_parity_mean_abs_diff_cuda_decoder", _parity(got, reference), "mean |diff| (0-255)")

    def torchvision_peer() -> None:
        try:
            import torchvision.io as tvio
        except ImportError:
            log("  torchvision not installed: no peer number")
            return
        tv = lambda: tvio.decode_jpeg(tensors, device=device)
        seconds = _time(tv, repeats=repeats, warmup=2, sync=sync)
        rec.add("decode_jpeg_cuda_batch_torchvision_imgs_per_s", count / seconds, "img/s")
        rec.add("image_parity_mean_abs_diff_torchvision", _parity(tv(), reference), "mean |diff| (0-255)")

    # the required figures first: a timeout then cuts the optional ones
    if have_backend:
        rec.guard("decode_jpeg", user_decode)
        rec.guard("parity generated", lambda: parity("generated", items, reference))
        if data["shared_items"]:
            rec.guard("parity shared", lambda: parity("shared", data["shared_items"], data["shared_reference"]))
        else:
            log("  shared test JPEGs not found: parity on the generated ones only")
        rec.add(f"image_parity_sets_on_gpu{suffix}", len(parities), "count")
        if parities:
            rec.add(f"image_parity_mean_abs_diff{suffix}", max(parities), "mean |diff| (0-255)")
        else:
            rec.error("image parity", "nvImageCodec decoded none of the parity sets wholly: no parity figure")
        rec.guard("encode_jpeg", encoding)
    rec.guard("CPU backend on all cores", cpu_backend)
    if have_backend:
        rec.guard("nvImageCodec raw decode", raw_library)
    # decode-time transforms (issue 13), after the required figures: CPU and CUDA img/s, CUDA vs CPU pixels
    gpu_transforms.image(rec, tensors, cuda=not cpu_only, repeats=max(2, repeats // 2),
                         served=lambda what, fn: _served_by(_dispatch.get_backend("nvimgcodec"), what, fn))
    if not cpu_only:
        rec.guard("CUDA-decoder-only backend", gpu_only_decoder)
        rec.guard("torchvision peer", torchvision_peer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-only", action="store_true",
                        help="dry run without a GPU: nvImageCodec's CPU-only mode (names say cpu_only)")
    parser.add_argument("--images", type=int, default=256, help="JPEGs per batch (default 256)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per measurement (default 7)")
    parser.add_argument("--json", metavar="OUT", help="write {results, errors, running, complete} here, "
                                                      "after every figure")
    args = parser.parse_args(argv)
    rec = Recorder(args.json)
    try:
        run(rec, cpu_only=args.cpu_only, images=args.images, repeats=args.repeats)
    except Exception as exc:  # noqa: BLE001 - e.g. an import error: recorded, like every other failure
        rec.error("gpu_image", f"{type(exc).__name__}: {exc}")
    return rec.finish()


if __name__ == "__main__":
    sys.exit(main())
