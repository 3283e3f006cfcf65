"""NV12/P016 -> RGB for batches of decoder surfaces, by the colour policy of :mod:`gpuvio._color`.

Two implementations of the same arithmetic:

* :func:`nv12_batch_to_rgb`: device-agnostic torch ops over a batch ``[B, H * 3 // 2, W]``. It
  performs exactly the float32 operations of :func:`gpuvio._color.nv12_to_rgb`, in the same order,
  so its output is bit-identical to it (the tests check this on CPU tensors). It costs about 35
  elementwise passes over the frame, fine for one stream but a bottleneck for several.
* :class:`FusedNv12Kernel`: one CUDA kernel (CuPy ``RawKernel``) doing the same operations per
  pixel with IEEE round-to-nearest intrinsics (``__fmul_rn``/``__fadd_rn``: never contracted into
  FMAs), reading the decoder's surface directly. It is only used after a self-check on the device
  has found it bit-identical to :func:`nv12_batch_to_rgb` for that colour setting; otherwise the
  torch ops are used and the reason is recorded (:func:`fused_kernel_status`).

The default "torchvision" policy (PyAV's ``to_rgb()``, :mod:`gpuvio._swscale_rgb`) has a fused
kernel of its own for 8-bit NV12, :class:`FusedSwscaleKernel`: swscale's SSSE3 unscaled converter
(nearest chroma, ``pmulhw`` products), integer arithmetic only, with the constants of
:func:`gpuvio._swscale_rgb.coefficients` as parameters. It is self-checked the same way, against
:func:`gpuvio._swscale_rgb.swscale_nv12_to_rgb` (:func:`fused_swscale_kernel`). P016 surfaces
(10/12-bit, swscale's general scaler) keep the torch ops.

Nothing here imports CuPy or touches CUDA until a fused kernel is asked for.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from .._forksafe import ForkSafeLock
from .._color import _COEFFICIENTS, Matrix, Siting, yuv_to_rgb
from .._swscale_rgb import SwsMatrix, coefficients, swscale_nv12_to_rgb

__all__ = ["KERNEL_SOURCE", "SWSCALE_KERNEL_SOURCE", "FusedNv12Kernel", "FusedSwscaleKernel",
           "color_constants", "fused_kernel", "fused_kernel_status", "fused_swscale_kernel",
           "kernel_params", "nv12_batch_to_rgb", "swscale_kernel_params"]


def color_constants(matrix: Matrix, full_range: bool, bit_depth: int) -> dict[str, float]:
    """The scalars of the policy's formula, computed exactly as :func:`gpuvio._color.yuv_to_rgb` does."""
    kr, kb = _COEFFICIENTS[matrix]
    kg = 1.0 - kr - kb
    return {
        "scale": float(2 ** (bit_depth - 8)),
        "ky": 255.0 / 219.0,
        "kc": 255.0 / 224.0,
        "r_v": 2.0 * (1.0 - kr),
        "g_u": 2.0 * (1.0 - kb) * kb / kg,
        "g_v": 2.0 * (1.0 - kr) * kr / kg,
        "b_u": 2.0 * (1.0 - kb),
        "full": float(bool(full_range)),
    }


def nv12_batch_to_rgb(nv12: torch.Tensor, *, matrix: Matrix = "bt601", full_range: bool = False,
                      bit_depth: int = 8, siting: Siting = "left") -> torch.Tensor:
    """Convert a batch of NV12 (or P016) surfaces to RGB, bit-identical to ``nv12_to_rgb`` per frame.

    Args:
        nv12: ``Tensor[B, H * 3 // 2, W]``: per frame the ``H`` luma rows, then ``H // 2`` rows of
            interleaved U, V. uint8 for NV12; int32 (or uint16) samples with ``bit_depth=16`` for
            P016. ``H`` and ``W`` must be even.
        matrix, full_range, bit_depth, siting: as for :func:`gpuvio._color.yuv_to_rgb`.

    Returns:
        ``Tensor[B, H, W, 3]`` uint8 on ``nv12``'s device.
    """
    if nv12.dim() != 3:
        raise ValueError(f"expected a batch of surfaces [B, H*3/2, W], got shape {tuple(nv12.shape)}")
    batch, rows, width = nv12.shape
    height = rows * 2 // 3
    y = nv12[:, :height]
    uv = nv12[:, height:].reshape(batch, rows - height, width // 2, 2)
    u, v = uv[..., 0], uv[..., 1]
    # gpuvio._color.yuv_to_rgb takes the batch as a leading dimension: the same float
    # operations as the per-frame reference, so the results are bit-identical
    return yuv_to_rgb(y, u, v, matrix=matrix, full_range=full_range, bit_depth=bit_depth, siting=siting)


# --------------------------------------------------------------------------- fused CUDA kernel
# One thread per output pixel. Every float operation is an explicit round-to-nearest intrinsic, in
# the order gpuvio._color.yuv_to_rgb performs them, so that no FMA contraction changes a result.
KERNEL_SOURCE = r"""
template <typename T>
__device__ __forceinline__ float sample(const T* p, long long i, float inv_scale) {
    return __fmul_rn((float)p[i], inv_scale);
}

// chroma component ``comp`` of column ``col``, upsampled to luma row ``y``
template <typename T>
__device__ __forceinline__ float vertical(const T* uv, int width, int hc, int y, int col, int comp,
                                          float inv_scale, int v_cosited) {
    const int k = y >> 1;
    const float cur = sample(uv, (long long)k * width + 2 * col + comp, inv_scale);
    if (v_cosited) {  // on the even rows: copy there, mean of the two neighbours between
        if (!(y & 1)) return cur;
        const int kn = min(k + 1, hc - 1);
        return __fmul_rn(0.5f, __fadd_rn(cur, sample(uv, (long long)kn * width + 2 * col + comp, inv_scale)));
    }
    // halfway between rows: even rows mix with the row above, odd ones with the row below
    const int ko = (y & 1) ? min(k + 1, hc - 1) : max(k - 1, 0);
    const float oth = sample(uv, (long long)ko * width + 2 * col + comp, inv_scale);
    return __fadd_rn(__fmul_rn(0.75f, cur), __fmul_rn(0.25f, oth));
}

template <typename T>
__device__ __forceinline__ float chroma(const T* uv, int width, int hc, int wc, int x, int y, int comp,
                                        float inv_scale, int v_cosited, int h_cosited) {
    const int j = x >> 1;
    const float cur = vertical(uv, width, hc, y, j, comp, inv_scale, v_cosited);
    if (h_cosited) {  // on the even columns
        if (!(x & 1)) return cur;
        const float nxt = vertical(uv, width, hc, y, min(j + 1, wc - 1), comp, inv_scale, v_cosited);
        return __fmul_rn(0.5f, __fadd_rn(cur, nxt));
    }
    const int jo = (x & 1) ? min(j + 1, wc - 1) : max(j - 1, 0);
    const float oth = vertical(uv, width, hc, y, jo, comp, inv_scale, v_cosited);
    return __fadd_rn(__fmul_rn(0.75f, cur), __fmul_rn(0.25f, oth));
}

template <typename T>
__device__ __forceinline__ void convert(
        unsigned long long src_ptr, unsigned long long dst_ptr, int height, int width, int planar,
        float inv_scale, int full, int v_cosited, int h_cosited, float ky, float kc, float r_v, float g_u,
        float g_v, float b_u) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= width || y >= height) return;
    const T* src = (const T*)src_ptr;
    const T* uv = src + (long long)height * width;
    const int hc = height / 2, wc = width / 2;
    const float u = chroma(uv, width, hc, wc, x, y, 0, inv_scale, v_cosited, h_cosited);
    const float v = chroma(uv, width, hc, wc, x, y, 1, inv_scale, v_cosited, h_cosited);
    float yf = sample(src, (long long)y * width + x, inv_scale);
    float uf, vf;
    if (full) {
        uf = __fsub_rn(u, 128.0f);
        vf = __fsub_rn(v, 128.0f);
    } else {
        yf = __fmul_rn(__fsub_rn(yf, 16.0f), ky);
        uf = __fmul_rn(__fsub_rn(u, 128.0f), kc);
        vf = __fmul_rn(__fsub_rn(v, 128.0f), kc);
    }
    const float r = __fadd_rn(yf, __fmul_rn(r_v, vf));
    const float g = __fsub_rn(__fsub_rn(yf, __fmul_rn(g_u, uf)), __fmul_rn(g_v, vf));
    const float b = __fadd_rn(yf, __fmul_rn(b_u, uf));
    // planar: [3, H, W] (channels first); else interleaved [H, W, 3]
    const long long step = planar ? (long long)height * width : 1;
    unsigned char* dst = (unsigned char*)dst_ptr + ((long long)y * width + x) * (planar ? 1 : 3);
    dst[0] = (unsigned char)fminf(fmaxf(floorf(__fadd_rn(r, 0.5f)), 0.0f), 255.0f);
    dst[step] = (unsigned char)fminf(fmaxf(floorf(__fadd_rn(g, 0.5f)), 0.0f), 255.0f);
    dst[2 * step] = (unsigned char)fminf(fmaxf(floorf(__fadd_rn(b, 0.5f)), 0.0f), 255.0f);
}

#define ENTRY(name, T)                                                                               \
extern "C" __global__ void name(                                                                     \
        unsigned long long src, unsigned long long dst, int height, int width, int planar,           \
        float inv_scale, int full, int v_cosited, int h_cosited, float ky, float kc, float r_v,      \
        float g_u, float g_v, float b_u) {                                                           \
    convert<T>(src, dst, height, width, planar, inv_scale, full, v_cosited, h_cosited, ky, kc, r_v, g_u, g_v, b_u); \
}

ENTRY(nv12_to_rgb24, unsigned char)
ENTRY(p016_to_rgb24, unsigned short)
"""

# The "torchvision" policy on 8-bit NV12: swscale's ff_yuv_420_rgb24_ssse3, as
# gpuvio._swscale_rgb._simd_rgb computes it. One thread per 2x2 block of luma, which shares one
# chroma sample (swscale takes the nearest, whatever the siting). Integers only; the products fit
# int32 (|a| < 2^11, |b| < 2^15) and ``>> 16`` must floor negative values like torch's ``>>``.
SWSCALE_KERNEL_SOURCE = r"""
static_assert((-3 >> 1) == -2, "signed >> must be an arithmetic (flooring) shift");

// pmulhw without the 16-bit lanes: (a * b) >> 16, floored, no rounding term
__device__ __forceinline__ int mulhi(int a, int b) { return (a * b) >> 16; }
__device__ __forceinline__ unsigned char clip8(int x) { return (unsigned char)min(max(x, 0), 255); }

extern "C" __global__ void nv12_to_rgb24_swscale(
        unsigned long long src_ptr, unsigned long long dst_ptr, int height, int width, int planar,
        int y_offset, int y_coeff, int v2r, int u2g, int v2g, int u2b) {
    const int cx = blockIdx.x * blockDim.x + threadIdx.x;  // chroma column and row
    const int cy = blockIdx.y * blockDim.y + threadIdx.y;
    if (2 * cx >= width || 2 * cy >= height) return;
    const unsigned char* src = (const unsigned char*)src_ptr;
    const unsigned char* uv = src + (long long)(height + cy) * width + 2 * cx;
    const int u = (uv[0] << 3) - 1024, v = (uv[1] << 3) - 1024;
    const int r_c = mulhi(v, v2r), g_c = mulhi(u, u2g) + mulhi(v, v2g), b_c = mulhi(u, u2b);
    // planar: [3, H, W] (channels first); else interleaved [H, W, 3]
    const long long step = planar ? (long long)height * width : 1;
    for (int dy = 0; dy < 2; ++dy) {
        for (int dx = 0; dx < 2; ++dx) {
            const long long i = (long long)(2 * cy + dy) * width + 2 * cx + dx;
            const int yy = mulhi((src[i] << 3) - y_offset, y_coeff);
            unsigned char* dst = (unsigned char*)dst_ptr + i * (planar ? 1 : 3);
            dst[0] = clip8(yy + r_c);
            dst[step] = clip8(yy + g_c);
            dst[2 * step] = clip8(yy + b_c);
        }
    }
}
"""

_BLOCK = (32, 8, 1)
_SOURCES = {"accurate": (KERNEL_SOURCE, ("--fmad=false",)), "torchvision": (SWSCALE_KERNEL_SOURCE, ())}


def kernel_params(*, matrix: Matrix, full_range: bool, bit_depth: int, siting: Siting) -> tuple[Any, ...]:
    """The fused kernel's arguments after ``(src, dst, height, width, planar)``, as numpy scalars.

    The torch ops multiply float32 tensors by Python floats, i.e. by those floats rounded to
    float32: the kernel gets exactly these float32 values.
    """
    import numpy as np

    c = color_constants(matrix, full_range, bit_depth)
    f32 = np.float32
    return (f32(1.0 / c["scale"]), np.int32(int(c["full"])), np.int32(siting in ("topleft", "top")),
            np.int32(siting in ("left", "topleft")), f32(c["ky"]), f32(c["kc"]), f32(c["r_v"]),
            f32(c["g_u"]), f32(c["g_v"]), f32(c["b_u"]))


def swscale_kernel_params(*, matrix: SwsMatrix, full_range: bool) -> tuple[Any, ...]:
    """The swscale kernel's arguments after ``(src, dst, height, width, planar)``: int32 scalars."""
    import numpy as np

    k = coefficients(matrix, bool(full_range))
    return tuple(np.int32(c) for c in (k.simd_y_offset, k.y_coeff, k.v2r, k.u2g, k.v2g, k.u2b))


class _Launcher:
    """Runs a CuPy kernel over a surface on torch's current stream of the surface's device."""

    def __init__(self) -> None:
        self._streams: dict[int, Any] = {}  # torch stream handle -> cupy ExternalStream

    @staticmethod
    def _layout(surface: torch.Tensor, out: torch.Tensor) -> tuple[int, int, bool]:
        """``(height, width, planar)`` of a valid surface and destination, else ValueError."""
        rows, width = surface.shape
        height = rows * 2 // 3
        planar = not out.is_contiguous() and out.permute(2, 0, 1).is_contiguous()
        if not (surface.is_contiguous() and out.shape == (height, width, 3) and (planar or out.is_contiguous())):
            raise ValueError("fused conversion needs a contiguous [H*3/2, W] surface and an [H, W, 3] "
                             "destination stored as [H, W, 3] or [3, H, W]")
        return height, width, planar

    def _launch(self, kernel: Any, grid: tuple[int, int, int], surface: torch.Tensor, args: tuple[Any, ...]) -> None:
        import cupy

        handle = torch.cuda.current_stream(surface.device).cuda_stream
        stream = self._streams.get(handle)
        if stream is None:
            stream = self._streams[handle] = (cupy.cuda.Stream.null if handle == 0 else
                                              cupy.cuda.ExternalStream(handle, surface.device.index))
        with cupy.cuda.Device(surface.device.index), stream:
            kernel(grid, _BLOCK, args)


class FusedNv12Kernel(_Launcher):
    """The fused NV12/P016 -> RGB24 kernel for one colour setting (CuPy ``RawKernel``).

    Call :meth:`__call__` with a contiguous surface ``Tensor[H * 3 // 2, W]`` (uint8 NV12, or the
    16-bit P016 samples as int16/uint16) and a ``Tensor[H, W, 3]`` uint8 destination on the same
    CUDA device that is contiguous, or the channels-last view of a contiguous ``[3, H, W]``; the
    kernel runs on torch's current stream of that device.
    """

    def __init__(self, module: Any, *, matrix: Matrix, full_range: bool, bit_depth: int,
                 siting: Siting) -> None:
        super().__init__()
        self._nv12 = module.get_function("nv12_to_rgb24")
        self._p016 = module.get_function("p016_to_rgb24")
        self._params = kernel_params(matrix=matrix, full_range=full_range, bit_depth=bit_depth, siting=siting)
        self.key = (matrix, bool(full_range), int(bit_depth), siting)

    def __call__(self, surface: torch.Tensor, out: torch.Tensor) -> None:
        import numpy as np

        height, width, planar = self._layout(surface, out)
        kernel = self._nv12 if surface.element_size() == 1 else self._p016
        grid = ((width + _BLOCK[0] - 1) // _BLOCK[0], (height + _BLOCK[1] - 1) // _BLOCK[1], 1)
        self._launch(kernel, grid, surface, (np.uint64(surface.data_ptr()), np.uint64(out.data_ptr()),
                                             np.int32(height), np.int32(width), np.int32(planar), *self._params))


class FusedSwscaleKernel(_Launcher):
    """The fused "torchvision" policy kernel for 8-bit NV12 of even size (CuPy ``RawKernel``):
    :func:`gpuvio._swscale_rgb.swscale_nv12_to_rgb` of one surface. Called like
    :class:`FusedNv12Kernel`, with a uint8 surface only."""

    def __init__(self, module: Any, *, matrix: SwsMatrix, full_range: bool) -> None:
        super().__init__()
        self._kernel = module.get_function("nv12_to_rgb24_swscale")
        self._params = swscale_kernel_params(matrix=matrix, full_range=full_range)
        self.key = (matrix, bool(full_range))

    def __call__(self, surface: torch.Tensor, out: torch.Tensor) -> None:
        import numpy as np

        height, width, planar = self._layout(surface, out)
        if surface.dtype != torch.uint8 or height % 2 or width % 2:
            raise ValueError(f"the swscale kernel converts 8-bit NV12 of even size; got {surface.dtype} "
                             f"{width}x{height}")
        half = (width // 2 + _BLOCK[0] - 1) // _BLOCK[0], (height // 2 + _BLOCK[1] - 1) // _BLOCK[1], 1
        self._launch(self._kernel, half, surface, (np.uint64(surface.data_ptr()), np.uint64(out.data_ptr()),
                                                   np.int32(height), np.int32(width), np.int32(planar),
                                                   *self._params))


_fused_lock = ForkSafeLock()
_fused: dict[tuple[Any, ...], Any] = {}       # key -> self-checked kernel, or None
_fused_labels: dict[tuple[Any, ...], str] = {}
_fused_reasons: dict[tuple[Any, ...], str] = {}
_modules: dict[tuple[int, str], Any] = {}      # (device, policy) -> compiled cupy.RawModule


_EXTREMES = torch.tensor([0, 0, 255, 255, 0, 255, 255, 0, 16, 240, 235, 16], dtype=torch.uint8)


def _random_surfaces(bit_depth: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(surface as the decoder stores it, the same samples for the torch ops) pairs, with extremes."""
    generator = torch.Generator(device="cpu").manual_seed(1234)
    pairs = []
    for height, width in ((38, 66), (16, 2), (2, 64)):
        rows = height * 3 // 2
        if bit_depth == 8:
            cpu = torch.randint(0, 256, (rows, width), generator=generator, dtype=torch.int32).to(torch.uint8)
            # extremes on the first two luma rows and the first chroma row: (U, V) at the corners
            extremes = _EXTREMES[torch.arange(width) % len(_EXTREMES)]
            cpu[0], cpu[1], cpu[height] = extremes, 255 - extremes, extremes
            pairs.append((cpu, cpu))
        else:
            reference_input = torch.randint(0, 65536, (rows, width), generator=generator, dtype=torch.int32)
            # the same 16-bit patterns as the decoder's P016 buffer holds them (read back as unsigned)
            cpu = torch.where(reference_input > 32767, reference_input - 65536, reference_input).to(torch.int16)
            pairs.append((cpu, reference_input))
    return pairs


def _self_check(kernel: Any, device: torch.device, bit_depth: int,
                reference: Callable[[torch.Tensor], torch.Tensor]) -> str | None:
    """Compare the kernel with the torch ops (``reference``: surface -> [H, W, 3]) on random
    surfaces; None when bit-identical."""
    for cpu, reference_input in _random_surfaces(bit_depth):
        height, width = cpu.shape[0] * 2 // 3, cpu.shape[1]
        surface = cpu.to(device)
        expected = reference(reference_input.to(device))
        for out in (torch.empty((height, width, 3), dtype=torch.uint8, device=device),
                    torch.empty((3, height, width), dtype=torch.uint8, device=device).permute(1, 2, 0)):
            kernel(surface, out)
            if not torch.equal(out, expected):
                diff = (out.int() - expected.int()).abs().max().item()
                return f"fused kernel differs from the torch ops by up to {diff} at {width}x{height}"
    return None


def _checked(key: tuple[Any, ...], label: str, policy: str, make: Callable[[Any], Any],
             check: Callable[[Any, torch.device], str | None]) -> Any:
    """The cached kernel for ``key`` (device index first): compiled once per device and policy,
    built by ``make(module)``, kept only if ``check(kernel, device)`` finds nothing (None)."""
    with _fused_lock:
        if key in _fused:
            return _fused[key]
        kernel = None
        try:
            import cupy

            module = _modules.get((key[0], policy))
            if module is None:
                source, options = _SOURCES[policy]
                with cupy.cuda.Device(key[0]):
                    module = cupy.RawModule(code=source, options=options)
                _modules[(key[0], policy)] = module
            kernel = make(module)
            reason = check(kernel, torch.device("cuda", key[0]))
        except Exception as exc:  # an optional accelerator: any failure means "use the torch ops"
            reason = f"{type(exc).__name__}: {exc}"
        if reason is not None:
            kernel = None
            _fused_reasons[key] = reason
        _fused[key] = kernel
        _fused_labels[key] = label
        return kernel


def _device_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def fused_kernel(device: torch.device, *, matrix: Matrix, full_range: bool, bit_depth: int,
                 siting: Siting = "left") -> FusedNv12Kernel | None:
    """The self-checked fused kernel for this device and colour setting, or None (torch ops then).

    The first call per setting compiles the kernel (CuPy caches it on disk) and checks it against
    :func:`nv12_batch_to_rgb` on the device; any failure (no CuPy, compile error, a single
    differing pixel) disables it for that setting, with the reason in :func:`fused_kernel_status`.
    """
    key = (_device_index(device), matrix, bool(full_range), int(bit_depth), siting)
    label = f"cuda:{key[0]} {matrix} {'full' if full_range else 'limited'} {bit_depth}-bit {siting}"

    def reference(surface: torch.Tensor) -> torch.Tensor:
        return nv12_batch_to_rgb(surface[None], matrix=matrix, full_range=full_range, bit_depth=bit_depth,
                                 siting=siting)[0]

    return _checked(key, label, "accurate",
                    lambda module: FusedNv12Kernel(module, matrix=matrix, full_range=full_range,
                                                   bit_depth=bit_depth, siting=siting),
                    lambda kernel, dev: _self_check(kernel, dev, bit_depth, reference))


def fused_swscale_kernel(device: torch.device, *, matrix: SwsMatrix,
                         full_range: bool) -> FusedSwscaleKernel | None:
    """:func:`fused_kernel` for the "torchvision" policy on 8-bit NV12: checked against
    :func:`gpuvio._swscale_rgb.swscale_nv12_to_rgb` on the device, None on any failure."""
    key = (_device_index(device), "torchvision", matrix, bool(full_range))
    label = f"cuda:{key[0]} torchvision {matrix} {'full' if full_range else 'limited'} 8-bit"

    def reference(surface: torch.Tensor) -> torch.Tensor:
        height = surface.shape[0] * 2 // 3
        return swscale_nv12_to_rgb(surface[:height], surface[height:], matrix=matrix, full_range=full_range)

    return _checked(key, label, "torchvision",
                    lambda module: FusedSwscaleKernel(module, matrix=matrix, full_range=full_range),
                    lambda kernel, dev: _self_check(kernel, dev, 8, reference))


def fused_kernel_status() -> dict[str, str]:
    """For each colour setting tried so far (both policies): ``"fused"`` or why the torch ops are
    used instead."""
    with _fused_lock:
        return {_fused_labels[k]: ("fused" if v is not None else _fused_reasons.get(k, "unavailable"))
                for k, v in _fused.items()}
