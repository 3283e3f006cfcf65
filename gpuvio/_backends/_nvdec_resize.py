"""Decode-time transforms on NVDEC surfaces: NV12 straight to resized and cropped RGB.

Two implementations of the same result, ``geometry.apply`` (torchvision's resize and crops) of
the "torchvision" policy's RGB (PyAV's ``to_rgb()``, :mod:`gpuvio._swscale_rgb`):

* :func:`staged_transform`: the full-size RGB frame from the surface converter, then the
  reference ops on the device (any geometry, any colour policy). It makes a full-size RGB tensor.
* :class:`FusedResizeKernel`: one CUDA kernel per frame for 8-bit NV12 and a geometry of one
  resize and/or one crop (:func:`fusable`). Each thread makes one output pixel: it converts the
  source pixels under torch's antialiasing filter with swscale's integer arithmetic (nearest
  chroma, as ``to_rgb()``) and sums them with torch's filter weights (:func:`filter_weights`,
  computed on the host in float32 as ATen's CUDA kernel computes them), so no full-size RGB frame
  exists. It sums in torch's order (columns within a row, then rows); compiler FMA contraction may
  still round an exact half the other way, so it is used only after a self-check on the device
  has found it within one level of the staged path everywhere, and otherwise the staged path is.

Nothing here imports CuPy or touches CUDA until a fused kernel is asked for.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .._forksafe import ForkSafeLock
from .._swscale_rgb import SwsMatrix, swscale_nv12_to_rgb
from ..transforms import Geometry
from ._nvdec_color import _BLOCK, _Launcher, swscale_kernel_params

__all__ = ["RESIZE_KERNEL_SOURCE", "FusedResizeKernel", "filter_weights", "fusable", "fused_resize_kernel",
           "resize_kernel_launches", "resize_kernel_status", "staged_transform"]


def fusable(geometry: Geometry) -> bool:
    """Whether the fused kernel can run ``geometry``: a resize, a crop, or a resize then a crop."""
    kinds = [step[0] for step in geometry.steps]
    return kinds in (["resize"], ["crop"], ["resize", "crop"])


def filter_weights(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torch's antialiased bilinear filter along one axis, as its CUDA kernel computes it.

    Returns ``(start, count, weights)``: int32 ``[out_size]`` first input index and number of
    taps per output index, and float32 ``[out_size, taps]`` normalised weights (zero-padded).

    ATen's CUDA resize computes the weights in float32 (``_compute_weights_span`` and
    ``_compute_weights``: only ``1 / scale`` is divided in double first), so this does the same
    operations in float32, in the same order: float64 weights round differently and moved
    exact-half sums of upscales to the other level on a few percent of pixels.
    """
    f32 = np.float32
    scale = f32(in_size) / f32(out_size)
    support = scale if scale >= 1.0 else f32(1.0)
    invscale = f32(1.0 / float(scale)) if scale >= 1.0 else f32(1.0)
    taps = int(math.ceil(support)) * 2 + 1
    starts = np.empty(out_size, dtype=np.int32)
    counts = np.empty(out_size, dtype=np.int32)
    rows = np.zeros((out_size, taps), dtype=np.float32)
    for i in range(out_size):
        center = scale * (f32(i) + f32(0.5))
        xmin = max(int(center - support + f32(0.5)), 0)
        xsize = min(int(center + support + f32(0.5)), in_size) - xmin
        offset = f32(xmin) - center
        w = [f32(0.0)] * xsize
        total = f32(0.0)
        for j in range(xsize):
            distance = abs((f32(j) + offset + f32(0.5)) * invscale)
            w[j] = f32(1.0) - distance if distance < 1.0 else f32(0.0)
            total = total + w[j]
        if total != 0.0:
            w = [v / total for v in w]
        starts[i], counts[i] = xmin, xsize
        rows[i, :xsize] = w
    return torch.from_numpy(starts), torch.from_numpy(counts), torch.from_numpy(rows)


def staged_transform(rgb: torch.Tensor, geometry: Geometry, dest: torch.Tensor) -> None:
    """Write ``geometry.apply`` of a full-size ``Tensor[H, W, 3]`` frame into ``dest`` (``[h, w, 3]``,
    maybe a channels-last view of planar memory)."""
    dest.copy_(geometry.apply(rgb, layout="HWC"))


# The fused kernel: output pixel (oy, ox) of the crop is pixel (oy + top, ox + left) of the
# resized frame, a weighted sum over source rows ys[r]..ys[r]+yn[r] and columns xs[c]..xs[c]+xn[c]
# of swscale's RGB (the SSSE3 unscaled path: nearest chroma, pmulhw products). A geometry without
# a resize passes one-tap identity filters.
RESIZE_KERNEL_SOURCE = r"""
__device__ __forceinline__ int mulhi(int a, int b) { return (a * b) >> 16; }

extern "C" __global__ void nv12_resize_rgb24_swscale(
        unsigned long long src_ptr, unsigned long long dst_ptr, int height, int width, int planar,
        int out_h, int out_w, int top, int left,
        unsigned long long ys_ptr, unsigned long long yn_ptr, unsigned long long yw_ptr, int ytaps,
        unsigned long long xs_ptr, unsigned long long xn_ptr, unsigned long long xw_ptr, int xtaps,
        int y_offset, int y_coeff, int v2r, int u2g, int v2g, int u2b) {
    const int ox = blockIdx.x * blockDim.x + threadIdx.x;
    const int oy = blockIdx.y * blockDim.y + threadIdx.y;
    if (ox >= out_w || oy >= out_h) return;
    const unsigned char* src = (const unsigned char*)src_ptr;
    const int r = oy + top, c = ox + left;
    const int y0 = ((const int*)ys_ptr)[r], ny = ((const int*)yn_ptr)[r];
    const int x0 = ((const int*)xs_ptr)[c], nx = ((const int*)xn_ptr)[c];
    const float* wy = (const float*)yw_ptr + (long long)r * ytaps;
    const float* wx = (const float*)xw_ptr + (long long)c * xtaps;
    float acc[3] = {0.0f, 0.0f, 0.0f};
    for (int j = 0; j < ny; ++j) {
        const int y = y0 + j;
        const unsigned char* luma = src + (long long)y * width;
        const unsigned char* chroma = src + (long long)(height + (y >> 1)) * width;
        float row[3] = {0.0f, 0.0f, 0.0f};
        for (int i = 0; i < nx; ++i) {
            const int x = x0 + i;
            const int u = (chroma[x & ~1] << 3) - 1024, v = (chroma[x | 1] << 3) - 1024;
            const int yy = mulhi((luma[x] << 3) - y_offset, y_coeff);
            const float w = wx[i];
            row[0] += w * (float)min(max(yy + mulhi(v, v2r), 0), 255);
            row[1] += w * (float)min(max(yy + mulhi(u, u2g) + mulhi(v, v2g), 0), 255);
            row[2] += w * (float)min(max(yy + mulhi(u, u2b), 0), 255);
        }
        const float w = wy[j];
        acc[0] += w * row[0];
        acc[1] += w * row[1];
        acc[2] += w * row[2];
    }
    // planar: [3, out_h, out_w] (channels first); else interleaved [out_h, out_w, 3]
    const long long step = planar ? (long long)out_h * out_w : 1;
    unsigned char* dst = (unsigned char*)dst_ptr + ((long long)oy * out_w + ox) * (planar ? 1 : 3);
    for (int k = 0; k < 3; ++k) dst[k * step] = (unsigned char)fminf(fmaxf(rintf(acc[k]), 0.0f), 255.0f);
}
"""


def _axis(geometry: Geometry, axis: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The filter along ``axis`` (0: rows, 1: columns) from the source to the resized frame."""
    source, scaled = geometry.input_size[axis], geometry.scale[axis]
    if source == scaled:
        index = torch.arange(source, dtype=torch.int32)
        return index, torch.ones(source, dtype=torch.int32), torch.ones((source, 1), dtype=torch.float32)
    return filter_weights(source, scaled)


class FusedResizeKernel(_Launcher):
    """The fused NV12 -> transformed RGB24 kernel for one colour setting and one geometry.

    Call it with a contiguous 8-bit NV12 surface ``Tensor[H * 3 // 2, W]`` and a destination
    ``Tensor[h, w, 3]`` uint8 of ``geometry.output_size`` (contiguous, or the channels-last view of
    a contiguous ``[3, h, w]``) on the same CUDA device.
    """

    def __init__(self, module: Any, geometry: Geometry, device: torch.device, *, matrix: SwsMatrix,
                 full_range: bool) -> None:
        super().__init__()
        if not fusable(geometry):
            raise ValueError(f"the fused kernel runs one resize and/or one crop; got {geometry.steps}")
        self._kernel = module.get_function("nv12_resize_rgb24_swscale")
        self._params = swscale_kernel_params(matrix=matrix, full_range=full_range)
        self.geometry = geometry
        crop = geometry.after_scale[0] if geometry.after_scale else ("crop", 0, 0, *geometry.scale)
        self._top, self._left = crop[1], crop[2]
        rows, cols = _axis(geometry, 0), _axis(geometry, 1)
        self._tables = [t.to(device) for t in (*rows, *cols)]  # kept alive while the kernel may run

    def __call__(self, surface: torch.Tensor, out: torch.Tensor) -> None:
        height, width = self.geometry.input_size
        out_h, out_w = self.geometry.output_size
        planar = not out.is_contiguous() and out.permute(2, 0, 1).is_contiguous()
        if surface.dtype != torch.uint8 or tuple(surface.shape) != (height * 3 // 2, width) or \
                not surface.is_contiguous() or out.dtype != torch.uint8 or out.shape != (out_h, out_w, 3) or \
                not (planar or out.is_contiguous()) or out.device != surface.device:
            raise ValueError(f"the resize kernel takes a contiguous {width}x{height} uint8 NV12 surface and an "
                             f"[{out_h}, {out_w}, 3] uint8 destination on the same device; got "
                             f"{tuple(surface.shape)} {surface.dtype} on {surface.device} and {tuple(out.shape)} "
                             f"{out.dtype} on {out.device}")
        ys, yn, yw, xs, xn, xw = self._tables
        grid = ((out_w + _BLOCK[0] - 1) // _BLOCK[0], (out_h + _BLOCK[1] - 1) // _BLOCK[1], 1)
        pointer = np.uint64
        self._launch(self._kernel, grid, surface, (
            pointer(surface.data_ptr()), pointer(out.data_ptr()), np.int32(height), np.int32(width),
            np.int32(planar), np.int32(out_h), np.int32(out_w), np.int32(self._top), np.int32(self._left),
            pointer(ys.data_ptr()), pointer(yn.data_ptr()), pointer(yw.data_ptr()), np.int32(yw.shape[1]),
            pointer(xs.data_ptr()), pointer(xn.data_ptr()), pointer(xw.data_ptr()), np.int32(xw.shape[1]),
            *self._params))
        global _launches
        _launches += 1  # a plain int: a lost increment between threads only undercounts a statistic


def reference(surface: torch.Tensor, geometry: Geometry, *, matrix: SwsMatrix, full_range: bool) -> torch.Tensor:
    """What the fused kernel must give: ``Tensor[h, w, 3]`` uint8, the staged path's result."""
    height = geometry.input_size[0]
    rgb = swscale_nv12_to_rgb(surface[:height], surface[height:], matrix=matrix, full_range=full_range)
    return geometry.apply(rgb, layout="HWC")


def _self_check(kernel: FusedResizeKernel, device: torch.device, matrix: SwsMatrix, full_range: bool) -> str | None:
    """Compare the kernel with the staged path on a random surface of the geometry's size; None
    when every pixel is within one level (float sums in another order round differently)."""
    height, width = kernel.geometry.input_size
    generator = torch.Generator().manual_seed(99)
    surface = torch.randint(0, 256, (height * 3 // 2, width), generator=generator, dtype=torch.int32)
    surface = surface.to(torch.uint8).to(device)
    expected = reference(surface, kernel.geometry, matrix=matrix, full_range=full_range)
    out_h, out_w = kernel.geometry.output_size
    for out in (torch.empty((out_h, out_w, 3), dtype=torch.uint8, device=device),
                torch.empty((3, out_h, out_w), dtype=torch.uint8, device=device).permute(1, 2, 0)):
        kernel(surface, out)
        diff = (out.int() - expected.int()).abs()
        if diff.max().item() > 1 or diff.float().mean().item() > 0.05:
            return (f"fused resize differs from the staged path by up to {diff.max().item()} "
                    f"(mean {diff.float().mean().item():.3f}) for {kernel.geometry.steps}")
    return None


_lock = ForkSafeLock()
_modules: dict[int, Any] = {}
_reasons: dict[tuple[Any, ...], tuple[str, str]] = {}  # key -> (label, why the staged path runs)
_checked: set[tuple[Any, ...]] = set()
_launches = 0


def fused_resize_kernel(device: torch.device, geometry: Geometry, *, matrix: SwsMatrix,
                        full_range: bool) -> FusedResizeKernel | None:
    """A self-checked fused kernel for this geometry, or None (the staged path then).

    The module is compiled once per device; each colour setting and filter shape is checked on
    the device the first time it is used (windows of one RandomCrop share the check)."""
    if not fusable(geometry):
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    key = (index, matrix, bool(full_range), geometry.input_size, geometry.scale, geometry.output_size)
    label = (f"cuda:{index} {matrix} {'full' if full_range else 'limited'} {geometry.input_size}->"
             f"{geometry.scale}->{geometry.output_size}")
    with _lock:
        if key in _reasons:
            return None
        try:
            import cupy

            module = _modules.get(index)
            if module is None:
                with cupy.cuda.Device(index):
                    module = _modules[index] = cupy.RawModule(code=RESIZE_KERNEL_SOURCE)
            kernel = FusedResizeKernel(module, geometry, torch.device("cuda", index), matrix=matrix,
                                       full_range=full_range)
            reason = None if key in _checked else _self_check(kernel, torch.device("cuda", index), matrix,
                                                              full_range)
        except Exception as exc:  # an optional accelerator: any failure means "use the staged path"
            kernel, reason = None, f"{type(exc).__name__}: {exc}"
        if reason is not None:
            # for the rest of the process, even if the failure was transient (out of memory while
            # checking): the staged path gives the same frames, only slower
            _reasons[key] = (label, reason)
            return None
        _checked.add(key)
        return kernel


def resize_kernel_status() -> dict[str, str]:
    """Why the fused resize kernel was not used, per setting where it was not (device, colour
    matrix and range, input -> intermediate -> output size)."""
    with _lock:
        return dict(_reasons.values())


def resize_kernel_launches() -> int:
    """How many frames the fused kernel has written in this process (the device check's proof
    that it ran, not only that it did not fail)."""
    return _launches
