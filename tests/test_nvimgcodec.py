"""The nvImageCodec image backend against the CPU backend (the reference).

Without a GPU the backend runs with nvImageCodec's CPU-only device id and CPU codecs: that
exercises this backend's own code (JPEG screening, batching, mode handling, the per-image CPU
fallback and error policy, the tensor hand-off, encoding) through the real library. Both sides
then decode with libjpeg-turbo (fancy upsampling, integer IDCT), so results must be identical.
The ``cuda`` tests check what only a GPU can show: nvJPEG parity (mean abs diff < 1), CUDA
outputs, stream ordering and the GPU encoder.

Every backend object logs into its backend's part of ``gpuvio._fallback.LOG`` (``fallbacks`` is a
view of it), so a test that counts exactly resets that view first.
"""

from __future__ import annotations

import gc
import io
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import media_path

import gpuvio
from gpuvio import ImageReadMode, _dispatch
from gpuvio._errors import DecodeError, GpuvioError
from gpuvio._formats import sniff_image_format
from gpuvio._jpeg import read_frame
from gpuvio._protocols import ImageDecoder, JpegEncoder

nvimgcodec = pytest.importorskip("nvidia.nvimgcodec", reason="nvImageCodec is not installed "
                                 "(pip install nvidia-nvimgcodec-cu12)")

from gpuvio._backends._nvimgcodec import NvImgCodecBackend

CPU = torch.device("cpu")
MODES = [ImageReadMode.UNCHANGED, ImageReadMode.GRAY, ImageReadMode.GRAY_ALPHA, ImageReadMode.RGB,
         ImageReadMode.RGB_ALPHA]
SHARED_JPEGS = [
    ("torchvision", "images", "grace_hopper_517x606.jpg"),
    ("torchvision", "images", "logos", "rgb_pytorch.jpg"),
    ("torchvision", "images", "logos", "gray_pytorch.jpg"),
    ("torchvision", "images", "logos", "cmyk_pytorch.jpg"),
    ("torchcodec", "gradient.jpg"),
    ("torchcodec", "grayscale.jpg"),
    ("torchcodec", "cmyk.jpg"),
]


class CpuOnlyNvImgCodec(NvImgCodecBackend):
    """The backend in CPU-only mode, registered as a CPU backend so the front-ends can reach it."""

    def __init__(self) -> None:
        super().__init__(cpu_only=True)


@pytest.fixture(scope="module")
def backend() -> NvImgCodecBackend:
    return NvImgCodecBackend(cpu_only=True)


@pytest.fixture(scope="module")
def reference() -> ImageDecoder:
    return _dispatch.get_backend("cpu")


@pytest.fixture
def via_front_end():
    """Register the CPU-only backend under a test name for ``gpuvio.decode_image(backend=...)``."""
    _dispatch._load_builtin_backends()
    _dispatch.register_backend("nvimgcodec-cpu-test", device_type="cpu",
                               operations={"decode_image", "encode_jpeg"},
                               loader=f"{__name__}:CpuOnlyNvImgCodec", probe=lambda: None)
    yield "nvimgcodec-cpu-test"
    _dispatch._unregister_backend("nvimgcodec-cpu-test")


def _item(data: bytes) -> tuple[memoryview, str]:
    view = memoryview(data)
    return view, sniff_image_format(view)


def _read(*parts: str) -> bytes:
    return media_path(*parts).read_bytes()


def _jpeg(array: np.ndarray, **save: object) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(array).save(out, format="JPEG", **save)
    return out.getvalue()


def _photo(height: int = 75, width: int = 101, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients plus noise: exercises chroma upsampling like a photo does."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height) + 60], axis=2)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def _undefined_qtable(data: bytes) -> bytes:
    """The JPEG with its first component pointing at quantisation table 3, which is not defined.

    The marker structure stays valid (screening passes it), but libjpeg rejects the frame: this
    is how to make the library itself fail on one member of a batch.
    """
    out = bytearray(data)
    frame = read_frame(data)
    assert frame is not None
    out[frame.offset + 12] = 3
    return bytes(out)


def _assert_same(got, want, what: str) -> None:
    if isinstance(want, BaseException):
        assert isinstance(got, BaseException), f"{what}: expected {want!r}, got a tensor"
        assert type(got) is type(want) and str(got) == str(want), what
        return
    assert isinstance(got, torch.Tensor), f"{what}: {got!r}"
    assert got.shape == want.shape and got.dtype == want.dtype and got.device == want.device, what
    assert torch.equal(got, want), f"{what}: max diff {(got.int() - want.int()).abs().max()}"


# --------------------------------------------------------------------------- CPU-only: library + our code


def test_library_is_imported_only_when_the_backend_is_created():
    script = textwrap.dedent("""
        import sys, gpuvio
        gpuvio.backends()
        import gpuvio._backends._nvimgcodec, gpuvio._backends._dali
        assert "nvidia.nvimgcodec" not in sys.modules, "imported by gpuvio"
        assert "nvidia.dali" not in sys.modules, "imported by gpuvio"
        from gpuvio._backends._nvimgcodec import NvImgCodecBackend
        NvImgCodecBackend(cpu_only=True)
        assert "nvidia.nvimgcodec" in sys.modules
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_backend_is_a_plain_image_decoder_and_jpeg_encoder_logging_into_the_process_log(backend):
    from gpuvio import _fallback

    assert isinstance(backend, ImageDecoder) and isinstance(backend, JpegEncoder)
    assert not hasattr(backend, "operations") and not hasattr(backend, "device_type")
    backend.fallbacks.reset()
    gpu_before = _fallback.LOG.gpu_count("nvimgcodec")
    items = [_item(_jpeg(_photo())), _item(_read("torchvision", "images", "logos", "palette_pytorch.png"))]
    backend.decode_images(items, mode=ImageReadMode.RGB, apply_exif_orientation=False, device=CPU, on_error="raise")
    assert _fallback.LOG.gpu_count("nvimgcodec") == gpu_before + 1 and backend.fallbacks.gpu_images == 1
    assert backend.fallbacks.counts() == {"png is decoded on the CPU": 1}
    assert _fallback.Fallback("nvimgcodec", "decode_image", "png is decoded on the CPU") in _fallback.LOG.counts()


def test_a_stray_cpu_exception_is_stored_as_a_decode_error_naming_it(backend, monkeypatch):
    from gpuvio._backends import _nvimgcodec_common

    class Flaky:
        def decode_images(self, items, **kwargs):
            return [KeyError("lost")] * len(items)

    monkeypatch.setattr(_nvimgcodec_common, "cpu_backend", lambda: Flaky())
    png = _item(_read("torchvision", "images", "logos", "palette_pytorch.png"))
    (got,) = backend.decode_images([png], mode=ImageReadMode.RGB, apply_exif_orientation=False, device=CPU,
                                   on_error="skip")
    assert isinstance(got, DecodeError) and "KeyError" in str(got) and isinstance(got.__cause__, KeyError)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
def test_shared_jpegs_match_the_cpu_backend(backend, reference, mode):
    items = [_item(_read(*parts)) for parts in SHARED_JPEGS]
    got = backend.decode_images(items, mode=mode, apply_exif_orientation=False, device=CPU, on_error="raise")
    want = reference.decode_images(items, mode=mode, apply_exif_orientation=False, device=CPU, on_error="raise")
    for parts, g, w in zip(SHARED_JPEGS, got, want):
        _assert_same(g, w, f"{parts[-1]} {mode.name}")


@pytest.mark.parametrize("subsampling", [0, 1, 2], ids=["444", "422", "420"])
def test_generated_jpegs_match_across_subsamplings(backend, reference, subsampling):
    items = [_item(_jpeg(_photo(seed=s), quality=q, subsampling=subsampling)) for s, q in ((1, 75), (2, 95))]
    for mode in (ImageReadMode.RGB, ImageReadMode.GRAY):
        got = backend.decode_images(items, mode=mode, apply_exif_orientation=False, device=CPU, on_error="raise")
        want = reference.decode_images(items, mode=mode, apply_exif_orientation=False, device=CPU,
                                       on_error="raise")
        for g, w in zip(got, want):
            _assert_same(g, w, f"subsampling {subsampling} {mode.name}")
    assert backend.fallbacks.gpu_images > 0


def test_batch_mixes_jpeg_png_cmyk_and_sends_non_jpeg_to_the_cpu(reference):
    backend = NvImgCodecBackend(cpu_only=True)
    backend.fallbacks.reset()
    items = [_item(_read("torchvision", "images", "grace_hopper_517x606.jpg")),
             _item(_read("torchvision", "images", "logos", "palette_pytorch.png")),
             _item(_read("torchvision", "images", "logos", "gray_pytorch.jpg")),
             _item(_read("torchvision", "images", "logos", "rgbalpha_pytorch16.png")),
             _item(_read("torchcodec", "cmyk.jpg"))]
    got = backend.decode_images(items, mode=ImageReadMode.UNCHANGED, apply_exif_orientation=False,
                                device=CPU, on_error="raise")
    want = reference.decode_images(items, mode=ImageReadMode.UNCHANGED, apply_exif_orientation=False,
                                   device=CPU, on_error="raise")
    for index, (g, w) in enumerate(zip(got, want)):
        _assert_same(g, w, f"item {index}")
    assert [t.shape[0] for t in got] == [3, 1, 1, 4, 4]
    assert got[3].dtype == torch.uint16
    counts = backend.fallbacks.counts()
    assert backend.fallbacks.gpu_images == 2
    assert counts == {"png is decoded on the CPU": 2, "4-component JPEG (CMYK/YCCK)": 1}


def test_bad_members_become_the_cpu_backends_errors_never_none(backend, reference):
    good = _read("torchvision", "images", "grace_hopper_517x606.jpg")
    items = [_item(good),
             _item(_read("torchvision", "images", "damaged_jpeg", "corrupt34_3.jpg")),  # truncated
             _item(_read("torchvision", "images", "damaged_jpeg", "corrupt.jpg")),  # bad marker
             _item(_undefined_qtable(_jpeg(_photo()))),  # nvImageCodec itself fails (returns None)
             _item(good)]
    before = backend.fallbacks.counts().get("nvImageCodec could not decode it", 0)
    got = backend.decode_images(items, mode=ImageReadMode.RGB, apply_exif_orientation=False,
                                device=CPU, on_error="skip")
    want = reference.decode_images(items, mode=ImageReadMode.RGB, apply_exif_orientation=False,
                                   device=CPU, on_error="skip")
    assert not any(g is None for g in got)
    for index, (g, w) in enumerate(zip(got, want)):
        _assert_same(g, w, f"item {index}")
    assert "Image is incomplete or truncated" in str(got[1])
    assert "Unsupported marker type 0xae" in str(got[2])
    assert isinstance(got[3], DecodeError)
    assert all(isinstance(g, (torch.Tensor, GpuvioError)) for g in got)
    assert backend.fallbacks.counts()["nvImageCodec could not decode it"] == before + 1


def test_long_batches_overlap_screening_and_still_route_bad_members(reference):
    """From 8 images on, the library decodes while the scan data is checked (a second thread)."""
    backend = NvImgCodecBackend(cpu_only=True)
    backend.fallbacks.reset()
    items = [_item(_jpeg(_photo(seed=s), quality=85)) for s in range(12)]
    items[3] = _item(_read("torchvision", "images", "damaged_jpeg", "corrupt.jpg"))
    items[7] = _item(_read("torchvision", "images", "damaged_jpeg", "corrupt34_2.jpg"))
    items[9] = _item(_jpeg(_photo(seed=99)[:, :, 0], quality=85))  # grayscale: a second group
    for mode in (ImageReadMode.UNCHANGED, ImageReadMode.RGB):
        got = backend.decode_images(items, mode=mode, apply_exif_orientation=False, device=CPU, on_error="skip")
        want = reference.decode_images(items, mode=mode, apply_exif_orientation=False, device=CPU,
                                       on_error="skip")
        for index, (g, w) in enumerate(zip(got, want)):
            _assert_same(g, w, f"item {index} {mode.name}")
    assert backend.fallbacks.gpu_images == 20
    assert backend.fallbacks.counts() == {"corrupt JPEG: unknown marker in the scan data": 2,
                                          "truncated JPEG: no end-of-image marker": 2}


def test_images_over_the_bomb_limit_follow_the_cpu_backend(reference, monkeypatch):
    from PIL import Image

    backend = NvImgCodecBackend(cpu_only=True)
    backend.fallbacks.reset()
    items = [_item(_jpeg(_photo(40, 50)))]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 900)  # 2000 pixels: over twice the limit
    with pytest.raises(ValueError) as got:
        backend.decode_images(items, mode=ImageReadMode.RGB, apply_exif_orientation=False, device=CPU,
                              on_error="raise")
    with pytest.raises(ValueError) as want:
        reference.decode_images(items, mode=ImageReadMode.RGB, apply_exif_orientation=False, device=CPU,
                                on_error="raise")
    assert type(got.value) is type(want.value) and str(got.value) == str(want.value)
    assert backend.fallbacks.counts() == {"JPEG larger than the decompression-bomb limit": 1}


def test_a_single_bad_image_raises_when_asked_to(backend):
    damaged = _item(_read("torchvision", "images", "damaged_jpeg", "corrupt34_2.jpg"))
    with pytest.raises(RuntimeError, match="Image is incomplete or truncated"):
        backend.decode_images([damaged], mode=ImageReadMode.RGB, apply_exif_orientation=False,
                              device=CPU, on_error="raise")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_the_cpu_backend(backend, reference, orientation):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    items = [_item(_jpeg(_photo(30, 53), quality=90, exif=exif))]
    for apply in (False, True):
        got = backend.decode_images(items, mode=ImageReadMode.RGB, apply_exif_orientation=apply,
                                    device=CPU, on_error="raise")[0]
        want = reference.decode_images(items, mode=ImageReadMode.RGB, apply_exif_orientation=apply,
                                       device=CPU, on_error="raise")[0]
        _assert_same(got, want, f"orientation {orientation} apply={apply}")
    assert got.shape[1:] == ((53, 30) if orientation >= 5 else (30, 53))


def test_decoded_tensor_outlives_the_library_image(backend, reference):
    """The hand-off shares nvImageCodec's buffer; the tensor must keep it alive on its own."""
    items = [_item(_read("torchcodec", "gradient.jpg"))] * 3
    got = backend.decode_images(items, mode=ImageReadMode.RGB, apply_exif_orientation=False,
                                device=CPU, on_error="raise")
    gc.collect()
    churn = [np.full((720, 1280, 3), 7, dtype=np.uint8) for _ in range(4)]
    want = reference.decode_images(items[:1], mode=ImageReadMode.RGB, apply_exif_orientation=False,
                                   device=CPU, on_error="raise")[0]
    del churn
    for tensor in got:
        assert torch.equal(tensor, want)
        assert tensor.stride()[0] == 1  # channels-first view of channels-last memory


def test_front_end_batches_raise_naming_the_index_or_skip(via_front_end):
    good = _read("torchvision", "images", "logos", "rgb_pytorch.jpg")
    truncated = good[: len(good) // 2]
    expected = gpuvio.decode_jpeg(good)
    out = gpuvio.decode_jpeg([good, good], backend=via_front_end)
    assert all(torch.equal(t, expected) for t in out)
    with pytest.raises(RuntimeError, match=r"image 1 of 3: Image is incomplete or truncated"):
        gpuvio.decode_jpeg([good, truncated, good], backend=via_front_end)
    with pytest.warns(RuntimeWarning, match="skipped 1 of 3"):
        kept = gpuvio.decode_image([good, truncated, good], backend=via_front_end, on_error="skip")
    assert len(kept) == 2 and all(torch.equal(t, expected) for t in kept)
    with pytest.raises(RuntimeError, match="Image is incomplete or truncated"):
        gpuvio.decode_image(truncated, backend=via_front_end)


@pytest.mark.parametrize("quality", [1, 50, 75, 95, 100])
@pytest.mark.parametrize("channels", [3, 1])
def test_encode_jpeg_matches_pillow(backend, reference, quality, channels):
    from PIL import Image

    image = torch.from_numpy(_photo(61, 83, seed=quality)).permute(2, 0, 1)[:channels].contiguous()
    (ours,) = backend.encode_jpeg([image], quality=quality)
    (pillow,) = reference.encode_jpeg([image], quality=quality)
    assert ours.dtype == torch.uint8 and ours.dim() == 1 and ours.device == CPU
    ours_im = Image.open(io.BytesIO(ours.numpy().tobytes()))
    pillow_im = Image.open(io.BytesIO(pillow.numpy().tobytes()))
    assert ours_im.mode == pillow_im.mode == ("RGB" if channels == 3 else "L")
    assert ours_im.quantization == pillow_im.quantization
    assert ours_im.layer == pillow_im.layer  # same sampling factors: 4:2:0 for colour
    assert np.array_equal(np.asarray(ours_im), np.asarray(pillow_im))
    assert "nvImageCodec could not encode it" not in backend.fallbacks.counts()


def test_encode_jpeg_batch_of_mixed_and_non_contiguous_images(backend, reference):
    photo = torch.from_numpy(_photo(40, 64, seed=3))
    images = [photo.permute(2, 0, 1),  # channels-last memory: taken without a copy
              photo.permute(2, 0, 1).contiguous()[:, ::2, 1::3],  # strided view
              photo.permute(2, 0, 1)[:1].contiguous()]
    ours = backend.encode_jpeg(images, quality=80)
    pillow = reference.encode_jpeg([i.contiguous() for i in images], quality=80)
    decoded = backend.decode_images([_item(o.numpy().tobytes()) for o in ours], mode=ImageReadMode.UNCHANGED,
                                    apply_exif_orientation=False, device=CPU, on_error="raise")
    expected = reference.decode_images([_item(p.numpy().tobytes()) for p in pillow],
                                       mode=ImageReadMode.UNCHANGED, apply_exif_orientation=False,
                                       device=CPU, on_error="raise")
    for d, e in zip(decoded, expected):
        _assert_same(d, e, "round trip")
    assert "nvImageCodec could not encode it" not in backend.fallbacks.counts()


def test_constructor_validates_its_options():
    with pytest.raises(ValueError, match="backend_kinds"):
        NvImgCodecBackend(backend_kinds=["tpu"])
    with pytest.raises(ValueError, match="num_threads"):
        NvImgCodecBackend(cpu_only=True, num_threads=-1)


def test_gpu_mode_refuses_a_cpu_device():
    with pytest.raises(ValueError, match="CUDA tensors"):
        NvImgCodecBackend().decode_images([_item(_jpeg(_photo()))], mode=ImageReadMode.RGB,
                                          apply_exif_orientation=False, device=CPU, on_error="raise")


# --------------------------------------------------------------------------- on a GPU


def _generated_set() -> list[bytes]:
    """JPEGs made here (the shared media do not travel to GPU machines): colour at 4:2:0, 4:2:2 and
    4:4:4, and grayscale, ImageNet-sized."""
    photos = [_jpeg(_photo(375, 500, seed=s), quality=q, subsampling=ss)
              for s, q, ss in ((1, 90, 2), (2, 75, 1), (3, 95, 0))]
    return photos + [_jpeg(_photo(375, 500, seed=4)[:, :, 1], quality=90)]


def _shared_if_present() -> list[bytes]:
    """The shared 1- and 3-component JPEGs that exist here (CMYK ones always go to the CPU)."""
    from conftest import MEDIA

    return [MEDIA.joinpath(*parts).read_bytes() for parts in SHARED_JPEGS
            if "cmyk" not in parts[-1] and MEDIA.joinpath(*parts).exists()]


def _mean_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.cpu().float() - b.cpu().float()).abs().mean().item()


@pytest.fixture(scope="module")
def gpu_backend() -> NvImgCodecBackend:
    return NvImgCodecBackend()


@pytest.mark.cuda
@pytest.mark.parametrize("mode", [ImageReadMode.UNCHANGED, ImageReadMode.RGB, ImageReadMode.GRAY,
                                  ImageReadMode.RGB_ALPHA], ids=lambda m: m.name)
def test_cuda_parity_with_the_cpu_backend(gpu_backend, reference, mode):
    items = [_item(data) for data in _generated_set() + _shared_if_present()]
    device = torch.device("cuda", 0)
    gpu_backend.fallbacks.reset()  # the CPU-only tests logged under the same backend name
    before = gpu_backend.fallbacks.gpu_images
    got = gpu_backend.decode_images(items, mode=mode, apply_exif_orientation=False, device=device,
                                    on_error="raise")
    want = reference.decode_images(items, mode=mode, apply_exif_orientation=False, device=CPU, on_error="raise")
    for index, (g, w) in enumerate(zip(got, want)):
        assert g.device == device and g.shape == w.shape and g.dtype == w.dtype, index
        assert _mean_abs_diff(g, w) < 1.0, (index, _mean_abs_diff(g, w))
    assert gpu_backend.fallbacks.gpu_images - before == len(items)  # none went to the CPU
    assert "nvImageCodec could not decode it" not in gpu_backend.fallbacks.counts()


@pytest.mark.cuda
def test_cuda_front_end_mixed_batch_cmyk_and_errors(reference):
    from PIL import Image

    jpeg = _generated_set()[0]
    png_out, cmyk_out = io.BytesIO(), io.BytesIO()
    Image.fromarray(_photo(50, 70, seed=5)).save(png_out, format="PNG")
    Image.fromarray(_photo(50, 70, seed=6)).convert("CMYK").save(cmyk_out, format="JPEG", quality=90)
    png, cmyk = png_out.getvalue(), cmyk_out.getvalue()
    registered = _dispatch.get_backend("nvimgcodec")
    before = registered.fallbacks.gpu_images
    out = gpuvio.decode_image([jpeg, png, cmyk], device="cuda", backend="nvimgcodec")
    assert [t.device.type for t in out] == ["cuda"] * 3
    assert registered.fallbacks.gpu_images == before + 1  # the JPEG; PNG and CMYK went to the CPU
    want = reference.decode_images([_item(png), _item(cmyk)], mode=ImageReadMode.UNCHANGED,
                                   apply_exif_orientation=False, device=CPU, on_error="raise")
    assert torch.equal(out[1].cpu(), want[0])
    assert torch.equal(out[2].cpu(), want[1]) and out[2].shape[0] == 4  # CMYK, from the CPU backend
    truncated = jpeg[: len(jpeg) // 2]
    with pytest.raises(RuntimeError, match=r"image 1 of 3: Image is incomplete or truncated"):
        gpuvio.decode_jpeg([jpeg, truncated, jpeg], device="cuda", backend="nvimgcodec")
    with pytest.warns(RuntimeWarning, match="skipped 1 of 3"):
        kept = gpuvio.decode_jpeg([jpeg, truncated, jpeg], device="cuda", backend="nvimgcodec", on_error="skip")
    assert len(kept) == 2 and kept[0].is_cuda


@pytest.mark.cuda
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_cuda_exif_orientation(gpu_backend, reference, orientation):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    items = [_item(_jpeg(_photo(64, 96), quality=90, exif=exif))]
    got = gpu_backend.decode_images(items, mode=ImageReadMode.RGB, apply_exif_orientation=True,
                                    device=torch.device("cuda"), on_error="raise")[0]
    want = reference.decode_images(items, mode=ImageReadMode.RGB, apply_exif_orientation=True,
                                   device=CPU, on_error="raise")[0]
    assert got.shape == want.shape and _mean_abs_diff(got, want) < 1.0


@pytest.mark.cuda
def test_cuda_decode_is_ordered_on_the_current_stream(gpu_backend, reference):
    items = [_item(_jpeg(_photo(375, 500, seed=s), quality=90)) for s in range(8)]
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        got = gpu_backend.decode_images(items, mode=ImageReadMode.RGB, apply_exif_orientation=False,
                                        device=torch.device("cuda"), on_error="raise")
        doubled = [t.float() * 2 for t in got]  # queued on the same stream, after the decode
    stream.synchronize()
    want = reference.decode_images(items, mode=ImageReadMode.RGB, apply_exif_orientation=False,
                                   device=CPU, on_error="raise")
    for d, w in zip(doubled, want):
        assert (d.cpu() / 2 - w.float()).abs().mean().item() < 1.0


@pytest.mark.cuda
@pytest.mark.parametrize("channels", [3, 1])
def test_cuda_encode_jpeg_round_trip(reference, channels):
    from PIL import Image

    image = torch.from_numpy(_photo(375, 500, seed=9)).permute(2, 0, 1)[:channels].contiguous()
    encoded = gpuvio.encode_jpeg([image.cuda(), image.cuda()], quality=75)
    assert all(e.is_cuda and e.dtype == torch.uint8 for e in encoded)
    (pillow,) = reference.encode_jpeg([image], quality=75)
    ours_im = Image.open(io.BytesIO(encoded[0].cpu().numpy().tobytes()))
    pillow_im = Image.open(io.BytesIO(pillow.numpy().tobytes()))
    assert ours_im.size == (500, 375) and ours_im.mode == pillow_im.mode
    # what quality means: libjpeg's tables for that quality, the same chroma subsampling
    # (component ids and table numbering are the encoder's own business)
    assert all(ours_im.quantization.get(k) == q for k, q in pillow_im.quantization.items())
    assert [layer[1:3] for layer in ours_im.layer] == [layer[1:3] for layer in pillow_im.layer]
    assert encoded[0][-2:].cpu().tolist() == [0xFF, 0xD9]  # the bytes end at EOI, not at a buffer's capacity
    ours_error = _mean_abs_diff(torch.from_numpy(np.asarray(ours_im).copy()), image.permute(1, 2, 0).squeeze(2))
    pillow_error = _mean_abs_diff(torch.from_numpy(np.asarray(pillow_im).copy()), image.permute(1, 2, 0).squeeze(2))
    assert ours_error < pillow_error * 1.25 + 0.5
    assert "nvImageCodec could not encode it" not in _dispatch.get_backend("nvimgcodec").fallbacks.counts()
