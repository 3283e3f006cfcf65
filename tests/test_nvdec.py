"""The NVDEC backend and decode_videos.

Without a GPU (CI) these tests check everything that does not need NVDEC itself:

* what ``gpuvio.backends()`` and ``device="cuda"`` say when NVDEC cannot run;
* ``decode_videos`` on the CPU against ``read_video``, and that CPU work never touches CUDA;
* the colour arithmetic the GPU runs: the batched conversion is bit-identical to
  ``gpuvio._color.nv12_to_rgb``, the fused CUDA kernel's source (compiled for the CPU with the
  IEEE intrinsics emulated) is bit-identical to it, the "torchvision" policy's fused kernel
  (compiled the same way) is bit-identical to ``swscale_nv12_to_rgb``, the device self-checks work,
  and NV12 planes from PyAV converted this way match the CPU backend;
* the whole GPU pipeline (packets, frame selection, seeking, random access, batching,
  conversion, fallback) driven by FFmpeg's software decoder in place of NVDEC
  (``SoftwareNv12Session``), against the CPU backend.

The ``cuda``-marked tests run the real thing against the CPU backend on a GPU machine.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import gpuvio
from gpuvio import _dispatch
from gpuvio._backends._nvdec import NvdecBackend
from gpuvio._backends._nvdec_color import (KERNEL_SOURCE, SWSCALE_KERNEL_SOURCE, kernel_params, nv12_batch_to_rgb,
                                          swscale_kernel_params)
from gpuvio._backends._nvdec_plan import NvdecUnsupported, StreamPlan, check_caps, plan_stream
from gpuvio._backends._nvdec_source import SurfaceConverter
from gpuvio._media import MediaReader
from gpuvio._color import nv12_to_rgb
from gpuvio._multi import decode_videos
from gpuvio._swscale_rgb import swscale_nv12_to_rgb

import _software_nv12
from _software_nv12 import SoftwareNv12Session
from conftest import media_path

_CPU = torch.device("cpu")

# the parity target against the CPU backend (8-bit 4:2:0 H.264 / HEVC / VP9)
MAX_DIFF = 2
MEAN_DIFF = 0.5


def _diff(a: torch.Tensor, b: torch.Tensor) -> tuple[int, float]:
    assert a.shape == b.shape, (a.shape, b.shape)
    if a.numel() == 0:
        return 0, 0.0
    d = (a.cpu().int() - b.cpu().int()).abs()
    return int(d.max()), float(d.float().mean())


def _assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    worst, mean = _diff(a, b)
    assert worst <= MAX_DIFF and mean <= MEAN_DIFF, (worst, mean)


@pytest.fixture(scope="module")
def clips(generated, tmp_path_factory) -> dict[str, Path]:
    """Small clips of the codecs and formats the backend must handle or hand to the CPU."""
    from gpuvio._samples import make_sample_video

    root = tmp_path_factory.mktemp("nvdec")
    out = {"h264": generated["h264"], "h264_small": generated["h264_noaudio"], "mpeg4": generated["mpeg4"]}
    specs = {
        "hevc": ("hevc.mp4", dict(codec="libx265")),
        "vp9": ("vp9.webm", dict(codec="libvpx-vp9")),
        "yuv444": ("yuv444.mp4", dict(codec="libx264", pix_fmt="yuv444p")),
        "odd": ("odd.webm", dict(codec="libvpx-vp9", width=162 - 1, height=97)),
    }
    for key, (name, kwargs) in specs.items():
        args = dict(width=320, height=240, seconds=1.0, gop=12, audio=False)
        args.update(kwargs)
        out[key] = make_sample_video(root / name, **args)
    return out


SW = _software_nv12.NAME


@pytest.fixture(scope="module")
def software():
    """The NVDEC backend with FFmpeg's software decoder standing in for NVDEC (CPU surfaces),
    registered as backend ``"nvdec-software"`` for the public API."""
    with _software_nv12.registered() as backend:
        yield backend


def _reader(decoder, path, stream=("video", 0)) -> MediaReader:
    return MediaReader(str(path), stream=stream, decoder=decoder, device=_CPU)


def _cpu_reader(path, stream=("video", 0)) -> MediaReader:
    return _reader(_dispatch.get_backend("cpu"), path, stream)


def _nvdec_info() -> gpuvio.BackendInfo:
    return next(b for b in gpuvio.backends() if b.name == "nvdec")


# ------------------------------------------------------------------------- without NVDEC
def test_backends_report_why_nvdec_cannot_run():
    info = _nvdec_info()
    if info.usable:
        pytest.skip("NVDEC is usable on this machine")
    assert info.device_type == "cuda"
    assert {"read_video", "open_video"} <= info.operations
    assert any(word in info.reason for word in ("PyNvVideoCodec", "CUDA", "CPU-only", "libnvcuvid", "av"))


def test_nvdec_probe_names_the_missing_piece():
    from gpuvio._backends._cuda import nvdec_probe

    reason = nvdec_probe()
    if reason is None:
        pytest.skip("NVDEC can run on this machine")
    assert any(word in reason for word in ("PyNvVideoCodec", "av is not", "CUDA", "CPU-only", "libnvcuvid"))


def test_device_cuda_without_nvdec_names_what_is_missing(generated):
    info = _nvdec_info()
    if info.usable:
        pytest.skip("NVDEC is usable on this machine")
    path = generated["h264"]
    for call in (lambda: gpuvio.read_video(path, device="cuda"),
                 lambda: gpuvio.VideoReader(path, device="cuda:0"),
                 lambda: decode_videos([path], device="cuda")):
        with pytest.raises(gpuvio.BackendUnavailableError) as error:
            call()
        assert info.reason in str(error.value) and "nvdec" in str(error.value)


def test_backend_nvdec_forced_without_nvdec_raises(generated):
    info = _nvdec_info()
    if info.usable:
        pytest.skip("NVDEC is usable on this machine")
    with pytest.raises(gpuvio.BackendUnavailableError, match="nvdec"):
        gpuvio.read_video(generated["h264"], device="cuda", backend="nvdec")


def test_decode_videos_on_cpu_equals_read_video(clips):
    paths = [clips["h264"], clips["hevc"], clips["h264_small"], clips["vp9"]]
    sources = paths[:2] + [clips["h264_small"].read_bytes(), str(clips["vp9"])]  # paths, bytes, str
    for kwargs in ({}, {"start_pts": 0.3, "end_pts": 0.7, "pts_unit": "sec"}):
        results = decode_videos(sources, device="cpu", **kwargs)
        assert len(results) == len(paths)
        for path, frames in zip(paths, results):
            expected = gpuvio.read_video(path, **kwargs)[0]
            assert frames.device.type == "cpu" and torch.equal(frames, expected)
    # one worker gives the same, in the same order
    serial = decode_videos(sources[:2], device="cpu", max_workers=1)
    assert all(torch.equal(a, b) for a, b in zip(serial, decode_videos(sources[:2], device="cpu")))


def test_decode_videos_auto_runs_on_the_cpu_without_a_gpu(clips):
    if _nvdec_info().usable:
        pytest.skip("NVDEC is usable on this machine")
    (frames,) = decode_videos([clips["h264_small"]])
    assert frames.device.type == "cpu"
    assert torch.equal(frames, gpuvio.read_video(clips["h264_small"])[0])


def test_decode_videos_rejects_bad_arguments(clips):
    path = clips["h264_small"]
    with pytest.raises(gpuvio.InvalidInputTypeError, match="list or tuple"):
        decode_videos(str(path))
    with pytest.raises(gpuvio.InvalidArgumentError, match="pts_unit"):
        decode_videos([path], pts_unit="frames")
    with pytest.raises(gpuvio.InvalidArgumentError, match="end_pts"):
        decode_videos([path], start_pts=5, end_pts=1)
    with pytest.raises(gpuvio.InvalidArgumentError, match="max_workers"):
        decode_videos([path], device="cpu", max_workers=0)
    with pytest.raises(FileNotFoundError):
        decode_videos([path, path.parent / "missing.mp4"], device="cpu")
    assert decode_videos([], device="cpu") == []


def test_cpu_work_leaves_cuda_untouched(clips):
    """decode_videos and the nvdec modules themselves load nothing CUDA on the CPU path."""
    script = textwrap.dedent(f"""
        import sys, torch, gpuvio
        from gpuvio._multi import decode_videos
        import gpuvio._backends._nvdec, gpuvio._backends._nvdec_source, gpuvio._backends._cuda
        decode_videos([{str(clips['h264_small'])!r}, {str(clips['hevc'])!r}], device="cpu")
        decode_videos([{str(clips['h264_small'])!r}], device="auto")
        gpuvio.backends()
        assert not torch.cuda.is_initialized(), "a CUDA context was created"
        for module in ("PyNvVideoCodec", "cupy"):
            assert module not in sys.modules, module + " was imported"
        maps = open("/proc/self/maps").read()
        for lib in ("libcuda.so", "libnvcuvid", "libcudart"):
            assert lib not in maps, lib + " was loaded"
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


# ------------------------------------------------------------------------- colour arithmetic
@pytest.mark.parametrize("siting", ["left", "center", "topleft", "top"])
def test_batched_conversion_is_bit_identical_to_nv12_to_rgb(siting):
    generator = torch.Generator().manual_seed(7)
    for (height, width), matrix, full in itertools.product([(38, 66), (2, 2), (16, 2)], ["bt601", "bt709",
                                                           "bt2020", "smpte240m"], [False, True]):
        rows = height * 3 // 2
        nv12 = torch.randint(0, 256, (3, rows, width), generator=generator, dtype=torch.int32).to(torch.uint8)
        batch = nv12_batch_to_rgb(nv12, matrix=matrix, full_range=full, siting=siting)
        for i in range(3):
            assert torch.equal(batch[i], nv12_to_rgb(nv12[i], matrix=matrix, full_range=full, siting=siting))
        p016 = torch.randint(0, 65536, (2, rows, width), generator=generator, dtype=torch.int32)
        batch = nv12_batch_to_rgb(p016, matrix=matrix, full_range=full, bit_depth=16, siting=siting)
        for i in range(2):
            assert torch.equal(batch[i], nv12_to_rgb(p016[i], matrix=matrix, full_range=full, bit_depth=16,
                                                     siting=siting))


# CUDA's kernel syntax and intrinsics for a C++ compiler: a "launch" sets blockIdx/threadIdx and calls
_CUDA_ON_CPU = r"""
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>
#define __device__
#define __global__
#define __forceinline__ inline
struct index3 { int x, y, z; };
static index3 blockIdx, blockDim = {1, 1, 1}, threadIdx = {0, 0, 0};
// one rounding per operation, as the intrinsics guarantee (built with -ffp-contract=off)
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
"""

_HARNESS = _CUDA_ON_CPU + r"""
@KERNEL@
static float bits_to_float(const char* s) { unsigned u = (unsigned)strtoul(s, 0, 10); float f; memcpy(&f, &u, 4); return f; }
int main(int argc, char** argv) {
    int bits = atoi(argv[3]), h = atoi(argv[4]), w = atoi(argv[5]), planar = atoi(argv[16]);
    float p[10];
    for (int i = 0; i < 10; ++i) p[i] = bits_to_float(argv[6 + i]);
    int full = atoi(argv[7]), vc = atoi(argv[8]), hc = atoi(argv[9]);
    size_t n = (size_t)h * 3 / 2 * w * (bits == 8 ? 1 : 2);
    std::vector<unsigned char> src(n), dst((size_t)h * w * 3);
    FILE* f = fopen(argv[1], "rb");
    if (fread(src.data(), 1, n, f) != n) return 2;
    fclose(f);
    for (int y = 0; y < h; ++y) for (int x = 0; x < w; ++x) {  // one "thread" per pixel
        blockIdx.x = x; blockIdx.y = y;
        if (bits == 8) nv12_to_rgb24((unsigned long long)src.data(), (unsigned long long)dst.data(), h, w, planar, p[0], full, vc, hc, p[4], p[5], p[6], p[7], p[8], p[9]);
        else p016_to_rgb24((unsigned long long)src.data(), (unsigned long long)dst.data(), h, w, planar, p[0], full, vc, hc, p[4], p[5], p[6], p[7], p[8], p[9]);
    }
    f = fopen(argv[2], "wb");
    fwrite(dst.data(), 1, dst.size(), f);
    fclose(f);
    return 0;
}
"""


def test_fused_kernel_source_is_bit_identical_to_the_torch_ops(tmp_path):
    """The CUDA kernel's code, compiled for the CPU with IEEE single-rounding ops in place of the
    intrinsics, gives exactly the torch ops' pixels (on the GPU a self-check repeats this)."""
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler to build the kernel's CPU twin")
    source = tmp_path / "kernel.cpp"
    source.write_text(_HARNESS.replace("@KERNEL@", KERNEL_SOURCE))
    binary = tmp_path / "kernel"
    build = subprocess.run([compiler, "-O1", "-ffp-contract=off", "-fno-fast-math", "-std=c++14", "-o",
                            str(binary), str(source)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    generator = torch.Generator().manual_seed(3)
    cases = itertools.product([(38, 66), (2, 2), (16, 2), (4, 64)], ["bt601", "bt709", "bt2020"], [False, True],
                              ["left", "center", "topleft", "top"], [8, 16])
    for (height, width), matrix, full, siting, bits in cases:
        rows = height * 3 // 2
        values = torch.randint(0, 256 if bits == 8 else 65536, (rows, width), generator=generator,
                               dtype=torch.int32)
        raw = values.numpy().astype(np.uint8 if bits == 8 else "<u2").tobytes()
        (tmp_path / "in").write_bytes(raw)
        params = kernel_params(matrix=matrix, full_range=full, bit_depth=bits, siting=siting)
        args = [str(int(np.asarray(v).view(np.uint32))) if v.dtype == np.float32 else str(int(v)) for v in params]
        source_values = values.to(torch.uint8) if bits == 8 else values
        expected = nv12_batch_to_rgb(source_values[None], matrix=matrix, full_range=full, bit_depth=bits,
                                     siting=siting)[0].numpy()
        for planar in (0, 1):
            run = subprocess.run([str(binary), str(tmp_path / "in"), str(tmp_path / "out"), str(bits), str(height),
                                  str(width), *args, str(planar)], capture_output=True)
            assert run.returncode == 0, run.stderr
            got = np.frombuffer((tmp_path / "out").read_bytes(), dtype=np.uint8)
            got = got.reshape(3, height, width).transpose(1, 2, 0) if planar else got.reshape(height, width, 3)
            assert np.array_equal(got, expected), (height, width, matrix, full, siting, bits, planar)


_SWSCALE_HARNESS = _CUDA_ON_CPU + r"""
@KERNEL@
int main(int argc, char** argv) {  // in out height width planar y_offset y_coeff v2r u2g v2g u2b
    const int h = atoi(argv[3]), w = atoi(argv[4]), planar = atoi(argv[5]);
    int k[6];
    for (int i = 0; i < 6; ++i) k[i] = atoi(argv[6 + i]);
    const size_t n = (size_t)h * 3 / 2 * w, size = (size_t)h * w * 3;
    std::vector<unsigned char> src(n), dst(size + 64, 0xA5);  // 64 guard bytes past the frame
    FILE* f = fopen(argv[1], "rb");
    if (fread(src.data(), 1, n, f) != n) return 2;
    fclose(f);
    blockDim = {32, 8, 1};  // the launch FusedSwscaleKernel makes: 32x8 threads over the 2x2 blocks
    for (blockIdx.y = 0; blockIdx.y < (h / 2 + 7) / 8; ++blockIdx.y)
        for (blockIdx.x = 0; blockIdx.x < (w / 2 + 31) / 32; ++blockIdx.x)
            for (threadIdx.y = 0; threadIdx.y < 8; ++threadIdx.y)
                for (threadIdx.x = 0; threadIdx.x < 32; ++threadIdx.x)
                    nv12_to_rgb24_swscale((unsigned long long)src.data(), (unsigned long long)dst.data(), h, w,
                                          planar, k[0], k[1], k[2], k[3], k[4], k[5]);
    for (size_t i = size; i < dst.size(); ++i) if (dst[i] != 0xA5) return 3;  // wrote past the frame
    f = fopen(argv[2], "wb");
    fwrite(dst.data(), 1, size, f);
    fclose(f);
    return 0;
}
"""

# values where swscale's arithmetic turns: the range limits, the chroma centre, 0 and 255
_EDGE_SAMPLES = torch.tensor([0, 1, 15, 16, 17, 127, 128, 129, 234, 235, 236, 239, 240, 241, 254, 255])


def _swscale_surface(height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """A random NV12 surface, about half its samples edge values; 512x512 holds every (Cb, Cr) pair."""
    rows = height * 3 // 2
    values = torch.randint(0, 256, (rows, width), generator=generator, dtype=torch.int32)
    edges = _EDGE_SAMPLES[torch.randint(0, len(_EDGE_SAMPLES), (rows, width), generator=generator)]
    values = torch.where(torch.rand((rows, width), generator=generator) < 0.5, edges, values)
    if (height, width) == (512, 512):
        cb, cr = torch.meshgrid(torch.arange(256), torch.arange(256), indexing="ij")
        values[height:] = torch.stack([cb, cr], dim=-1).reshape(256, 512)
    return values.to(torch.uint8)


def _build_twin(tmp_path: Path, harness: str, source: str) -> Path:
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler to build the kernel's CPU twin")
    (tmp_path / "kernel.cpp").write_text(harness.replace("@KERNEL@", source))
    binary = tmp_path / "kernel"
    build = subprocess.run([compiler, "-O1", "-ffp-contract=off", "-fno-fast-math", "-std=c++14", "-o",
                            str(binary), str(tmp_path / "kernel.cpp")], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    return binary


def _run_swscale_twin(binary: Path, tmp_path: Path, surface: torch.Tensor, planar: int,
                      params: tuple) -> np.ndarray:
    height, width = surface.shape[0] * 2 // 3, surface.shape[1]
    (tmp_path / "in").write_bytes(surface.numpy().tobytes())
    run = subprocess.run([str(binary), str(tmp_path / "in"), str(tmp_path / "out"), str(height), str(width),
                          str(planar), *(str(int(v)) for v in params)], capture_output=True)
    assert run.returncode == 0, (run.returncode, run.stderr)
    got = np.frombuffer((tmp_path / "out").read_bytes(), dtype=np.uint8)
    return got.reshape(3, height, width).transpose(1, 2, 0) if planar else got.reshape(height, width, 3)


def test_fused_swscale_kernel_source_is_bit_identical_to_swscale_nv12_to_rgb(tmp_path):
    """The "torchvision" policy's CUDA kernel, compiled for the CPU and launched block by block as
    CUDA would, gives exactly ``swscale_nv12_to_rgb``'s pixels: every matrix, both ranges, packed and
    planar, widths that are no multiple of 16 or 64, every (Cb, Cr) pair; it never writes past the
    frame. A constant 1.5% off is caught (the same check runs on the device before first use)."""
    torch.set_num_threads(1)
    binary = _build_twin(tmp_path, _SWSCALE_HARNESS, SWSCALE_KERNEL_SOURCE)
    generator = torch.Generator().manual_seed(5)
    sizes = [(38, 66), (16, 2), (2, 2), (2, 64), (4, 34), (240, 318), (512, 512)]
    for (height, width), matrix, full in itertools.product(sizes, ["bt601", "bt709", "bt2020", "fcc",
                                                                   "smpte240m"], [False, True]):
        surface = _swscale_surface(height, width, generator)
        expected = swscale_nv12_to_rgb(surface[:height], surface[height:], matrix=matrix, full_range=full).numpy()
        params = swscale_kernel_params(matrix=matrix, full_range=full)
        for planar in (0, 1):
            got = _run_swscale_twin(binary, tmp_path, surface, planar, params)
            assert np.array_equal(got, expected), (height, width, matrix, full, planar,
                                                   int(np.abs(got.astype(int) - expected).max()))
        if (height, width) == (512, 512):  # it sees any constant 1.5% off (+1 can change no pixel)
            for i in range(len(params)):
                wrong = tuple(v + (max(1, abs(v) // 64) if j == i else 0) for j, v in enumerate(params))
                assert not np.array_equal(_run_swscale_twin(binary, tmp_path, surface, 0, wrong), expected), i


def test_self_checks_accept_the_torch_ops_and_catch_a_wrong_kernel():
    """The device self-checks' own code, run on the CPU with the torch ops standing in for a kernel."""
    from gpuvio._backends._nvdec_color import _self_check

    def as_kernel(convert, offset=0):
        def kernel(surface, out):
            out.copy_((convert(surface).int() + offset).clamp(0, 255))
        return kernel

    def swscale(surface):
        height = surface.shape[0] * 2 // 3
        return swscale_nv12_to_rgb(surface[:height], surface[height:], matrix="bt709")

    def accurate(bits):
        def convert(surface):
            if surface.dtype == torch.int16:
                surface = surface.to(torch.int32) & 0xFFFF
            return nv12_batch_to_rgb(surface[None], matrix="bt709", bit_depth=bits)[0]
        return convert

    assert _self_check(as_kernel(swscale), _CPU, 8, swscale) is None
    assert "differs" in _self_check(as_kernel(swscale, 1), _CPU, 8, swscale)
    for bits in (8, 16):
        assert _self_check(as_kernel(accurate(bits)), _CPU, bits, accurate(bits)) is None
        assert "differs" in _self_check(as_kernel(accurate(bits), -1), _CPU, bits, accurate(bits))


def test_fused_swscale_kernel_is_disabled_with_its_reason_when_its_check_fails(monkeypatch):
    """Compiled once per device, and any failure (here: no CUDA device to check it on) means None, the
    torch ops, and a reason in fused_kernel_status()."""
    import types

    from gpuvio._backends import _nvdec_color as color

    for name in ("_fused", "_fused_labels", "_fused_reasons", "_modules"):
        monkeypatch.setattr(color, name, {})
    compiled = []

    class RawModule:
        def __init__(self, code, options):
            compiled.append((code, options))

        def get_function(self, name):
            return lambda *args: None

    fake = types.SimpleNamespace(RawModule=RawModule,
                                 cuda=types.SimpleNamespace(Device=lambda i: contextlib.nullcontext()))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    for full in (False, True, False):
        assert color.fused_swscale_kernel(torch.device("cuda", 0), matrix="bt709", full_range=full) is None
    assert [code for code, _ in compiled] == [SWSCALE_KERNEL_SOURCE]
    status = color.fused_kernel_status()
    assert sorted(status) == ["cuda:0 torchvision bt709 full 8-bit", "cuda:0 torchvision bt709 limited 8-bit"]
    assert all(reason and reason != "fused" for reason in status.values()), status


@pytest.mark.parametrize("codec", ["h264", "hevc", "vp9"])
def test_nv12_planes_from_pyav_convert_like_the_cpu_backend(clips, codec):
    """What the GPU does to NVDEC's NV12 (here: FFmpeg's NV12), on CPU tensors, vs the CPU backend,
    for both colour policies."""
    import av

    expected = gpuvio.read_video(clips[codec])[0]
    accurate = gpuvio.read_video(clips[codec], color="accurate")[0]
    with av.open(str(clips[codec])) as container:
        stream = container.streams.video[0]
        plan = plan_stream(stream)
        converter = SurfaceConverter(plan, _CPU, color="torchvision")
        frames, policy = [], []
        for frame in container.decode(stream):
            nv12 = torch.from_numpy(frame.reformat(format="nv12").to_ndarray())
            policy.append(nv12_to_rgb(nv12, matrix=plan.matrix, full_range=plan.full_range, siting=plan.siting))
            frames.append(converter._swscale(nv12[None])[0])
    assert torch.equal(torch.stack(frames), expected)  # swscale's arithmetic, reproduced exactly
    worst, mean = _diff(torch.stack(policy), accurate)
    assert worst <= 1 and mean <= 0.05, (worst, mean)  # swscale's fixed point vs the float policy


def test_p016_planes_convert_like_the_cpu_backend(tmp_path):
    """10-bit: NVDEC gives P016 (samples << 6, chroma interleaved); built here from PyAV's planes."""
    import av

    from gpuvio._samples import make_sample_video

    path = make_sample_video(tmp_path / "hevc10.mp4", width=160, height=96, seconds=0.5, codec="libx265",
                             pix_fmt="yuv420p10le", audio=False)
    expected = gpuvio.read_video(path)[0]
    accurate = gpuvio.read_video(path, color="accurate")[0]
    frames, policy = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        plan = plan_stream(stream)
        assert (plan.bit_depth, plan.surface_bits) == (10, 16)
        converter = SurfaceConverter(plan, _CPU, color="torchvision")
        for frame in container.decode(stream):
            y, u, v = (torch.from_numpy(np.frombuffer(p, dtype="<u2").reshape(p.height, p.line_size // 2)
                                        [:, :p.width].astype(np.int32)) for p in frame.planes)
            p016 = torch.cat([y, torch.stack([u, v], dim=-1).reshape(u.shape[0], -1)]) << 6
            policy.append(nv12_to_rgb(p016, matrix=plan.matrix, full_range=plan.full_range, bit_depth=16,
                                      siting=plan.siting))
            frames.append(converter._swscale(p016.to(torch.int16)[None])[0])
    assert torch.equal(torch.stack(frames), expected)
    worst, mean = _diff(torch.stack(policy), accurate)
    assert worst <= 1 and mean <= 0.05, (worst, mean)


# ------------------------------------------------------------------------- host-side planning
def test_plan_accepts_what_nvdec_decodes_like_ffmpeg(clips):
    import av

    for key, codec, siting in (("h264", "h264", "left"), ("hevc", "hevc", "left"), ("vp9", "vp9", "center")):
        with av.open(str(clips[key])) as container:
            plan = plan_stream(container.streams.video[0])
        assert (plan.codec, plan.width, plan.height, plan.bit_depth, plan.siting) == (codec, 320, 240, 8, siting)


@pytest.mark.parametrize(("key", "words"), [("mpeg4", "MPEG-4 Part 2"), ("yuv444", "pixel format 'yuv444p'"),
                                            ("odd", "odd frame size 161x97")])
def test_plan_refuses_what_goes_to_the_cpu(clips, key, words):
    import av

    with av.open(str(clips[key])) as container:
        with pytest.raises(NvdecUnsupported, match=words):
            plan_stream(container.streams.video[0])


def test_decoder_caps_limits_become_reasons():
    plan = StreamPlan("hevc", "HEVC", 64, 64, 8, "bt601", False)
    caps = {"supported": 1, "width_min": 144, "height_min": 144, "width_max": 8192, "height_max": 8192,
            "mb_num_max": 262144, "num_decoder_engines": 7}
    with pytest.raises(NvdecUnsupported, match="below NVDEC's minimum 144x144"):
        check_caps(caps, plan)
    with pytest.raises(NvdecUnsupported, match="does not decode av1"):
        check_caps({**caps, "supported": 0}, StreamPlan("av1", "AV1", 640, 360, 8, "bt709", False))
    with pytest.raises(NvdecUnsupported, match="above NVDEC's maximum"):
        check_caps(caps, StreamPlan("h264", "H264", 9000, 480, 8, "bt601", False))
    check_caps(caps, StreamPlan("h264", "H264", 1920, 1080, 8, "bt709", False))  # fits


# -------------------------------------------------- the pipeline, with FFmpeg standing in for NVDEC
_RANGES = [(0, None, "pts"), (0.3, 0.7, "sec"), (1, 1.0, "sec"), (0.45, 0.45, "sec"), (5.0, 9.0, "sec"),
           (1000, 7000, "pts")]


@pytest.mark.parametrize("key", ["h264", "hevc", "vp9"])
def test_pipeline_read_video_matches_the_cpu_backend(software, clips, key):
    for start, end, unit in _RANGES:
        video, audio, info = gpuvio.read_video(clips[key], start, end, pts_unit=unit, backend=SW)
        ref_video, ref_audio, ref_info = gpuvio.read_video(clips[key], start, end, pts_unit=unit)
        assert video.shape == ref_video.shape, (start, end, unit)
        assert torch.equal(video, ref_video)  # the default policy: swscale's pixels exactly
        assert torch.equal(audio, ref_audio)
        assert info["backend"] == SW and info["fallback"] is None and info["fallback_reason"] is None
        assert {k: v for k, v in info.items() if k not in ("backend", "fallback", "fallback_reason")} == ref_info


def test_pipeline_reads_in_memory_sources_and_edit_lists(software, clips):
    data = clips["h264"].read_bytes()
    video, _, _ = gpuvio.read_video(data, backend=SW)
    _assert_close(video, gpuvio.read_video(clips["h264"])[0])
    for name in ("discard_first_keyframe.mp4", "test_non_zero_start.mp4"):
        path = media_path("torchcodec", name)
        for start, end, unit in ((0, float("inf"), "pts"), (0.2, 0.5, "sec")):
            end = None if end == float("inf") else end
            got = gpuvio.read_video(str(path), start, end, pts_unit=unit, backend=SW)[0]
            _assert_close(got, gpuvio.read_video(path, start, end, pts_unit=unit)[0])


def _take(source, count: int) -> list[tuple[torch.Tensor, float]]:
    out = []
    for _ in range(count):
        try:
            out.append(source.next())
        except StopIteration:
            break
    return out


def _assert_same_frames(got, expected) -> None:
    assert [s for _, s in got] == [s for _, s in expected]
    for (a, _), (b, _) in zip(got, expected):
        _assert_close(a, b)


@pytest.mark.parametrize("key", ["h264", "hevc", "vp9"])
def test_pipeline_reader_matches_the_cpu_reader(software, clips, key):
    path = str(clips[key])
    gpu = _reader(software, path)
    cpu = _cpu_reader(path)
    try:
        assert gpu.backend_name == SW and gpu.fallback is None
        assert len(gpu) == len(cpu) and gpu.metadata() == cpu.metadata()
        first, ref_first = _take(gpu, 4), _take(cpu, 4)
        _assert_same_frames(first, ref_first)
        assert first[0][0].is_contiguous() and first[0][0].shape == ref_first[0][0].shape
        index = cpu.frame_index()
        for time_s in (0.5, 0.51, 0.0, index.seconds[-1], index.seconds[len(index) // 2], 50.0):
            gpu.seek(time_s)
            cpu.seek(time_s)
            _assert_same_frames(_take(gpu, 3), _take(cpu, 3))
        for time_s in (0.9, 0.2):
            gpu.seek(time_s, keyframes_only=True)
            cpu.seek(time_s, keyframes_only=True)
            _assert_same_frames(_take(gpu, 2), _take(cpu, 2))
        gpu.seek(0.0)
        cpu.seek(0.0)
        _assert_same_frames(_take(gpu, 1000), _take(cpu, 1000))
        indices = [0, len(index) - 1, 10, 11, 10, -1, len(index) // 2, 5]
        frames, seconds = gpu.get_frames_at(indices)
        ref_frames, ref_seconds = cpu.get_frames_at(indices)
        assert seconds == ref_seconds and frames.shape == ref_frames.shape
        _assert_close(frames, ref_frames)
        assert gpu.indices_played_at([0.0, 0.5]) == cpu.indices_played_at([0.0, 0.5])
    finally:
        gpu.close()
        cpu.close()


def test_pipeline_reader_serves_audio_on_the_cpu(software, clips):
    gpu = _reader(software, clips["h264"], ("audio", 0))
    cpu = _cpu_reader(clips["h264"], ("audio", 0))
    try:
        assert gpu.backend_name == "cpu"
        for (a, ta), (b, tb) in zip(_take(gpu, 5), _take(cpu, 5)):
            assert ta == tb and torch.equal(a, b)
    finally:
        gpu.close()
        cpu.close()


@pytest.mark.parametrize(("key", "words"), [("mpeg4", "MPEG-4 Part 2"), ("yuv444", "yuv444p"), ("odd", "odd")])
def test_pipeline_falls_back_per_file_with_one_warning_and_a_record(software, clips, key, words):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        video, _, info = gpuvio.read_video(clips[key], backend=SW)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and f"{SW} cannot decode" in messages[0] and words in messages[0]
    assert info["backend"] == "cpu" and words in info["fallback_reason"]
    fallback = info["fallback"]
    assert isinstance(fallback, gpuvio.Fallback) and fallback.backend == SW and fallback.operation == "read_video"
    assert torch.equal(video, gpuvio.read_video(clips[key])[0])
    with pytest.warns(RuntimeWarning, match=words):
        reader = gpuvio.VideoReader(str(clips[key]), backend=SW)
    try:
        assert reader.backend == "cpu" and words in reader.fallback_reason
        assert reader.fallback == gpuvio.Fallback(SW, "open_video", reader.fallback_reason)
        reported = {b.name: b for b in gpuvio.backends()}[SW].fallbacks
        assert reported.get(fallback.reason, 0) >= 1 and reported.get(reader.fallback_reason, 0) >= 1
        cpu = _cpu_reader(clips[key])
        assert [f["pts"] for f in itertools.islice(reader, 5)] == [s for _, s in _take(cpu, 5)]
        cpu.close()
    finally:
        reader.close()


def test_pipeline_unreadable_file_gives_the_cpu_result(software, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.warns(RuntimeWarning, match="Failed to open container"):
        video, audio, info = gpuvio.read_video(bad, backend=SW)
    assert video.shape == (0, 1, 1, 3) and audio.shape == (1, 0) and info["backend"] == "cpu"


def test_pipeline_read_videos_keeps_order_and_matches_read_video(software, clips):
    paths = [clips["h264"], clips["mpeg4"], clips["hevc"], clips["h264_small"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the MPEG-4 clip falls back, by design
        results = decode_videos(paths, start_pts=0.2, end_pts=0.6, pts_unit="sec", device="cpu", backend=SW,
                                max_workers=3)
    for path, frames in zip(paths, results):
        _assert_close(frames, gpuvio.read_video(path, start_pts=0.2, end_pts=0.6, pts_unit="sec")[0])


# ------------------------------------------------------------------------- on the GPU
@pytest.fixture(scope="module")
def gpu_clips(clips, tmp_path_factory) -> dict[str, Path]:
    """The module's clips plus a 10-bit HEVC one (NVDEC's P016 path) and, when it encodes, AV1."""
    from gpuvio._samples import make_sample_video

    root = tmp_path_factory.mktemp("nvdec_gpu")
    out = dict(clips)
    out["hevc10"] = make_sample_video(root / "hevc10.mp4", width=320, height=240, seconds=1.0, codec="libx265",
                                      pix_fmt="yuv420p10le", audio=False)
    out["tiny"] = make_sample_video(root / "tiny.mp4", width=32, height=32, seconds=0.5, audio=False)
    try:
        out["av1"] = make_sample_video(root / "av1.mp4", width=320, height=240, seconds=1.0, codec="libsvtav1",
                                       audio=False)
    except Exception:  # no AV1 encoder in this PyAV build
        pass
    out["same_size"] = [make_sample_video(root / f"same{i}.mp4", width=320, height=240, seconds=0.5, seed=i,
                                          audio=False) for i in range(3)]
    return out


def _nvdec_backend() -> NvdecBackend:
    return _dispatch.get_backend("nvdec")  # type: ignore[return-value]


@pytest.mark.cuda("nvdec")
@pytest.mark.parametrize("key", ["h264", "hevc", "vp9", "hevc10"])
def test_cuda_read_video_matches_the_cpu_backend(gpu_clips, key):
    for start, end, unit in _RANGES:
        video, audio, info = gpuvio.read_video(gpu_clips[key], start, end, unit, device="cuda")
        ref_video, ref_audio, _ = gpuvio.read_video(gpu_clips[key], start, end, unit)
        assert info["backend"] == "nvdec", info.get("fallback_reason")
        assert video.device.type == "cuda" and video.dtype == torch.uint8
        assert video.shape == ref_video.shape
        _assert_close(video, ref_video)
        assert torch.equal(audio, ref_audio)


@pytest.mark.cuda("nvdec")
def test_cuda_timestamps_and_reader_match_the_cpu(gpu_clips):
    path = gpu_clips["hevc"]  # B-frames: display order differs from decode order
    gpu = gpuvio.VideoReader(path, device="cuda")
    cpu = gpuvio.VideoReader(path)
    assert gpu.backend == "nvdec" and gpu.fallback_reason is None and len(gpu) == len(cpu)
    got = [(f["data"], f["pts"]) for f in gpu]
    expected = [(f["data"], f["pts"]) for f in cpu]
    assert [p for _, p in got] == [p for _, p in expected]
    assert got[0][0].device.type == "cuda"
    for (a, _), (b, _) in zip(got, expected):
        _assert_close(a, b)
    for time_s in (0.5, 0.0, 0.77):
        a = [f["pts"] for f in itertools.islice(gpu.seek(time_s), 3)]
        b = [f["pts"] for f in itertools.islice(cpu.seek(time_s), 3)]
        assert a == b


@pytest.mark.cuda("nvdec")
def test_cuda_get_frames_at_and_played_at(gpu_clips):
    path = gpu_clips["h264"]
    gpu = gpuvio.VideoReader(path, device="cuda")
    cpu = gpuvio.VideoReader(path)
    indices = [0, 5, 5, len(cpu) - 1, 13, 2]
    got = gpu.get_frames_at(indices)
    assert got.device.type == "cuda" and got.shape == (6, 3, 240, 320)
    _assert_close(got, cpu.get_frames_at(indices))
    _assert_close(gpu.get_frames_played_at([0.0, 0.51, 1.2]), cpu.get_frames_played_at([0.0, 0.51, 1.2]))


@pytest.mark.cuda("nvdec")
@pytest.mark.parametrize(("key", "words"), [("mpeg4", "MPEG-4 Part 2"), ("yuv444", "yuv444p"), ("odd", "odd")])
def test_cuda_falls_back_per_file(gpu_clips, key, words):
    with pytest.warns(RuntimeWarning, match=words):
        video, _, info = gpuvio.read_video(gpu_clips[key], device="cuda")
    assert info["backend"] == "cpu" and words in info["fallback_reason"]
    assert video.device.type == "cuda" and torch.equal(video.cpu(), gpuvio.read_video(gpu_clips[key])[0])
    with pytest.warns(RuntimeWarning, match=words):
        reader = gpuvio.VideoReader(gpu_clips[key], device="cuda")
    assert reader.backend == "cpu" and words in reader.fallback_reason
    assert next(reader)["data"].device.type == "cuda"


@pytest.mark.cuda("nvdec")
@pytest.mark.parametrize("key", ["tiny", "av1"])
def test_cuda_device_limits_decide_gpu_or_cpu(gpu_clips, key):
    if key not in gpu_clips:
        pytest.skip(f"no {key} clip could be encoded here")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        video, _, info = gpuvio.read_video(gpu_clips[key], device="cuda")
    if info["backend"] == "cpu":  # below the decoder's minimum size, or no AV1 NVDEC on this GPU
        assert any(w in info["fallback_reason"] for w in ("minimum", "does not decode"))
        assert len([w for w in caught if "NVDEC cannot decode" in str(w.message)]) == 1
    _assert_close(video, gpuvio.read_video(gpu_clips[key])[0])


@pytest.mark.cuda("nvdec")
def test_cuda_decode_videos_matches_read_video_and_reuses_decoders(gpu_clips):
    backend = _nvdec_backend()
    before = backend.pool_stats()
    paths = list(gpu_clips["same_size"]) + [gpu_clips["vp9"], gpu_clips["h264"]]
    results = decode_videos(paths, device="cuda")
    for path, frames in zip(paths, results):
        assert frames.device.type == "cuda"
        _assert_close(frames, gpuvio.read_video(path)[0])
    serial = decode_videos(list(gpu_clips["same_size"]), device="cuda", max_workers=1)
    after = backend.pool_stats()
    assert after["reused"] > before["reused"], (before, after)
    for a, b in zip(serial, results):
        assert torch.equal(a, b)


@pytest.mark.cuda("nvdec")
def test_cuda_results_are_ordered_with_the_callers_stream(gpu_clips):
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        video = gpuvio.read_video(gpu_clips["h264"], device="cuda")[0]
        checksum = video.to(torch.int64).sum()  # queued on the side stream right after decoding
    side.synchronize()
    assert int(checksum) == int(gpuvio.read_video(gpu_clips["h264"], device="cuda")[0].to(torch.int64).sum())
    _assert_close(video, gpuvio.read_video(gpu_clips["h264"])[0])


@pytest.mark.cuda("nvdec")
def test_cuda_conversion_kernels_agree(gpu_clips):
    """The torch ops give the same bits on the GPU as on the CPU, and the fused kernel passed its self-check."""
    from gpuvio._backends._nvdec_color import fused_kernel, fused_kernel_status

    generator = torch.Generator().manual_seed(11)
    nv12 = torch.randint(0, 256, (2, 1080 * 3 // 2, 1920), generator=generator, dtype=torch.int32).to(torch.uint8)
    for siting in ("left", "center"):
        assert torch.equal(nv12_batch_to_rgb(nv12.cuda(), matrix="bt709", siting=siting).cpu(),
                           nv12_batch_to_rgb(nv12, matrix="bt709", siting=siting))
    try:
        import cupy  # noqa: F401
    except ImportError:
        pytest.skip("CuPy is not installed: the torch ops convert (slower)")
    kernel = fused_kernel(torch.device("cuda", 0), matrix="bt709", full_range=False, bit_depth=8, siting="left")
    assert kernel is not None, fused_kernel_status()
    out = torch.empty((1080, 1920, 3), dtype=torch.uint8, device="cuda")
    kernel(nv12[0].cuda(), out)
    assert torch.equal(out.cpu(), nv12_batch_to_rgb(nv12[:1], matrix="bt709")[0])
    gpuvio.read_video(gpu_clips["vp9"], device="cuda")
    assert all(v == "fused" for v in fused_kernel_status().values()), fused_kernel_status()


@pytest.mark.cuda("nvdec")
def test_cuda_swscale_kernel_matches_the_torch_ops(gpu_clips, monkeypatch):
    """The "torchvision" policy's fused kernel passed its self-check, gives swscale_nv12_to_rgb's
    bits (packed and planar) on 1080p and odd-multiple sizes, and read_video gives the same frames
    with it as with the torch ops (GPUVIO_NVDEC_FUSED=0)."""
    from gpuvio._backends._nvdec_color import fused_kernel_status, fused_swscale_kernel

    try:
        import cupy  # noqa: F401
    except ImportError:
        pytest.skip("CuPy is not installed: the torch ops convert (slower)")
    generator = torch.Generator().manual_seed(13)
    surfaces = [_swscale_surface(h, w, generator) for h, w in ((1080, 1920), (512, 512), (38, 66), (240, 318))]
    for matrix, full in itertools.product(["bt601", "bt709", "bt2020"], [False, True]):
        kernel = fused_swscale_kernel(torch.device("cuda", 0), matrix=matrix, full_range=full)
        assert kernel is not None, fused_kernel_status()
        for surface in surfaces:
            height, width = surface.shape[0] * 2 // 3, surface.shape[1]
            expected = swscale_nv12_to_rgb(surface[:height], surface[height:], matrix=matrix, full_range=full)
            on_gpu = surface.cuda()
            assert torch.equal(swscale_nv12_to_rgb(on_gpu[:height], on_gpu[height:], matrix=matrix,
                                                   full_range=full).cpu(), expected)
            for out in (torch.empty((height, width, 3), dtype=torch.uint8, device="cuda"),
                        torch.empty((3, height, width), dtype=torch.uint8, device="cuda").permute(1, 2, 0)):
                kernel(on_gpu, out)
                assert torch.equal(out.cpu(), expected), (matrix, full, width, height, out.is_contiguous())
    fused = gpuvio.read_video(gpu_clips["h264"], device="cuda")[0]
    status = {k: v for k, v in fused_kernel_status().items() if " torchvision " in k}
    assert status and all(v == "fused" for v in status.values()), status
    monkeypatch.setenv("GPUVIO_NVDEC_FUSED", "0")
    assert torch.equal(fused, gpuvio.read_video(gpu_clips["h264"], device="cuda")[0])
    _assert_close(fused, gpuvio.read_video(gpu_clips["h264"])[0])
