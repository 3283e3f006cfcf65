"""write_video with PyAV: frames (and optional audio) encoded into a file that appears only when complete."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import torch

from gpuvio._errors import InvalidArgumentError
from gpuvio._source import atomic_output

__all__ = ["write_video"]

_AUDIO_DTYPES = {"dbl": "<f8", "dblp": "<f8", "flt": "<f4", "fltp": "<f4", "s16": "<i2", "s16p": "<i2",
                 "s32": "<i4", "s32p": "<i4", "u8": "u1", "u8p": "u1", "s64": "<i8", "s64p": "<i8"}


def write_video(filename: str, video: torch.Tensor, fps: Fraction, *, video_codec: str,
                options: dict[str, Any] | None, audio_array: torch.Tensor | None, audio_fps: int | None,
                audio_codec: str | None, audio_options: dict[str, Any] | None) -> None:
    """See :func:`gpuvio.write_video`. The file appears only once it is complete."""
    import av

    frames = video.numpy()
    with atomic_output(filename) as tmp:
        try:
            # the temporary name keeps the suffix, from which FFmpeg picks the container
            with av.open(tmp, mode="w") as container:
                stream = container.add_stream(video_codec, rate=fps)
                stream.width = frames.shape[2]
                stream.height = frames.shape[1]
                stream.pix_fmt = "rgb24" if video_codec == "libx264rgb" else "yuv420p"
                stream.options = {str(k): str(v) for k, v in (options or {}).items()}
                if audio_array is not None:
                    _write_audio(container, audio_array, audio_fps, audio_codec or "aac", audio_options)
                for index, image in enumerate(frames):
                    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                    frame.pts = index
                    for packet in stream.encode(frame):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
        except av.FFmpegError as exc:
            raise InvalidArgumentError(f"encoding {filename!r} with {video_codec!r} failed: {exc}") from None
        except (ValueError, TypeError) as exc:
            raise InvalidArgumentError(f"encoding {filename!r} with {video_codec!r} failed: {exc}") from None


def _write_audio(container: Any, audio: torch.Tensor, rate: int | None, codec: str,
                 options: dict[str, Any] | None) -> None:
    import av

    channels = audio.shape[0]
    if channels > 2:
        raise InvalidArgumentError(f"audio_array has {channels} channels; write_video supports 1 or 2")
    layout = "stereo" if channels > 1 else "mono"
    stream = container.add_stream(codec, rate=rate, layout=layout)
    stream.options = {str(k): str(v) for k, v in (options or {}).items()}
    sample_format = stream.format.name
    dtype = np.dtype(_AUDIO_DTYPES[sample_format])
    samples = audio.numpy()
    if samples.dtype.kind == "f" and dtype.kind in "iu":
        # float audio is in [-1, 1]; an integer encoder wants full-scale samples, not a cast to 0
        clipped = np.clip(samples.astype(np.float64), -1.0, 1.0)
        if dtype.kind == "u":
            samples = np.round((clipped + 1.0) * 127.5)
        else:
            samples = np.round(clipped * float(np.iinfo(dtype).max))
    samples = samples.astype(dtype)
    if not stream.format.is_planar:
        samples = samples.T.reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format=sample_format, layout=layout)
    frame.sample_rate = rate
    frame.pts = 0
    for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
