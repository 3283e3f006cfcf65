"""The dispatcher: backend registry, device resolution, and clear errors (with a fake GPU backend)."""

from __future__ import annotations

import re

import pytest
import torch

import gpuvio
from gpuvio import _dispatch
from gpuvio._dispatch import register_backend, resolve_device, select_backend
from gpuvio._protocols import ImageDecoder


class FakeCudaBackend:
    """Stands in for a GPU backend so that routing can be tested without a GPU."""

    name = "fake-cuda"
    calls: list = []

    def decode_images(self, items, *, mode, apply_exif_orientation, device, on_error):
        FakeCudaBackend.calls.append(device)
        return [torch.zeros(3, 2, 2, dtype=torch.uint8) for _ in items]


@pytest.fixture
def fake_cuda(monkeypatch):
    """Register the fake backend first in the registry, and drop it afterwards."""
    _dispatch._load_builtin_backends()
    saved = dict(_dispatch._REGISTRY)
    _dispatch._REGISTRY.clear()
    register_backend("fake-cuda", device_type="cuda", operations={"decode_image"},
                     loader=f"{__name__}:FakeCudaBackend", probe=lambda: None)
    _dispatch._REGISTRY.update({k: v for k, v in saved.items() if k != "fake-cuda"})
    FakeCudaBackend.calls = []
    yield FakeCudaBackend
    _dispatch._unregister_backend("fake-cuda")
    _dispatch._REGISTRY.clear()
    _dispatch._REGISTRY.update(saved)


def _gpu_backend_usable(operation: str) -> bool:
    return any(b.usable and b.device_type == "cuda" and operation in b.operations for b in gpuvio.backends())


def test_backends_report_every_backend_with_a_reason():
    infos = {b.name: b for b in gpuvio.backends()}
    assert {"cpu", "nvdec", "nvimgcodec", "dali"} <= set(infos)
    assert infos["cpu"].usable and infos["cpu"].reason is None
    for name in ("nvdec", "nvimgcodec", "dali"):
        info = infos[name]
        assert info.device_type == "cuda"
        assert info.usable or info.reason  # never unusable without saying why
    assert "not usable" in repr(infos["nvdec"]) or infos["nvdec"].usable


def test_cpu_is_the_default():
    backend, device = select_backend("read_video")
    assert backend.name == "cpu" and device == torch.device("cpu")


@pytest.mark.parametrize("operation", ["read_video", "decode_image", "open_video"])
def test_cuda_without_gpu_backend_names_what_is_missing(operation):
    if _gpu_backend_usable(operation):
        pytest.skip("a GPU backend is usable here")
    with pytest.raises(gpuvio.BackendUnavailableError) as info:
        select_backend(operation, "cuda")
    message = str(info.value)
    assert "cuda" in message and operation in message
    assert "not installed" in message or "CUDA" in message or "CPU-only" in message
    # also catchable as the builtins torchvision users would catch
    assert isinstance(info.value, ImportError) and isinstance(info.value, RuntimeError)


def test_auto_falls_back_to_cpu_without_gpu():
    if _gpu_backend_usable("decode_image"):
        pytest.skip("a GPU backend is usable here")
    backend, device = select_backend("decode_image", "auto")
    assert backend.name == "cpu" and device.type == "cpu"


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "mps", 3, object()])
def test_bad_device_is_rejected_clearly(device):
    with pytest.raises((gpuvio.InvalidArgumentError, gpuvio.InvalidInputTypeError)) as info:
        select_backend("read_video", device)
    assert "device" in str(info.value)


def test_unknown_backend_lists_the_registered_ones():
    with pytest.raises(gpuvio.InvalidArgumentError, match="registered.*cpu"):
        select_backend("read_video", backend="nope")


def test_backend_that_does_not_support_the_operation():
    with pytest.raises(gpuvio.InvalidArgumentError, match="does not support read_video"):
        select_backend("read_video", backend="nvimgcodec")


def test_forced_unusable_backend_says_why():
    info = {b.name: b for b in gpuvio.backends()}["dali"]
    if info.usable:
        pytest.skip("DALI is usable here")
    with pytest.raises(gpuvio.BackendUnavailableError, match=re.escape(info.reason)):
        select_backend("decode_image", "cuda", backend="dali")


def test_cuda_and_auto_route_to_a_usable_gpu_backend(fake_cuda, generated):
    out = gpuvio.decode_image(str(generated["jpeg"]), device="cuda:1")
    assert out.shape == (3, 2, 2)
    assert fake_cuda.calls == [torch.device("cuda", 1)]
    backend, device = select_backend("decode_image", "auto")
    assert backend.name == "fake-cuda" and device == torch.device("cuda", 0)
    # operations the fake backend does not serve still go to the CPU under "auto"
    backend, device = select_backend("read_video", "auto")
    assert backend.name == "cpu" and device.type == "cpu"


def test_auto_follows_local_rank(fake_cuda, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "3")
    _, device = select_backend("decode_image", "auto")
    assert device == torch.device("cuda", 3)


def test_cpu_backend_forced_with_cuda_device_is_allowed():
    # the CPU backend serves CUDA devices by decoding on the host and uploading
    backend, device = select_backend("read_video", "cuda", backend="cpu")
    assert backend.name == "cpu" and device.type == "cuda"


def test_register_backend_rejects_unknown_operations():
    with pytest.raises(gpuvio.InvalidArgumentError, match="unknown operations"):
        register_backend("bad", device_type="cpu", operations={"transcode"}, loader="x:Y", probe=lambda: None)


def test_a_bare_cuda_device_resolves_by_one_rule(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_device(torch.device("cuda")) == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "2")  # torchrun, before CUDA is initialised
    assert resolve_device(torch.device("cuda")) == torch.device("cuda", 2)
    assert resolve_device(torch.device("cuda", 5)) == torch.device("cuda", 5)
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    _, device = select_backend("read_video", "cuda", backend="cpu")
    assert device == torch.device("cuda", 2)


def test_fake_backend_satisfies_the_image_protocol():
    assert isinstance(FakeCudaBackend(), ImageDecoder)


def test_every_backend_implements_what_its_registry_entry_lists():
    """The registry is the one list of operations; each listed one has its protocol's method."""
    needs = {"read_video": ("frame_source", "concurrency"), "open_video": ("frame_source", "concurrency"),
             "decode_image": ("decode_images",), "encode_jpeg": ("encode_jpeg",), "encode_png": ("encode_png",),
             "write_video": ("write_video",)}
    assert set(needs) == set(_dispatch.OPERATIONS)
    _dispatch._load_builtin_backends()
    for name, entry in _dispatch._REGISTRY.items():
        module, _, attr = entry.loader.partition(":")
        cls = getattr(__import__(module, fromlist=[attr]), attr)
        for operation in entry.operations:
            missing = [m for m in needs[operation] if not callable(getattr(cls, m, None))]
            assert not missing, (name, operation, missing)
        assert cls.name == name


def test_backends_report_fallbacks_from_the_one_log():
    from gpuvio import _fallback

    record = _fallback.record("nvdec", "read_video", "a test reason for the report")
    info = {b.name: b for b in gpuvio.backends()}["nvdec"]
    assert info.fallbacks.get(record.reason, 0) >= 1
    assert record in _fallback.LOG.counts("nvdec")
