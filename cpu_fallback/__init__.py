"""gpuvio's CPU backend: PyAV (FFmpeg) for video, Pillow for images. The reference semantics.

Every GPU backend is checked against this one. It imports no CUDA library, so it is safe in
forked DataLoader workers. Use it through :mod:`gpuvio` (``device="cpu"``, the default); the
:class:`CpuBackend` object is what the dispatcher talks to. For video it only provides frame
sources (:mod:`._frame_source`): selection, seeking and audio are :mod:`gpuvio._media`'s.

Installed as ``gpuvio.cpu_fallback``; it imports gpuvio's shared modules, never the other way
round (the registry names it by a loader string).
"""

from __future__ import annotations

import os
from fractions import Fraction
from typing import Any

import torch

from gpuvio._errors import DecodeError, GpuvioError
from gpuvio._protocols import DecodedImage, EncodedImage, Purpose
from gpuvio._types import ColorPolicy, ImageReadMode

from . import _image
from ._frame_source import PyAVFrameSource
from ._frames import parallel_map
from ._video_writer import write_video

__all__ = ["CpuBackend", "PyAVFrameSource"]


class CpuBackend:
    """The CPU implementation of every gpuvio operation (the registry lists them)."""

    name = "cpu"

    # ------------------------------------------------------------------ video
    def frame_source(self, stream: Any, *, device: torch.device, color: ColorPolicy, purpose: Purpose,
                     threads: int = 0, consumer: Any = None) -> PyAVFrameSource:
        # frames stay on the CPU whatever ``device`` is: the media layer uploads results
        return PyAVFrameSource(stream, color=color, purpose=purpose, threads=threads)

    def concurrency(self, device: torch.device) -> int:
        # decoding releases the GIL: one file per core
        return os.cpu_count() or 1

    def write_video(self, path: str, video: torch.Tensor, fps: Fraction, **options: Any) -> None:
        write_video(path, video.cpu(), fps, **options)

    # ------------------------------------------------------------------ images

    def decode_images(self, items: list[EncodedImage], *, mode: ImageReadMode, apply_exif_orientation: bool,
                      device: torch.device, on_error: str) -> list[DecodedImage]:
        if len(items) == 1 and on_error == "raise":
            image = _image.decode(items[0][0], items[0][1], mode, apply_exif_orientation)
            return [image if device.type == "cpu" else image.to(device)]

        def decode_one(item: tuple[Any, str]) -> Any:
            try:
                return _image.decode(item[0], item[1], mode, apply_exif_orientation)
            except GpuvioError as exc:  # handed to the front-end, which raises or skips
                return exc
            except Exception as exc:  # not ours: still one image's failure, typed as such
                return DecodeError(f"decoding failed: {type(exc).__name__}: {exc}")

        out = parallel_map(decode_one, items)
        if device.type != "cpu":
            out = [o if isinstance(o, BaseException) else o.to(device) for o in out]
        return out

    def encode_jpeg(self, images: list[torch.Tensor], *, quality: int) -> list[torch.Tensor]:
        return parallel_map(lambda image: _image.encode_jpeg(image.cpu(), quality), images)

    def encode_png(self, image: torch.Tensor, *, compression_level: int) -> torch.Tensor:
        return _image.encode_png(image.cpu(), compression_level)
