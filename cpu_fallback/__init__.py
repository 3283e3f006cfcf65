"""gpuvio's CPU backend: PyAV (FFmpeg) for video, Pillow for images. The reference semantics.

Every GPU backend is checked against this one. It imports no CUDA library, so it is safe in
forked DataLoader workers. Use it through :mod:`gpuvio` (``device="cpu"``, the default); the
:class:`CpuBackend` object is what the dispatcher talks to.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import torch

from gpuvio._dispatch import Backend
from gpuvio._types import ImageReadMode

from . import _image, _video
from ._frames import parallel_map
from ._video_reader import PyAVVideoSource

__all__ = ["CpuBackend", "PyAVVideoSource"]


class CpuBackend(Backend):
    """The CPU implementation of every gpuvio operation."""

    name = "cpu"
    device_type = "cpu"
    operations = frozenset({"decode_image", "encode_jpeg", "encode_png", "read_video",
                            "read_video_timestamps", "open_video", "write_video"})

    def decode_images(self, items: list[Any], *, mode: ImageReadMode, apply_exif_orientation: bool,
                      device: torch.device, on_error: str) -> list[Any]:
        if len(items) == 1 and on_error == "raise":
            image = _image.decode(items[0][0], items[0][1], mode, apply_exif_orientation)
            return [image if device.type == "cpu" else image.to(device)]

        def decode_one(item: tuple[Any, str]) -> Any:
            try:
                return _image.decode(item[0], item[1], mode, apply_exif_orientation)
            except Exception as exc:  # handed to the front-end, which raises or skips
                return exc

        out = parallel_map(decode_one, items)
        if device.type != "cpu":
            out = [o if isinstance(o, BaseException) else o.to(device) for o in out]
        return out

    def encode_jpeg(self, images: list[torch.Tensor], *, quality: int) -> list[torch.Tensor]:
        return parallel_map(lambda image: _image.encode_jpeg(image.cpu(), quality), images)

    def encode_png(self, image: torch.Tensor, *, compression_level: int) -> torch.Tensor:
        return _image.encode_png(image.cpu(), compression_level)

    def read_video(self, source: Any, *, start_pts: Any, end_pts: Any, pts_unit: str,
                   device: torch.device, output_format: str = "THWC", color: str = "torchvision"
                   ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        # TCHW is written planar straight away: contiguous, and cheaper than converting to packed RGB
        layout = "CHW" if output_format == "TCHW" else "HWC"
        video, audio, info = _video.read_video(source, start_pts, end_pts, pts_unit, layout, color)
        if device.type != "cpu":
            video = video.to(device)
        return video, audio, info

    def read_video_timestamps(self, source: Any, *, pts_unit: str) -> tuple[list[Any], float | None]:
        return _video.read_video_timestamps(source, pts_unit)

    def write_video(self, path: str, video: torch.Tensor, fps: Fraction, **options: Any) -> None:
        _video.write_video(path, video.cpu(), fps, **options)

    def open_video(self, source: Any, *, stream: tuple[str, int], num_threads: int,
                   device: torch.device, color: str = "torchvision") -> PyAVVideoSource:
        return PyAVVideoSource(source, stream=stream, num_threads=num_threads, device=device, color=color)
