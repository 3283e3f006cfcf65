"""The DALI image backend against the CPU backend (the reference).

Without a GPU, DALI runs CPU pipelines (``device_id=None``, decoder device ``"cpu"``, which is
libjpeg-turbo underneath): that exercises this backend's pipelines, batching, screening, the
per-image CPU fallback and the recovery from a failed DALI batch. Results must then be identical
to the CPU backend's. The ``cuda`` tests check the ``"mixed"`` (nvJPEG) pipelines: parity
(mean abs diff < 1) and CUDA outputs.
"""

from __future__ import annotations

import gc
import io
import os
import time

import numpy as np
import pytest
import torch
from conftest import media_path

import gpuvio
from gpuvio import ImageReadMode, _dispatch
from gpuvio._formats import sniff_image_format
from gpuvio._jpeg import read_frame
from gpuvio._protocols import ImageDecoder

pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install nvidia-dali-cuda120)")

from gpuvio._backends._dali import DaliBackend, _bucket

CPU = torch.device("cpu")
MODES = [ImageReadMode.UNCHANGED, ImageReadMode.GRAY, ImageReadMode.GRAY_ALPHA, ImageReadMode.RGB,
         ImageReadMode.RGB_ALPHA]
SHARED = [
    ("torchvision", "images", "grace_hopper_517x606.jpg"),
    ("torchvision", "images", "logos", "gray_pytorch.jpg"),
    ("torchvision", "images", "logos", "cmyk_pytorch.jpg"),
    ("torchvision", "images", "logos", "palette_pytorch.png"),
    ("torchcodec", "gradient.jpg"),
    ("torchcodec", "grayscale.jpg"),
]


@pytest.fixture(scope="module")
def backend() -> DaliBackend:
    return DaliBackend(cpu_only=True, num_threads=1, max_batch_size=8)


@pytest.fixture(scope="module")
def reference() -> ImageDecoder:
    return _dispatch.get_backend("cpu")


def _item(data: bytes) -> tuple[memoryview, str]:
    view = memoryview(data)
    return view, sniff_image_format(view)


def _photo(height: int = 48, width: int = 70, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height) + 60], axis=2)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def _jpeg(array: np.ndarray, **save: object) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(array).save(out, format="JPEG", **save)
    return out.getvalue()


def _assert_same(got, want, what: str) -> None:
    if isinstance(want, BaseException):
        assert isinstance(got, BaseException) and str(got) == str(want), what
        return
    assert isinstance(got, torch.Tensor), f"{what}: {got!r}"
    assert got.shape == want.shape and got.dtype == want.dtype and got.device == want.device, what
    assert torch.equal(got, want), what


def test_bucket_sizes():
    assert [_bucket(n) for n in (1, 2, 3, 5, 8, 9, 200)] == [1, 2, 4, 8, 8, 16, 256]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
def test_cpu_pipelines_match_the_cpu_backend(backend, reference, mode):
    items = [_item(media_path(*parts).read_bytes()) for parts in SHARED]
    items += [_item(_jpeg(_photo(seed=s), quality=85, subsampling=ss)) for s, ss in ((1, 0), (2, 1), (3, 2))]
    for exif in (False, True):
        got = backend.decode_images(items, mode=mode, apply_exif_orientation=exif, device=CPU, on_error="raise")
        want = reference.decode_images(items, mode=mode, apply_exif_orientation=exif, device=CPU,
                                       on_error="raise")
        for index, (g, w) in enumerate(zip(got, want)):
            _assert_same(g, w, f"item {index} {mode.name} exif={exif}")


def test_long_lists_run_in_chunks_and_keep_their_order(reference):
    backend = DaliBackend(cpu_only=True, num_threads=1, max_batch_size=4)
    backend.fallbacks.reset()  # fallbacks is this backend's part of the process-wide log
    items = [_item(_jpeg(_photo(20 + s, 30, seed=s), quality=90)) for s in range(11)]
    got = backend.decode_images(items, mode=ImageReadMode.RGB, apply_exif_orientation=False, device=CPU,
                                on_error="raise")
    want = reference.decode_images(items, mode=ImageReadMode.RGB, apply_exif_orientation=False, device=CPU,
                                   on_error="raise")
    for g, w in zip(got, want):
        _assert_same(g, w, "chunked")
    assert backend.fallbacks.gpu_images == 11
    assert {key[0] for key in backend._pipelines} <= {1, 2, 4}


@pytest.mark.parametrize("exif", [False, True])
def test_exif_orientation(backend, reference, exif):
    from PIL import Image

    for orientation in (2, 5, 6, 8):
        tags = Image.Exif()
        tags[0x0112] = orientation
        items = [_item(_jpeg(_photo(), quality=90, exif=tags))]
        got = backend.decode_images(items, mode=ImageReadMode.RGB, apply_exif_orientation=exif, device=CPU,
                                    on_error="raise")[0]
        want = reference.decode_images(items, mode=ImageReadMode.RGB, apply_exif_orientation=exif, device=CPU,
                                       on_error="raise")[0]
        _assert_same(got, want, f"orientation {orientation}")


def test_a_failing_sample_goes_to_the_cpu_and_the_rest_still_decode(reference):
    """DALI stops the whole batch at one bad sample; the backend retries without it."""
    backend = DaliBackend(cpu_only=True, num_threads=1, max_batch_size=8)
    backend.fallbacks.reset()
    broken = bytearray(_jpeg(_photo(seed=7)))
    broken[read_frame(bytes(broken)).offset + 12] = 3  # undefined quantisation table: passes screening, DALI fails
    items = [_item(_jpeg(_photo(seed=s))) for s in range(3)]
    items.insert(1, _item(bytes(broken)))
    items.append(_item(media_path("torchvision", "images", "damaged_jpeg", "corrupt34_4.jpg").read_bytes()))
    got = backend.decode_images(items, mode=ImageReadMode.RGB, apply_exif_orientation=False, device=CPU,
                                on_error="skip")
    want = reference.decode_images(items, mode=ImageReadMode.RGB, apply_exif_orientation=False, device=CPU,
                                   on_error="skip")
    for index, (g, w) in enumerate(zip(got, want)):
        _assert_same(g, w, f"item {index}")
    assert isinstance(got[1], RuntimeError) and isinstance(got[4], RuntimeError)
    counts = backend.fallbacks.counts()
    assert counts["DALI could not decode it"] == 1
    assert counts["truncated JPEG: no end-of-image marker"] == 1
    assert backend.fallbacks.gpu_images == 3
    # and the rebuilt pipeline still works
    again = backend.decode_images(items[:1], mode=ImageReadMode.RGB, apply_exif_orientation=False, device=CPU,
                                  on_error="raise")
    _assert_same(again[0], want[0], "after the failure")


def test_single_bad_image_raises(backend):
    damaged = _item(media_path("torchvision", "images", "damaged_jpeg", "corrupt.jpg").read_bytes())
    with pytest.raises(RuntimeError, match="Unsupported marker type 0xae"):
        backend.decode_images([damaged], mode=ImageReadMode.RGB, apply_exif_orientation=False, device=CPU,
                              on_error="raise")


def test_constructor_validates_its_options():
    with pytest.raises(ValueError, match="max_batch_size"):
        DaliBackend(cpu_only=True, max_batch_size=0)
    with pytest.raises(ValueError, match="hw_decoder_load"):
        DaliBackend(cpu_only=True, hw_decoder_load=1.5)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_destroys_inherited_pipelines(reference):
    # DALI's pipeline destructor waits for worker threads that a forked child lacks: a child whose
    # garbage collector met a pipeline (say, one the parent had dropped) hung for good
    items = [_item(_jpeg(_photo(seed=3)))]
    want = reference.decode_images(items, mode=ImageReadMode.RGB, apply_exif_orientation=False, device=CPU,
                                   on_error="raise")[0]

    def decode(backend: DaliBackend) -> torch.Tensor:
        return backend.decode_images(items, mode=ImageReadMode.RGB, apply_exif_orientation=False, device=CPU,
                                     on_error="raise")[0]

    dropped = DaliBackend(cpu_only=True, num_threads=1)
    decode(dropped)
    del dropped
    kept = DaliBackend(cpu_only=True, num_threads=1)
    decode(kept)
    pid = os.fork()
    if pid == 0:  # the child: collect everything, then decode with pipelines of its own
        code = 1
        try:
            gc.collect()
            code = 0 if torch.equal(decode(kept), want) else 3
            kept.close()
            gc.collect()
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung (DALI pipeline destroyed in the child)")
    assert os.waitstatus_to_exitcode(done[1]) == 0
    assert torch.equal(decode(kept), want)  # the parent's pipelines still work


@pytest.mark.cuda
@pytest.mark.parametrize("mode", [ImageReadMode.UNCHANGED, ImageReadMode.RGB, ImageReadMode.GRAY],
                         ids=lambda m: m.name)
def test_cuda_mixed_pipelines_match_the_cpu_backend(reference, mode):
    items = [_item(media_path(*parts).read_bytes()) for parts in SHARED]
    items += [_item(_jpeg(_photo(375, 500, seed=s), quality=90, subsampling=ss)) for s, ss in ((1, 2), (2, 0))]
    got = gpuvio.decode_image([bytes(d) for d, _ in items], mode=mode, device="cuda", backend="dali")
    want = reference.decode_images(items, mode=mode, apply_exif_orientation=False, device=CPU, on_error="raise")
    for index, (g, w) in enumerate(zip(got, want)):
        assert g.is_cuda and g.shape == w.shape and g.dtype == w.dtype, index
        assert (g.cpu().float() - w.float()).abs().mean().item() < 1.0, index
