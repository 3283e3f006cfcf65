"""The narrow interfaces between gpuvio's shared layers and its backends.

Video: a backend only turns one stream's packets into frames and converts frames to RGB
(:class:`FrameSource`). Everything else a video read involves (demuxing, torchvision's frame
selection, seeking and restarting, ``get_frames_at`` ordering, audio, the fallback to the CPU) is
written once, device-neutral, in :mod:`gpuvio._media`.

Images: a backend decodes a batch of already sniffed and validated encoded images
(:class:`ImageDecoder`) and, optionally, encodes JPEG (:class:`JpegEncoder`).

Which operations a backend serves is said once, in its registry entry
(``gpuvio/_backends/__init__.py``); the dispatcher hands it only those.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, Union, runtime_checkable

if TYPE_CHECKING:
    import torch

    from ._errors import GpuvioError
    from .transforms import Geometry
    from ._types import ColorPolicy, ImageReadMode

__all__ = [
    "DecodedImage",
    "EncodedImage",
    "Frame",
    "FrameSink",
    "FrameSource",
    "ImageDecoder",
    "JpegEncoder",
    "Layout",
    "PendingFrame",
    "Purpose",
    "SourceUnsupported",
    "VideoDecoder",
]

#: Memory layout of converted video frames: ``"HWC"`` (packed RGB) or ``"CHW"`` (planar).
Layout = Literal["HWC", "CHW"]

#: What a frame source is made for, so that it can set its decoder up for it: a range read
#: (``read_video``: throughput), sequential reading (``VideoReader.next``) or random access
#: (``get_frames_at``).
Purpose = Literal["range", "sequential", "random"]


class SourceUnsupported(Exception):
    """Raised by a GPU frame source that cannot decode this stream exactly like the CPU backend.

    The media layer then reads the stream with the CPU backend's frame source instead, warns once
    and records a :class:`gpuvio._fallback.Fallback` with this message as its reason. Never seen by
    users.
    """


class Frame(Protocol):
    """A decoded frame as the media layer sees it: a timestamp it may rewrite, and pixels.

    PyAV's ``VideoFrame``/``AudioFrame`` are frames; a GPU source's frames wrap a decoder surface.
    """

    pts: int | None


class PendingFrame(Protocol):
    """One frame being converted (maybe on another thread or CUDA stream)."""

    def result(self) -> torch.Tensor:
        """``Tensor[3, H, W] uint8`` (video) or ``Tensor[S, K] float32`` (audio), on the source's device."""
        ...


class FrameSink(Protocol):
    """Output slots that converted frames are written into, then handed out as one tensor.

    ``put`` takes what it needs from the frame before it returns or keeps its own reference:
    the media layer may feed the decoder again right after.
    """

    def put(self, slot: int, frame: Frame) -> None:
        """Convert ``frame`` into slot ``slot`` (a slot put twice keeps the later frame)."""
        ...

    def finish(self) -> None:
        """Wait until every frame put so far is written."""
        ...

    def abort(self) -> None:
        """Stop converting (an error happened): drop what has not started, wait for the rest."""
        ...

    def result(self, order: Sequence[int]) -> torch.Tensor:
        """``Tensor[N, H, W, 3]`` (``"HWC"``) or ``Tensor[N, 3, H, W]`` (``"CHW"``) uint8 of the
        slots in ``order``, on the source's device. Call :meth:`finish` first."""
        ...


@runtime_checkable
class FrameSource(Protocol):
    """Decodes the packets of one stream into frames, and converts frames to RGB.

    The media layer demuxes, calls :meth:`begin` before every run of packets (after opening or
    seeking), :meth:`decode` for each packet and :meth:`drain` at the end of the stream. A frame
    stays valid until the next ``decode``/``drain``/``reset`` call unless passed through
    :meth:`retain`. Errors: a decoder error is raised as the library's own exception (PyAV's
    ``av.FFmpegError`` on the CPU), a stream the source cannot take as :class:`SourceUnsupported`.
    """

    #: registry name of the backend ("cpu", "nvdec")
    backend: str
    #: where converted frames are
    device: torch.device

    def begin(self, stream: Any) -> None: ...

    def decode(self, packet: Any) -> Sequence[Frame]: ...

    def drain(self) -> Sequence[Frame]: ...

    def reset(self) -> None:
        """Drop decoder state (before a seek); the next packets start a new run."""
        ...

    def retain(self, frame: Frame) -> Frame:
        """A copy of ``frame`` that later decoder calls leave alone (or ``frame`` itself)."""
        ...

    def sink(self, *, capacity: int, layout: Layout, size: tuple[int, int] | None = None,
             geometry: Geometry | None = None) -> FrameSink:
        """Slots for about ``capacity`` frames of ``size`` ``(height, width)`` (default: the
        first frame's; frames of another size are scaled to it). With a ``geometry``
        (decode-time transforms), frames are scaled to its ``input_size`` and transformed:
        the slots have its ``output_size``."""
        ...

    def convert(self, frame: Frame, geometry: Geometry | None = None) -> PendingFrame:
        """Start converting one frame for sequential reading (``Tensor[3, H, W]`` at its own
        size, or transformed by ``geometry``)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class VideoDecoder(Protocol):
    """A video backend: frame sources for streams (``read_video``, ``VideoReader``, ``decode_videos``)."""

    name: str

    def frame_source(self, stream: Any, *, device: torch.device, color: ColorPolicy, purpose: Purpose,
                     threads: int = 0, consumer: Any = None) -> FrameSource:
        """A source for ``stream`` (a PyAV video stream of an open container) for ``device``.

        ``threads``: decoder threads asked for (0: the backend's choice for ``purpose``);
        ``consumer``: the CUDA stream results are used on (default: the current one). A source may
        produce frames on another device than ``device`` (the CPU backend's stay on the CPU: the
        media layer moves results). Raises :class:`SourceUnsupported` when this backend cannot
        decode the stream."""
        ...

    def concurrency(self, device: torch.device) -> int:
        """How many files :func:`gpuvio.decode_videos` should decode at once on ``device``."""
        ...


#: An encoded image handed to a decoder: its bytes and the format sniffed from them ("jpeg", "png", ...).
EncodedImage = tuple[memoryview, str]
#: One result of a batch decode: the image (``Tensor[C, H, W] uint8`` on the device asked for),
#: or the error that image raised (the front-end raises it or skips the image).
DecodedImage = Union["torch.Tensor", "GpuvioError"]


@runtime_checkable
class ImageDecoder(Protocol):
    """An image backend's decoder (``decode_image``, ``read_image`` and their batch forms)."""

    name: str

    def decode_images(self, items: list[EncodedImage], *, mode: ImageReadMode, apply_exif_orientation: bool,
                      device: torch.device, on_error: Literal["raise", "skip"]) -> list[DecodedImage]:
        """One result per item, in order; ``on_error="raise"`` lets a backend stop at the first error."""
        ...


@runtime_checkable
class JpegEncoder(Protocol):
    """An image backend's JPEG encoder (``encode_jpeg``/``write_jpeg``)."""

    name: str

    def encode_jpeg(self, images: list[torch.Tensor], *, quality: int) -> list[torch.Tensor]:
        """``Tensor[N] uint8`` of JPEG bytes per ``Tensor[C, H, W] uint8`` image, in order."""
        ...
