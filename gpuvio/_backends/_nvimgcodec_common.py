"""What the nvImageCodec and DALI backends share: JPEG screening, the decode plan, mode finishing.

Neither GPU library is imported here. The screening decides, per image and from its bytes alone,
whether the GPU decoder may take it or whether the CPU backend (the reference) must: the GPU
decoders accept some damaged files that libjpeg rejects, decode 12-bit and CMYK data differently,
and return ``None`` rather than a reason when they fail, so anything doubtful goes to the CPU.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal

import numpy as np

from .._types import ImageReadMode

if TYPE_CHECKING:
    import torch

__all__ = [
    "FallbackLog",
    "JpegHeader",
    "Request",
    "bomb_limit",
    "finish_mode",
    "jpeg_header",
    "plan_requests",
    "plan_batch",
    "screen_header",
    "screen_jpeg",
    "screen_scan",
]

#: What the GPU decoder is asked to produce for one image: its luma plane or RGB.
Request = Literal["gray", "rgb"]

# Frame markers the GPU decoders handle: baseline, extended and progressive Huffman (SOF0..SOF2).
_GPU_SOF = frozenset({0xC0, 0xC1, 0xC2})
# Every SOFn (C4 = DHT, C8 = JPG extension and CC = DAC are not frames).
_ALL_SOF = frozenset(set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC})

# Bytes that may follow 0xFF between the first scan and the end-of-image marker without libjpeg
# complaining: stuffing (00), fill (FF), restart markers, and the markers of later scans/tables.
# SOI (D8) and the reserved codes are not in it: libjpeg rejects them, so the CPU must report them.
_SCAN_OK = np.zeros(256, dtype=bool)
_SCAN_OK[[0x00, 0x01, 0xFF, 0xD9, 0xFE, *range(0xC0, 0xD0), *range(0xD0, 0xD8), *range(0xDA, 0xF0)]] = True


@dataclass(frozen=True)
class JpegHeader:
    """The frame header of a JPEG and where its first scan's entropy-coded data starts."""

    sof: int
    precision: int
    height: int
    width: int
    components: int
    scan_start: int | None


def jpeg_header(data: memoryview | bytes) -> JpegHeader | None:
    """Walk the marker segments of a JPEG up to its first scan; ``None`` if they are malformed."""
    buf = data if isinstance(data, (bytes, bytearray)) else data.cast("B")
    n = len(buf)
    if n < 4 or buf[0] != 0xFF or buf[1] != 0xD8:
        return None
    i = 2
    frame: tuple[int, int, int, int, int] | None = None
    while i + 4 <= n:
        if buf[i] != 0xFF:
            return None
        code = buf[i + 1]
        if code == 0xFF:  # fill bytes before a marker
            i += 1
            continue
        if code == 0x01 or 0xD0 <= code <= 0xD7:  # markers without a length
            i += 2
            continue
        if code in (0xD8, 0xD9):
            return None
        length = (buf[i + 2] << 8) | buf[i + 3]
        if length < 2:
            return None
        if code in _ALL_SOF:
            if frame is not None or i + 10 > n:
                return None
            frame = (code, buf[i + 4], (buf[i + 5] << 8) | buf[i + 6], (buf[i + 7] << 8) | buf[i + 8],
                     buf[i + 9])
        elif code == 0xDA:
            if frame is None:
                return None
            start = i + 2 + length
            return JpegHeader(*frame, scan_start=start if start <= n else None)
        i += 2 + length
    if frame is None:
        return None
    return JpegHeader(*frame, scan_start=None)


def _end_of_image(data: memoryview, buf: np.ndarray) -> int:
    """Offset of the last end-of-image marker (-1 if none); data after it is ignored by libjpeg."""
    n = buf.shape[0]
    if n >= 2 and buf[n - 2] == 0xFF and buf[n - 1] == 0xD9:
        return n - 2
    return bytes(data).rfind(b"\xff\xd9")


def screen_header(data: memoryview, header: JpegHeader | None, *, max_pixels: int | None = None) -> str | None:
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


def screen_scan(data: memoryview, header: JpegHeader) -> str | None:
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


def screen_jpeg(data: memoryview, header: JpegHeader | None, *, max_pixels: int | None = None) -> str | None:
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


def plan_requests(header: JpegHeader, mode: ImageReadMode) -> Request:
    """What to ask the GPU decoder for, given the file's components and the requested mode.

    ``GRAY`` and the gray of ``GRAY_ALPHA`` of a colour JPEG are libjpeg's own luma plane (the
    decoder's Y output), as the CPU backend returns them.
    """
    if mode in (ImageReadMode.GRAY, ImageReadMode.GRAY_ALPHA):
        return "gray"
    if mode is ImageReadMode.UNCHANGED and header.components == 1:
        return "gray"
    return "rgb"


def plan_batch(items: list[tuple[memoryview, str]], mode: ImageReadMode,
               screen: Callable[..., str | None]
               ) -> tuple[dict[Request, list[int]], dict[int, JpegHeader], dict[str, list[int]]]:
    """Sort a batch: the JPEGs the GPU decodes, grouped by request, with their headers; and,
    by reason, the items left to the CPU backend (non-JPEGs and what ``screen`` rejects)."""
    groups: dict[Request, list[int]] = {"rgb": [], "gray": []}
    headers: dict[int, JpegHeader] = {}
    to_cpu: dict[str, list[int]] = {}
    max_pixels = bomb_limit()
    for i, (data, fmt) in enumerate(items):
        if fmt != "jpeg":
            reason = f"{fmt} is decoded on the CPU"
        else:
            header = jpeg_header(data)
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


class FallbackLog:
    """Counts of images a GPU backend handed to the CPU backend, by reason (thread-safe).

    Makes the fallback observable: ``backend.fallbacks.counts()`` says how many images went to
    the CPU and why; ``gpu_images`` counts the ones the GPU library decoded.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self.gpu_images = 0

    def add(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self._counts[reason] += count

    def add_gpu(self, count: int) -> None:
        with self._lock:
            self.gpu_images += count

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self.gpu_images = 0

    def __repr__(self) -> str:
        return f"FallbackLog(gpu_images={self.gpu_images}, cpu={self.counts()})"


def cpu_decode(cpu_backend: Any, items: list[tuple[memoryview, str]], indices: list[int], *,
               mode: ImageReadMode, apply_exif_orientation: bool, device: torch.device,
               results: list[Any]) -> None:
    """Decode ``items[i]`` for ``i`` in ``indices`` with the CPU backend, upload, store in ``results``.

    Failures are stored as the CPU backend's exception objects (never ``None``).
    """
    if not indices:
        return
    decoded = cpu_backend.decode_images([items[i] for i in indices], mode=mode,
                                        apply_exif_orientation=apply_exif_orientation,
                                        device=device, on_error="skip")
    for i, out in zip(indices, decoded):
        results[i] = out
