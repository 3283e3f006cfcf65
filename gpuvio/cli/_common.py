"""What several commands share: the error they exit with, formatting, devices, a progress bar."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

__all__ = ["DEVICE_HELP", "CliError", "Formatter", "positive_float", "progress", "resolve_device",
           "served_by", "shape", "size"]

DEVICE_HELP = ("'cpu', 'cuda', 'cuda:N' or 'auto' (the GPU when a GPU backend can run here, "
               "else the CPU)")


class CliError(Exception):
    """A failure to report on one line and exit with ``code`` (1: the work failed, 2: bad usage)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of descriptions and examples; defaults are written in each help."""


def positive_float(text: str) -> float:
    """argparse type: a finite number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def shape(t: Any) -> str:
    """``uint8 [60, 360, 640, 3]`` for a tensor (dtype without the ``torch.`` prefix)."""
    return f"{str(t.dtype).replace('torch.', '')} [{', '.join(str(s) for s in t.shape)}]"


def size(n_bytes: float) -> str:
    """A byte count for people: ``512 B``, ``12.3 KB``, ``4.0 MB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return ""


def served_by(operation: str, device: Any) -> str:
    """Name of the backend the dispatcher picks for ``operation`` on ``device``."""
    from .._dispatch import select_backend

    backend, _ = select_backend(operation, device)  # type: ignore[arg-type]
    return backend.name


def resolve_device(device: str, *, require: str | None = None) -> tuple[Any, str]:
    """(torch.device, note) for a user's ``--device``; the note says why 'auto' chose the CPU.

    With ``require`` (an operation), a CUDA device that no GPU backend can serve for it is refused
    here, with the dispatcher's explanation, instead of failing later in every step.
    """
    from .._dispatch import cuda_unavailable_reason, parse_device, select_backend

    try:
        parsed = parse_device(device)
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc), code=2) from None
    if parsed == "auto":
        _, target = select_backend("read_video", "auto")
        if target.type == "cpu":
            reason = cuda_unavailable_reason() or "no GPU backend is usable (see 'gpuvio info')"
            return target, f"auto -> cpu ({reason})"
        return target, f"auto -> {target}"
    if require is not None and parsed.type == "cuda":
        try:
            select_backend(require, parsed)  # type: ignore[arg-type]
        except ImportError as exc:  # BackendUnavailableError
            raise CliError(str(exc)) from None
    return parsed, str(parsed)


class _PlainProgress:
    """What :func:`progress` returns without tqdm: counts silently, prints nothing per step."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress(**kwargs: Any) -> Any:
    """A tqdm bar on stderr when tqdm is installed and stderr is a terminal, else a silent one."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainProgress()
    return tqdm(file=sys.stderr, leave=False, disable=not sys.stderr.isatty(), **kwargs)
