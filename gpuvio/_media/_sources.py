"""Choosing a frame source for a stream, and the one fallback policy to the CPU backend.

A GPU backend that cannot decode a stream exactly like the CPU backend raises
:class:`~gpuvio._protocols.SourceUnsupported`, when the source is made or later while decoding.
Either way the media layer takes the CPU backend from the registry, warns once, records a
:class:`~gpuvio._fallback.Fallback`, and carries on with the CPU's source from the same place.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from .. import _fallback
from .._protocols import FrameSource, Purpose, SourceUnsupported, VideoDecoder
from .._types import ColorPolicy
from ._container import source_name

__all__ = ["cpu_decoder", "fall_back", "place", "video_source"]


def cpu_decoder() -> VideoDecoder:
    """The CPU backend, from the registry (the one every fallback goes to)."""
    from .._dispatch import get_backend

    return get_backend("cpu")  # type: ignore[return-value]


# how warnings name a backend (benchmarks and users grep for "NVDEC cannot decode")
_LABELS = {"nvdec": "NVDEC"}


def fall_back(backend: str, operation: str, source: Any, reason: str) -> _fallback.Fallback:
    """Warn that ``backend`` hands ``source`` to the CPU, and record it."""
    label = _LABELS.get(backend, backend)
    warnings.warn(f"{source_name(source)}: {label} cannot decode this video ({reason}); decoded on the CPU "
                  "instead", RuntimeWarning, stacklevel=5)
    return _fallback.record(backend, operation, reason)


def video_source(decoder: VideoDecoder, stream: Any, *, source: Any, operation: str, device: torch.device,
                 color: ColorPolicy, purpose: Purpose, threads: int = 0, consumer: Any = None
                 ) -> tuple[FrameSource, _fallback.Fallback | None]:
    """A frame source for ``stream`` from ``decoder``, or the CPU's when it cannot take it.

    ``source`` (the file) and ``operation`` only go into the warning and the fallback record.
    """
    try:
        return decoder.frame_source(stream, device=device, color=color, purpose=purpose, threads=threads,
                                    consumer=consumer), None
    except SourceUnsupported as exc:
        fallback = fall_back(decoder.name, operation, source, str(exc))
    cpu = cpu_decoder()
    return cpu.frame_source(stream, device=device, color=color, purpose=purpose, threads=threads), fallback


def place(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device`` (a CPU source's frames are uploaded when a GPU was asked for)."""
    if tensor.device == device or (device.type == "cuda" and device.index is None and tensor.device.type == "cuda"):
        return tensor
    return tensor.to(device)
