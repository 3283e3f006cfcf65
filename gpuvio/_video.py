"""Video front-end: read_video, read_video_timestamps and write_video, validated and dispatched."""

from __future__ import annotations

import math
import numbers
import os
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import torch

from . import _media
from ._dispatch import check_backend_name, select_backend
from ._errors import InvalidArgumentError, InvalidInputTypeError
from ._source import resolve_source
from ._types import ColorPolicy, DeviceLike, PtsUnit, Source, check_color
from .transforms import TransformsLike, as_transforms

__all__ = ["read_video", "read_video_timestamps", "write_video"]


def _check_pts_unit(pts_unit: Any) -> str:
    if pts_unit not in ("pts", "sec"):
        raise InvalidArgumentError(f"pts_unit must be 'pts' or 'sec'; got {pts_unit!r}")
    return pts_unit


def _check_time(value: Any, name: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, Fraction)):
        raise InvalidInputTypeError(f"{name} must be a number (int, float or Fraction); got {value!r}")
    if isinstance(value, float) and math.isnan(value):
        raise InvalidArgumentError(f"{name} must not be NaN")
    return value


def read_video(filename: Source, start_pts: float | Fraction = 0,
               end_pts: float | Fraction | None = None, pts_unit: PtsUnit = "pts",
               output_format: Literal["THWC", "TCHW"] = "THWC", *, device: DeviceLike = "cpu",
               backend: str | None = None, color: ColorPolicy = "torchvision",
               transforms: TransformsLike = None) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Read the video frames and audio samples between two presentation times.

    Frames whose pts lies in the inclusive range ``[start_pts, end_pts]`` are returned, one per
    pts, sorted; when no frame starts exactly at ``start_pts``, the frame on screen at that
    moment (the last one before it) is included too. Frame selection is torchvision 0.8's, step
    for step (including its seek a few units before the start and its decoding of up to five
    frames past the end for packed B-frames), so the same frames come back.

    Where torchvision failed, gpuvio does what FFmpeg's tools do, and says so here: frames whose
    size changes mid-stream are scaled (bilinear) to the size of the first frame kept; a raw
    elementary stream (``.h264``, ``.hevc``), which cannot seek and has no timestamps, is
    decoded from its start and its frames numbered at the stream's frame rate; audio is always
    float32 (torchvision passed integer samples through), aligned with 'sec' bounds converted to
    the audio time base (torchvision's later fix).

    Args:
        filename: path, bytes, or ``Tensor[N] uint8`` of an encoded video file.
        start_pts: start time, in the stream's time base for ``pts_unit="pts"`` (int), or seconds
            for ``"sec"`` (float or Fraction; converted with floor). Default 0.
        end_pts: end time, inclusive (seconds are converted with ceil). Default None: to the end.
        pts_unit: ``"pts"`` (default, torchvision 0.8's) or ``"sec"``, which is what you want.
        output_format: ``"THWC"`` (default) or ``"TCHW"``. A backend that can write planar frames
            directly returns a contiguous TCHW tensor (the CPU one saves ~15% of its work there);
            otherwise it is the THWC tensor permuted.
        device: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        backend: force a backend by name (see :func:`gpuvio.backends`).
        color: how YUV becomes RGB. ``"torchvision"`` (default): torchvision 0.8's pixels
            (PyAV's ``to_rgb()``), bit for bit on the CPU. ``"accurate"``: bilinear chroma at the
            codec's siting, exact rounding (see the README's colour section).
        transforms: decode-time :mod:`gpuvio.transforms` (``Resize``, ``CenterCrop``,
            ``RandomCrop``, or torchvision's), applied in order to every frame as it is
            converted, with one random window for the whole read. Default None. Within a mean
            absolute difference of 0.5 of torchvision's functional ops on the full frames.

    Returns:
        ``(vframes, aframes, info)``: ``vframes`` is ``Tensor[T, H, W, C] uint8`` (RGB, C = 3) on
        ``device``, H and W after ``transforms``; ``aframes`` is ``Tensor[K, L] float32`` on the CPU (K channels, L samples, in
        [-1, 1]); ``info`` has ``video_fps`` (float) and, when there is audio, ``audio_fps`` (int).
        A file FFmpeg cannot read gives empty tensors (``[0, 1, 1, 3]`` and ``[1, 0]``) and a
        ``RuntimeWarning``, like torchvision.

    Raises:
        MediaFileNotFoundError: ``filename`` does not exist (a ``FileNotFoundError``).
        InvalidArgumentError: bad ``pts_unit``/``output_format``, or ``end_pts < start_pts``, or a
            transform that does not fit the frames (a crop larger than them).
    """
    _check_pts_unit(pts_unit)
    fmt = output_format.upper() if isinstance(output_format, str) else output_format
    if fmt not in ("THWC", "TCHW"):
        raise InvalidArgumentError(f"output_format should be either 'THWC' or 'TCHW', got {output_format!r}")
    _check_time(start_pts, "start_pts")
    end = float("inf") if end_pts is None else _check_time(end_pts, "end_pts")
    if end < start_pts:
        raise InvalidArgumentError(
            f"end_pts should be larger than start_pts, got start_pts={start_pts} and end_pts={end_pts}")
    check_color(color)
    steps = as_transforms(transforms)
    source = resolve_source(filename, what="filename")
    chosen, target = select_backend("read_video", device, backend)
    # TCHW frames are written planar directly (contiguous, and no interleaving to undo)
    return _media.read_video(source, start_pts=start_pts, end_pts=end, pts_unit=pts_unit, decoder=chosen,
                             device=target, layout="CHW" if fmt == "TCHW" else "HWC", color=color,
                             transforms=steps)


def read_video_timestamps(filename: Source, pts_unit: PtsUnit = "pts", *,
                          backend: str | None = None) -> tuple[list[Any], float | None]:
    """The presentation timestamps of every video frame, in display order, and the frame rate.

    Timestamps come from the container's packets without decoding when they can be trusted
    (packets the decoder would discard, as with edit lists, are left out); otherwise the frames
    are decoded.

    Returns:
        ``(pts, video_fps)``: ints in the stream's time base for ``pts_unit="pts"``, or
        ``fractions.Fraction`` seconds for ``"sec"``; ``video_fps`` is a float, or None when the
        file has no video stream.
    """
    _check_pts_unit(pts_unit)
    source = resolve_source(filename, what="filename")
    if backend is not None:
        check_backend_name(backend)  # timestamps come from demuxing, the same for every backend
    return _media.read_video_timestamps(source, pts_unit)


# NTSC-family rates, written as the decimals people type (29.97, 23.976, 59.94)
_NTSC = tuple(Fraction(n * 1000, 1001) for n in (24, 30, 48, 60, 120, 240))


def _check_fps(fps: Any, name: str) -> Fraction:
    """A positive rate as an exact Fraction: 29.97 becomes 30000/1001, other floats the nearest
    fraction with a denominator up to 1001 (torchvision rounded to an integer)."""
    if isinstance(fps, bool) or not isinstance(fps, (numbers.Real, Fraction)):
        raise InvalidInputTypeError(f"{name} must be a positive number, got {fps!r}")
    if not (float(fps) > 0 and math.isfinite(float(fps))):
        raise InvalidArgumentError(f"{name} must be a positive number, got {fps!r}")
    if isinstance(fps, (Fraction, numbers.Integral)):
        return Fraction(int(fps)) if isinstance(fps, numbers.Integral) else fps
    for rate in _NTSC:
        if abs(float(fps) - float(rate)) < 5e-3:
            return rate
    return Fraction(float(fps)).limit_denominator(1001)


def write_video(filename: str | os.PathLike[str], video_array: torch.Tensor | np.ndarray, fps: float,
                video_codec: str = "libx264", options: dict[str, Any] | None = None,
                audio_array: torch.Tensor | np.ndarray | None = None, audio_fps: float | None = None,
                audio_codec: str | None = None, audio_options: dict[str, Any] | None = None) -> None:
    """Encode frames (and optionally audio) into a video file with FFmpeg.

    The container follows the file suffix (``.mp4``, ``.mkv``, ``.avi``...). The file appears only
    once it is complete: a failure leaves no partial file and keeps an existing one intact.

    Args:
        filename: where to write.
        video_array: ``Tensor[T, H, W, 3] uint8`` RGB frames (a numpy array works too). H and W must
            be even for the yuv420p codecs.
        fps: frame rate; 29.97, 23.976 and 59.94 are stored as 30000/1001, 24000/1001 and
            60000/1001, other floats as the nearest fraction with a denominator up to 1001
            (torchvision rounded them to an integer).
        video_codec: an FFmpeg encoder, default ``"libx264"``; ``"libx264rgb"`` stores RGB
            losslessly-capable, ``"mpeg4"`` is MPEG-4 Part 2.
        options: encoder options, e.g. ``{"crf": "17", "preset": "fast"}``.
        audio_array: ``Tensor[K, L]`` float audio (K = 1 or 2 channels), optional.
        audio_fps: audio sample rate, required with ``audio_array``.
        audio_codec: e.g. ``"aac"`` (default when audio is given) or ``"mp3"``.
        audio_options: audio encoder options.
    """
    if not isinstance(filename, (str, os.PathLike)):
        raise InvalidInputTypeError(f"filename must be a str or os.PathLike, got {type(filename).__name__}")
    video = _as_tensor(video_array, "video_array")
    if video.dtype != torch.uint8:
        raise InvalidInputTypeError(f"video_array must be uint8 RGB frames, got dtype {video.dtype}")
    if video.dim() != 4 or video.shape[3] != 3:
        raise InvalidArgumentError(f"video_array must have shape [T, H, W, 3], got {tuple(video.shape)}")
    if video.shape[0] == 0:
        raise InvalidArgumentError("video_array has no frames")
    if video_codec != "libx264rgb" and (video.shape[1] % 2 or video.shape[2] % 2):
        raise InvalidArgumentError(
            f"{video_codec} stores yuv420p, which needs an even width and height; got "
            f"{video.shape[2]}x{video.shape[1]}")
    rate = _check_fps(fps, "fps")
    audio = None
    if audio_array is not None:
        audio = _as_tensor(audio_array, "audio_array")
        if audio.dim() != 2 or audio.shape[0] not in (1, 2):
            raise InvalidArgumentError(f"audio_array must have shape [K, L] with K = 1 or 2, got {tuple(audio.shape)}")
        if audio_fps is None:
            raise InvalidArgumentError("audio_fps is required with audio_array")
        audio_fps = int(_check_fps(audio_fps, "audio_fps"))
    chosen, _ = select_backend("write_video", "cpu")
    chosen.write_video(os.fspath(filename), video.contiguous(), rate, video_codec=video_codec,
                       options=options, audio_array=audio, audio_fps=audio_fps,
                       audio_codec=audio_codec, audio_options=audio_options)


def _as_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    raise InvalidInputTypeError(f"{name} must be a torch.Tensor or numpy array, got {type(value).__name__}")
