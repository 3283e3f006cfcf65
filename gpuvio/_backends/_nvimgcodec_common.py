"""What the nvImageCodec and DALI backends share: JPEG screening, the decode plan, mode finishing,
the hand-off to the CPU backend and the view of their fallbacks.

Neither GPU library is imported here. The screening decides, per image and from its bytes alone,
whether the GPU decoder may take it or whether the CPU backend (the reference) must: the GPU
decoders accept some damaged files that libjpeg rejects, decode 12-bit and CMYK data differently,
and return ``None`` rather than a reason when they fail, so anything doubtful goes to the CPU.
The JPEG structure itself is read by :mod:`gpuvio._jpeg`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Literal, TypeVar

import numpy as np

from .._errors import DecodeError, GpuvioError
from .._fallback import LOG, record
from .._jpeg import JpegFrame, read_frame
from .._protocols import DecodedImage, EncodedImage
from .._types import ImageReadMode

if TYPE_CHECKING:
    import torch

__all__ = [
    "FallbackView",
    "Request",
    "bomb_limit",
    "complete",
    "cpu_backend",
    "cpu_decode",
    "finish_mode",
    "plan_batch",
    "plan_requests",
    "screen_header",
    "screen_jpeg",
    "screen_scan",
]

_T = TypeVar("_T")

#: What the GPU decoder is asked to produce for one image: its luma plane or RGB.
Request = Literal["gray", "rgb"]

# Frame markers the GPU decoders handle: baseline, extended and progressive Huffman (SOF0..SOF2).
_GPU_SOF = frozenset({0xC0, 0xC1, 0xC2})

# Bytes that may follow 0xFF between the first scan and the end-of-image marker without libjpeg
# complaining: stuffing (00), fill (FF), restart markers, and the markers of later scans/tables.
# SOI (D8) and the reserved codes are not in it: libjpeg rejects them, so the CPU must report them.
_SCAN_OK = np.zeros(256, dtype=bool)
_SCAN_OK[[0x00, 0x01, 0xFF, 0xD9, 0xFE, *range(0xC0, 0xD0), *range(0xD0, 0xD8), *range(0xDA, 0xF0)]] = True


def _end_of_image(data: memoryview, buf: np.ndarray) -> int:
    """Offset of the last end-of-image marker (-1 if none); data after it is ignored by libjpeg."""
    n = buf.shape[0]
    if n >= 2 and buf[n - 2] == 0xFF and buf[n - 1] == 0xD9:
        return n - 2
    return bytes(data).rfind(b"\xff\xd9")


def screen_header(data: memoryview, header: JpegFrame | None, *, max_pixels: int | None = None) -> str | None:
    """Why the frame header (or a missing end marker) sends this JPEG to the CPU backend, or ``None``.

    A few attribute checks and a look at the last bytes. Images over ``max_pixels`` go to the CPU
    backend, whose decompression-bomb policy (Pillow's) then applies, before a GPU allocates them.
    """
    if header is None:
        return "unreadable JPEG header"
    if header.sof not in _GPU_SOF:
        return f"JPEG coding SOF{header.sof - 0xC0} (lossless, hierarchical or arithmetic)"
    if header.precision != 8:
        return f"{header.precision}-bit JPEG samples"
    if header.components not in (1, 3):
        return f"{header.components}-component JPEG (CMYK/YCCK)"
    if header.width == 0 or header.height == 0:
        return "JPEG frame without a size"
    if max_pixels is not None and header.width * header.height > max_pixels:
        return "JPEG larger than the decompression-bomb limit"
    if header.scan_start is None:
        return "truncated JPEG: no scan data"
    if _end_of_image(data, np.frombuffer(data, dtype=np.uint8)) < header.scan_start:
        return "truncated JPEG: no end-of-image marker"
    return None


def screen_scan(data: memoryview, header: JpegFrame) -> str | None:
    """Why the entropy-coded data sends this JPEG to the CPU backend, or ``None``.

    One vectorised pass: every 0xFF between the first scan and the end-of-image marker must be
    followed by a code libjpeg accepts there. ``header`` must have passed :func:`screen_header`.
    """
    assert header.scan_start is not None
    buf = np.frombuffer(data, dtype=np.uint8)
    scan = buf[header.scan_start : _end_of_image(data, buf) + 1]
    follows = scan[1:][scan[:-1] == 0xFF]
    if not _SCAN_OK[follows].all():
        return "corrupt JPEG: unknown marker in the scan data"
    return None


def screen_jpeg(data: memoryview, header: JpegFrame | None, *, max_pixels: int | None = None) -> str | None:
    """Why this JPEG must be decoded by the CPU backend, or ``None`` when the GPU may take it.

    Cheap by design (a marker walk, then one vectorised pass over the entropy-coded bytes, about
    12 us for an 80 KB file): it runs for every image of every batch. A false alarm only costs
    speed, as the CPU backend then gives the reference answer.
    """
    reason = screen_header(data, header, max_pixels=max_pixels)
    if reason is None:
        assert header is not None
        reason = screen_scan(data, header)
    return reason


def bomb_limit() -> int | None:
    """Pillow's decompression-bomb pixel limit as it is set now (the CPU backend applies it)."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    return int(limit) if limit else None


def plan_requests(header: JpegFrame, mode: ImageReadMode) -> Request:
    """What to ask the GPU decoder for, given the file's components and the requested mode.

    ``GRAY`` and the gray of ``GRAY_ALPHA`` of a colour JPEG are libjpeg's own luma plane (the
    decoder's Y output), as the CPU backend returns them.
    """
    if mode in (ImageReadMode.GRAY, ImageReadMode.GRAY_ALPHA):
        return "gray"
    if mode is ImageReadMode.UNCHANGED and header.components == 1:
        return "gray"
    return "rgb"


def plan_batch(items: list[EncodedImage], mode: ImageReadMode,
               screen: Callable[..., str | None]
               ) -> tuple[dict[Request, list[int]], dict[int, JpegFrame], dict[str, list[int]]]:
    """Sort a batch: the JPEGs the GPU decodes, grouped by request, with their headers; and,
    by reason, the items left to the CPU backend (non-JPEGs and what ``screen`` rejects)."""
    groups: dict[Request, list[int]] = {"rgb": [], "gray": []}
    headers: dict[int, JpegFrame] = {}
    to_cpu: dict[str, list[int]] = {}
    max_pixels = bomb_limit()
    for i, (data, fmt) in enumerate(items):
        if fmt != "jpeg":
            reason = f"{fmt} is decoded on the CPU"
        else:
            header = read_frame(data)
            reason = screen(data, header, max_pixels=max_pixels)
            if reason is None:
                assert header is not None
                headers[i] = header
                groups[plan_requests(header, mode)].append(i)
                continue
        to_cpu.setdefault(reason, []).append(i)
    return groups, headers, to_cpu


def finish_mode(hwc: torch.Tensor, mode: ImageReadMode) -> torch.Tensor:
    """``Tensor[C, H, W]`` from a decoded ``Tensor[H, W, C]``, with the opaque alpha the mode asks for.

    Like the CPU backend, the result is a channels-first view of channels-last memory.
    """
    import torch

    if mode in (ImageReadMode.GRAY_ALPHA, ImageReadMode.RGB_ALPHA):
        height, width, channels = hwc.shape
        out = torch.empty((height, width, channels + 1), dtype=hwc.dtype, device=hwc.device)
        out[:, :, :channels] = hwc
        out[:, :, channels] = 255
        hwc = out
    return hwc.permute(2, 0, 1)


def cpu_backend() -> Any:
    """The registered CPU backend (the reference), which decodes and encodes what a GPU backend hands it."""
    from .._dispatch import get_backend

    return get_backend("cpu")


def cpu_decode(backend: str, items: list[EncodedImage], to_cpu: dict[str, list[int]], *,
               mode: ImageReadMode, apply_exif_orientation: bool, device: torch.device,
               results: list[DecodedImage | None]) -> None:
    """Decode the items ``to_cpu`` lists (by reason) with the CPU backend, upload, store in ``results``.

    Each reason is recorded as a ``decode_image`` fallback of ``backend`` (a registry name),
    once per image. A failure is stored as a :class:`GpuvioError`, never ``None``: the CPU
    backend's own error, or a :class:`DecodeError` naming any other exception it returned.
    """
    if not to_cpu:
        return
    cpu = cpu_backend()
    for reason, indices in to_cpu.items():
        record(backend, "decode_image", reason, len(indices))
        indices = sorted(indices)
        decoded = cpu.decode_images([items[i] for i in indices], mode=mode,
                                    apply_exif_orientation=apply_exif_orientation,
                                    device=device, on_error="skip")
        for i, out in zip(indices, decoded):
            results[i] = out if not isinstance(out, BaseException) else _as_gpuvio_error(out)


def _as_gpuvio_error(exc: BaseException) -> GpuvioError:
    if isinstance(exc, GpuvioError):
        return exc
    wrapped = DecodeError(f"the CPU backend failed with {type(exc).__name__}: {exc}")
    wrapped.__cause__ = exc
    return wrapped


def complete(results: list[_T | None]) -> list[_T]:
    """``results`` once every slot is filled (a ``None`` left over would be a bug of the backend)."""
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:
        raise RuntimeError(f"internal error: no result for items {missing[:10]}")
    return results  # type: ignore[return-value]


class FallbackView:
    """One backend's part of :data:`gpuvio._fallback.LOG`, the process-wide fallback log.

    The log is the only store: this view reads it for one registry name. ``counts()`` says how
    many images went to the CPU backend and why (decodes and encodes together), ``gpu_images``
    how many the GPU library decoded itself, both counted from the last :meth:`reset` (or the
    start of the process). Every object of a backend class shares that backend's part.
    """

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self._lock = threading.Lock()
        self._base_reasons: dict[str, int] = {}
        self._base_gpu = 0

    def counts(self) -> dict[str, int]:
        """``{reason: images}`` handed to the CPU backend since the last reset."""
        with self._lock:
            base = self._base_reasons
        return {reason: n - base.get(reason, 0) for reason, n in LOG.reasons(self.backend).items()
                if n > base.get(reason, 0)}

    @property
    def gpu_images(self) -> int:
        """Images the GPU library decoded since the last reset."""
        with self._lock:
            base = self._base_gpu
        return LOG.gpu_count(self.backend) - base

    def reset(self) -> None:
        """Count from now on (the process-wide log keeps its totals)."""
        with self._lock:
            self._base_reasons = LOG.reasons(self.backend)
            self._base_gpu = LOG.gpu_count(self.backend)

    def __repr__(self) -> str:
        return f"FallbackView({self.backend!r}, gpu_images={self.gpu_images}, cpu={self.counts()})"
