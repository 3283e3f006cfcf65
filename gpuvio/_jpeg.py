"""Reading a JPEG's marker structure from its bytes: the one walker every part of gpuvio uses.

Nothing here decodes pixels or touches a device: it is plain Python over the encoded bytes, so
the CPU backend (which names the marker libjpeg rejects) and the GPU backends (which screen a
file before a GPU library sees it) read the same structure the same way.

* :func:`segments` walks the marker segments from after SOI, through every scan's entropy-coded
  data, to EOI or to where the data stops making sense;
* :func:`read_frame` gives the frame header (SOFn) and where the first scan's data starts;
* :func:`first_bad_marker` gives the first marker code libjpeg does not know.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple, Union

__all__ = [
    "KNOWN_MARKERS",
    "NOT_A_MARKER",
    "SOF_MARKERS",
    "JpegFrame",
    "Segment",
    "first_bad_marker",
    "read_frame",
    "segments",
]

Buffer = Union[bytes, bytearray, memoryview]

SOI, EOI, SOS = 0xD8, 0xD9, 0xDA
#: What :func:`segments` reports where a marker should start and the byte there is not 0xFF.
NOT_A_MARKER = -1
#: Every start-of-frame code; C4 (DHT), C8 (JPG extension) and CC (DAC) are not frames.
SOF_MARKERS = frozenset(set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC})
#: The marker codes libjpeg knows (any other one is "Unsupported marker type").
KNOWN_MARKERS = frozenset([0x01, *range(0xC0, 0xF0), 0xFE])
# markers that have no length field after them: TEM, RST0..RST7, SOI, EOI
_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8), SOI, EOI])
# codes that may follow 0xFF inside entropy-coded data without ending it: byte stuffing (00),
# fill (FF) and the restart markers
_IN_SCAN = frozenset([0x00, 0xFF, *range(0xD0, 0xD8)])

_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_LOSSLESS = frozenset({0xC3, 0xC7, 0xCB, 0xCF})
_HIERARCHICAL = frozenset({0xC5, 0xC6, 0xC7, 0xCD, 0xCE, 0xCF})
_SUBSAMPLING = {(2, 2): "4:2:0", (2, 1): "4:2:2", (1, 1): "4:4:4"}


class Segment(NamedTuple):
    """One marker met by :func:`segments`."""

    #: offset of the 0xFF that starts the marker
    offset: int
    #: the code after 0xFF, or :data:`NOT_A_MARKER`
    marker: int
    #: the segment's length field (it counts itself, not the two marker bytes); ``None`` for a
    #: marker without one, and where the data ends before it
    length: int | None


class JpegFrame(NamedTuple):
    """A JPEG's frame header (its SOFn segment) and where its first scan's entropy-coded data starts.

    (A named tuple: it is made for every image of every GPU batch, and that is the cheapest.)
    """

    #: the SOFn code (0xC0 baseline, 0xC1 extended, 0xC2 progressive, ...)
    sof: int
    #: offset of the SOFn marker in the data
    offset: int
    #: bits per sample (8 or 12; 2..16 for lossless)
    precision: int
    height: int
    width: int
    components: int
    #: ``(horizontal, vertical)`` sampling factors of each component the data holds completely
    sampling: tuple[tuple[int, int], ...]
    #: offset of the first scan's entropy-coded data; ``None`` when the data ends before it
    scan_start: int | None

    @property
    def progressive(self) -> bool:
        """A progressive coding (SOF2, SOF6, SOF10, SOF14), as Pillow's ``info["progressive"]`` says."""
        return self.sof in _PROGRESSIVE

    @property
    def arithmetic(self) -> bool:
        """Arithmetic instead of Huffman entropy coding (SOF9 and up)."""
        return self.sof >= 0xC9

    @property
    def lossless(self) -> bool:
        """A lossless (predictive) coding: SOF3, SOF7, SOF11, SOF15."""
        return self.sof in _LOSSLESS

    @property
    def hierarchical(self) -> bool:
        """A hierarchical (differential) coding: SOF5..SOF7, SOF13..SOF15."""
        return self.sof in _HIERARCHICAL

    @property
    def chroma_subsampling(self) -> str | None:
        """``"4:2:0"``, ``"4:2:2"``, ``"4:4:4"`` or ``"other"`` from the first component's sampling
        factors, for a 3-component frame (``None`` otherwise)."""
        if self.components != 3 or len(self.sampling) != 3:
            return None
        return _SUBSAMPLING.get(self.sampling[0], "other")


def _view(data: Buffer) -> bytes | bytearray | memoryview:
    """Indexable bytes of ``data`` (``buf[i]`` is an int), without a copy."""
    if isinstance(data, (bytes, bytearray)):
        return data
    return memoryview(data).cast("B")


def segments(data: Buffer, start: int = 2) -> Iterator[Segment]:
    """The markers of a JPEG from offset ``start`` (just after SOI by default), in order.

    Fill bytes (0xFF runs before a marker) are skipped. After an SOS segment the scan's
    entropy-coded data is skipped up to the next marker that ends it (stuffed zeros and restart
    markers do not). The walk stops after EOI; after a :data:`NOT_A_MARKER` entry (the bytes at
    that offset are not a marker); after an entry whose length the data cuts off
    (``length is None`` for a marker that has one); and where the data ends.
    """
    return map(Segment._make, _segments(_view(data), start))


def _segments(buf: bytes | bytearray | memoryview, start: int) -> Iterator[tuple[int, int, int | None]]:
    """:func:`segments` as plain ``(offset, marker, length)`` tuples (they are cheaper to make)."""
    n = len(buf)
    flat: bytes | bytearray | None = None  # searchable copy for the entropy-coded data, made once
    i = start
    while i + 1 < n:
        if buf[i] != 0xFF:
            yield i, NOT_A_MARKER, None
            return
        code = buf[i + 1]
        if code == 0xFF:
            i += 1
            continue
        if code in _STANDALONE:
            yield i, code, None
            if code == EOI:
                return
            i += 2
            continue
        if i + 4 > n:
            yield i, code, None
            return
        length = (buf[i + 2] << 8) | buf[i + 3]
        yield i, code, length
        i += 2 + length
        if code == SOS:
            if flat is None:
                flat = buf if isinstance(buf, (bytes, bytearray)) else bytes(buf)
            i = _end_of_entropy_data(flat, i)
            if i < 0:
                return


def _end_of_entropy_data(buf: bytes | bytearray, i: int) -> int:
    """Offset of the marker that ends the entropy-coded data starting at ``i``; -1 if none does."""
    n = len(buf)
    while i + 1 < n:
        j = buf.find(b"\xff", i)
        if j < 0 or j + 1 >= n:
            return -1
        if buf[j + 1] not in _IN_SCAN:
            return j
        i = j + 1
    return -1


def first_bad_marker(data: Buffer) -> int | None:
    """The first marker code libjpeg would reject as unknown, in the headers or between scans.

    ``None`` when the walk meets none before it ends (EOI, the end of the data, or bytes that are
    not a marker where one should be).
    """
    for _, marker, _ in _segments(_view(data), 2):
        if marker == NOT_A_MARKER:
            return None
        if marker not in KNOWN_MARKERS:
            return marker
    return None


def _frame(buf: bytes | bytearray | memoryview, sof: int, i: int, length: int,
           scan_start: int | None) -> JpegFrame:
    """The frame header of the SOFn segment ``sof`` at offset ``i`` (its 10 first bytes are there)."""
    components = buf[i + 9]
    end = min(i + 2 + length, len(buf))
    sampling = tuple((buf[at + 1] >> 4, buf[at + 1] & 0x0F)
                     for at in range(i + 10, i + 10 + 3 * components, 3) if at + 3 <= end)
    return JpegFrame(sof, i, buf[i + 4], (buf[i + 5] << 8) | buf[i + 6],
                     (buf[i + 7] << 8) | buf[i + 8], components, sampling, scan_start)


def read_frame(data: Buffer) -> JpegFrame | None:
    """The frame header of a JPEG, walking its marker segments up to the first scan.

    ``None`` when the headers are malformed: no SOI at the start, a byte that is not a marker
    where one should be, SOI or EOI before the first scan, a length under 2, a second frame
    header, a frame header cut short before its component count, or a scan before any frame.
    A file that ends before its first scan gives its frame with ``scan_start=None``.
    """
    buf = _view(data)
    n = len(buf)
    if n < 4 or buf[0] != 0xFF or buf[1] != SOI:
        return None
    sof: tuple[int, int, int] | None = None  # (marker, offset, length) of the frame header
    for offset, code, length in _segments(buf, 2):
        if offset + 4 > n:  # too little left to hold a segment header
            break
        if code == NOT_A_MARKER or code == SOI or code == EOI:
            return None
        if length is None:  # TEM, RSTn: no length, nothing to read
            continue
        if length < 2:
            return None
        if code in SOF_MARKERS:
            if sof is not None or offset + 10 > n:
                return None
            sof = (code, offset, length)
        elif code == SOS:
            if sof is None:
                return None
            start = offset + 2 + length
            return _frame(buf, *sof, start if start <= n else None)
    return None if sof is None else _frame(buf, *sof, None)
