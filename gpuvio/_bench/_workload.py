"""The benchmark's vocabulary: a workload, its contenders and targets, and the helpers peers share."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from ._media import MediaFile

__all__ = ["Contender", "Target", "Workload", "first_line", "gpuvio_label", "import_peer", "nchw", "nhwc",
           "sample_frames"]


@dataclass
class Contender:
    """One way of doing a workload's work.

    ``view`` turns the output into a CPU uint8 tensor in the workload's canonical layout
    (``[N, H, W, C]`` for video, ``[C, H, W]`` or ``[N, C, H, W]`` for images) for the agreement check;
    None means the output is not compared (e.g. encoded bytes of another encoder).
    """

    name: str
    library: str
    device: str
    fn: Callable[[], Any]
    is_gpuvio: bool = False
    note: str = ""
    view: Callable[[Any], torch.Tensor] | None = None


@dataclass(frozen=True)
class Target:
    """A performance (or agreement) target of an issue, checked on one workload's results.

    ``peer`` is the start of the contender name it is measured against. ``kind``:

    - ``"speedup"``: gpuvio's throughput / the peer's must be at least ``needs``;
    - ``"ceiling"``: the same ratio, read as the fraction of a ceiling that gpuvio reaches (the
      decode-only row: ``needs=0.75`` is "within 25% of it");
    - ``"identical"``: the peer's pixels must equal gpuvio's (agreement max |diff| 0);
    - ``"close"``: the peer's pixels must be within a mean absolute difference of ``needs``
      levels of gpuvio's (agreement mean |diff| <= needs; e.g. a decode-time resize against
      torchvision's resize of the decoded frames).
    """

    issue: int
    text: str
    peer: str
    needs: float = 1.0
    kind: Literal["speedup", "ceiling", "identical", "close"] = "speedup"


@dataclass
class Workload:
    """A piece of work measured for several contenders on one media file."""

    name: str
    media: MediaFile
    unit: Literal["frames/s", "images/s"]
    items: int  # frames or images produced by one call
    contenders: list[Contender]
    skipped: list[dict[str, str]] = field(default_factory=list)
    short: bool = False  # calls of a few ms: the runner repeats them to fill each timed run
    compare: Literal["pixels", "bytes"] = "pixels"  # what the agreement column compares
    targets: list[Target] = field(default_factory=list)  # the issue targets checked on this workload


def import_peer(module: str) -> tuple[Any, str | None]:
    """(module, None), or (None, the reason it cannot be used: first line of the error)."""
    try:
        return importlib.import_module(module), None
    except ImportError as exc:
        top = module.split(".")[0]
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == top:
            return None, f"{top} is not installed"
        return None, f"{module}: {first_line(exc)}"
    except Exception as exc:  # noqa: BLE001 -- torchcodec without FFmpeg libraries raises RuntimeError
        return None, f"{module}: {first_line(exc)}"


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none), at most 200 characters."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def add_peer(contenders: list[Contender], skip: list[dict[str, str]], label: str, reason: str | None,
              make: Callable[[], Contender]) -> None:
    """Append ``make()`` to ``contenders``, or record in ``skip`` why ``label`` is left out: the
    ``reason`` its library is missing, or the error ``make`` raised."""
    if reason is not None:
        skip.append({"contender": label, "reason": reason})
        return
    try:
        contenders.append(make())
    except Exception as exc:  # noqa: BLE001  (a peer that cannot set up is reported, not fatal)
        skip.append({"contender": label, "reason": f"failed to set up: {first_line(exc)}"})


def sample_frames(video: torch.Tensor) -> torch.Tensor:
    """Six frames of ``[N, H, W, C]`` spread over the clip (the first two, so a B-frame of the
    first GOP, a third, half, two thirds, the last), on the CPU: enough to compare."""
    n = video.shape[0]
    picks = sorted({min(i, n - 1) for i in (0, 1, n // 3, n // 2, 2 * n // 3, n - 1)}) if n else []
    return video[picks].cpu()


def nhwc(t: torch.Tensor) -> torch.Tensor:
    """The agreement view of a ``[N, H, W, C]`` video."""
    return sample_frames(t)


def nchw(t: torch.Tensor) -> torch.Tensor:
    """The agreement view of a ``[N, C, H, W]`` video, in the ``[N, H, W, C]`` layout."""
    return sample_frames(t.permute(0, 2, 3, 1))


def gpuvio_label(operation: str, device: str) -> str:
    """``gpuvio (<backend> backend, <device type>)``: gpuvio's contender, named by what serves it."""
    from .._dispatch import select_backend

    backend, target = select_backend(operation, device)  # type: ignore[arg-type]
    return f"gpuvio ({backend.name} backend, {target.type})"
