"""The NVDEC decode-time transforms, run here without a GPU.

* :func:`filter_weights` equals torch's own antialiasing filter (probed through ``interpolate``);
* the fused resize kernel's CUDA source, compiled for the CPU and launched block by block as CUDA
  would, is within one level of the staged path (swscale's RGB, then torch's float resize, which
  is what torchvision does on a GPU) and within the 0.5 mean of the CPU reference; it never
  writes past its output;
* the staged path through the software NVDEC equals the CPU backend exactly (test_transforms
  covers the public calls).
"""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from gpuvio._backends._nvdec_color import swscale_kernel_params
from gpuvio._backends._nvdec_resize import RESIZE_KERNEL_SOURCE, _axis, filter_weights, fusable
from gpuvio._swscale_rgb import swscale_nv12_to_rgb
from gpuvio.transforms import CenterCrop, RandomCrop, Resize, plan

from test_nvdec import _CUDA_ON_CPU, _build_twin


@pytest.mark.parametrize("in_size,out_size", [(1080, 224), (1920, 398), (640, 640), (100, 37), (37, 100), (7, 3),
                                              (3, 8), (120, 180), (224, 1080)])
def test_filter_weights_are_torchs(in_size, out_size):
    """The weights are torch's, probed through interpolate: float32 ones (computed in float32, as
    its CUDA kernel does; its CPU float32 path agrees to the last bit or two) and within float32
    rounding of the float64 ones."""
    start, count, weights = filter_weights(in_size, out_size)
    assert start.dtype == count.dtype == torch.int32 and weights.dtype == torch.float32
    dense = torch.zeros(out_size, in_size, dtype=torch.float64)
    for i in range(out_size):
        dense[i, start[i]:start[i] + count[i]] = weights[i, :count[i]].double()
        assert not weights[i, count[i]:].any()  # zero padding past the taps
    for dtype, atol in ((torch.float32, 1e-7), (torch.float64, 2e-5)):
        basis = torch.eye(in_size, dtype=dtype).reshape(in_size, 1, 1, in_size)
        probed = torch.nn.functional.interpolate(basis, size=(1, out_size), mode="bilinear", antialias=True,
                                                 align_corners=False).reshape(in_size, out_size).T.double()
        assert torch.allclose(dense, probed, rtol=0, atol=atol), (dtype, float((dense - probed).abs().max()))


def test_fusable_geometries():
    assert fusable(plan((Resize(224),), 1080, 1920))
    assert fusable(plan((Resize(256), CenterCrop(224)), 1080, 1920))
    assert fusable(plan((CenterCrop(224),), 1080, 1920))
    assert not fusable(plan((CenterCrop(500), Resize(224)), 1080, 1920))
    assert not fusable(plan((Resize(256), CenterCrop(224), Resize(100)), 1080, 1920))


_RESIZE_HARNESS = _CUDA_ON_CPU + r"""
@KERNEL@
static std::vector<unsigned char> slurp(const char* path) {
    FILE* f = fopen(path, "rb");
    std::vector<unsigned char> data;
    int c;
    while ((c = fgetc(f)) != EOF) data.push_back((unsigned char)c);
    fclose(f);
    return data;
}
int main(int argc, char** argv) {
    // in tables out height width planar out_h out_w top left ytaps xtaps y_offset y_coeff v2r u2g v2g u2b
    const int h = atoi(argv[4]), w = atoi(argv[5]), planar = atoi(argv[6]), oh = atoi(argv[7]), ow = atoi(argv[8]);
    const int top = atoi(argv[9]), left = atoi(argv[10]), ytaps = atoi(argv[11]), xtaps = atoi(argv[12]);
    int k[6];
    for (int i = 0; i < 6; ++i) k[i] = atoi(argv[13 + i]);
    std::vector<unsigned char> src = slurp(argv[1]), tables = slurp(argv[2]);
    // the tables file: ys yn (int32 per resized row), yw (float32 [rows, ytaps]), then xs xn xw
    const int rows = atoi(argv[19]), cols = atoi(argv[20]);
    const unsigned char* p = tables.data();
    const unsigned char *ys = p, *yn = ys + 4 * rows, *yw = yn + 4 * rows;
    const unsigned char *xs = yw + 4 * rows * ytaps, *xn = xs + 4 * cols, *xw = xn + 4 * cols;
    const size_t size = (size_t)oh * ow * 3;
    std::vector<unsigned char> dst(size + 64, 0xA5);  // 64 guard bytes past the output
    blockDim = {32, 8, 1};
    for (blockIdx.y = 0; blockIdx.y < (oh + 7) / 8; ++blockIdx.y)
        for (blockIdx.x = 0; blockIdx.x < (ow + 31) / 32; ++blockIdx.x)
            for (threadIdx.y = 0; threadIdx.y < 8; ++threadIdx.y)
                for (threadIdx.x = 0; threadIdx.x < 32; ++threadIdx.x)
                    nv12_resize_rgb24_swscale((unsigned long long)src.data(), (unsigned long long)dst.data(), h, w,
                        planar, oh, ow, top, left, (unsigned long long)ys, (unsigned long long)yn,
                        (unsigned long long)yw, ytaps, (unsigned long long)xs, (unsigned long long)xn,
                        (unsigned long long)xw, xtaps, k[0], k[1], k[2], k[3], k[4], k[5]);
    for (size_t i = size; i < dst.size(); ++i) if (dst[i] != 0xA5) return 3;
    FILE* f = fopen(argv[3], "wb");
    fwrite(dst.data(), 1, size, f);
    fclose(f);
    return 0;
}
"""


def _scene_surface(height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """NV12 with smooth areas, noise and hard edges: luma ramps plus blocks, random chroma blocks."""
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    luma = (16 + (yy * 3 + xx * 2) % 220).to(torch.int32)
    luma = torch.where((yy // 7 + xx // 5) % 3 == 0, torch.randint(0, 256, (height, width), generator=generator), luma)
    chroma = torch.randint(0, 256, (height // 2, width // 2, 2), generator=generator).repeat_interleave(2, dim=0)[:height // 2]
    return torch.cat([luma, chroma.reshape(height // 2, width)]).to(torch.uint8)


def test_fused_resize_kernel_source_matches_the_staged_path(tmp_path: Path):
    torch.set_num_threads(1)
    binary = _build_twin(tmp_path, _RESIZE_HARNESS, RESIZE_KERNEL_SOURCE)
    generator = torch.Generator().manual_seed(11)
    cases = [((120, 214), (Resize((32, 32)),)), ((120, 214), (Resize(40), CenterCrop(36))),
             ((64, 96), (Resize((80, 130)),)), ((64, 96), (CenterCrop((30, 50)),)),
             ((90, 160), (Resize(48), RandomCrop((40, 44), seed=3)))]
    for ((height, width), steps), matrix, full in itertools.product(cases, ["bt601", "bt709"], [False, True]):
        geometry = plan(steps, height, width)
        surface = _scene_surface(height, width, generator)
        rgb = swscale_nv12_to_rgb(surface[:height], surface[height:], matrix=matrix, full_range=full)
        cpu_reference = geometry.apply(rgb, layout="HWC")  # torch's native uint8 resize (the CPU's)
        # torchvision on a GPU resizes in float32 and rounds: what the kernel reproduces
        float_path = geometry.apply(rgb.float(), layout="HWC").round().clamp(0, 255).to(torch.uint8)
        ys, yn, yw = _axis(geometry, 0)
        xs, xn, xw = _axis(geometry, 1)
        (tmp_path / "tables").write_bytes(b"".join(t.contiguous().numpy().tobytes() for t in (ys, yn, yw, xs, xn, xw)))
        (tmp_path / "in").write_bytes(surface.numpy().tobytes())
        out_h, out_w = geometry.output_size
        crop = geometry.after_scale[0] if geometry.after_scale else ("crop", 0, 0, *geometry.scale)
        params = swscale_kernel_params(matrix=matrix, full_range=full)
        for planar in (0, 1):
            run = subprocess.run([str(binary), str(tmp_path / "in"), str(tmp_path / "tables"), str(tmp_path / "out"),
                                  str(height), str(width), str(planar), str(out_h), str(out_w), str(crop[1]),
                                  str(crop[2]), str(yw.shape[1]), str(xw.shape[1]), *(str(int(v)) for v in params),
                                  str(len(ys)), str(len(xs))], capture_output=True)
            assert run.returncode == 0, (run.returncode, run.stderr)
            got = np.frombuffer((tmp_path / "out").read_bytes(), dtype=np.uint8)
            got = torch.from_numpy(got.reshape(3, out_h, out_w).transpose(1, 2, 0).copy() if planar
                                   else got.reshape(out_h, out_w, 3).copy())
            to_float = (got.int() - float_path.int()).abs()
            assert to_float.max() <= 1 and to_float.float().mean() <= 0.05, (steps, matrix, full, planar)
            assert (got.int() - cpu_reference.int()).abs().float().mean() <= 0.5, (steps, matrix, full, planar)


def test_a_read_that_falls_back_mid_stream_keeps_its_random_window(generated, monkeypatch):
    """NVDEC giving up after some frames restarts the read on the CPU: the window drawn for the
    first attempt is kept, so the result is the CPU's read with the same RNG state."""
    import warnings

    import gpuvio
    from _software_nv12 import NAME, SoftwareNv12Session, registered
    from gpuvio._backends._nvdec_plan import NvdecUnsupported

    calls = {"n": 0}
    decode = SoftwareNv12Session.decode

    def failing(self, packet):
        calls["n"] += 1
        if calls["n"] > 10:
            raise NvdecUnsupported("test: the decoder gives up mid-stream")
        return decode(self, packet)

    monkeypatch.setattr(SoftwareNv12Session, "decode", failing)
    path = generated["h264"]
    steps = [Resize(200), RandomCrop(150)]
    with registered():
        torch.manual_seed(7)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got, _, info = gpuvio.read_video(path, pts_unit="sec", backend=NAME, transforms=steps)
    assert calls["n"] > 10 and info["fallback"] is not None, info
    assert any("cannot decode" in str(w.message) for w in caught)
    torch.manual_seed(7)
    want, _, _ = gpuvio.read_video(path, pts_unit="sec", transforms=steps)
    assert got.shape == want.shape and torch.equal(got, want)
    # and the window is a real draw: another seed gives other frames
    torch.manual_seed(8)
    other, _, _ = gpuvio.read_video(path, pts_unit="sec", transforms=steps)
    assert not torch.equal(other, want)
