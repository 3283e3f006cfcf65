"""The one timing harness: GPU sync, a block timer, back-to-back calls, medians, interleaving.

``gpuvio bench`` (``_runner.py``), the timings the command line prints (``gpuvio demo`` and
``gpuvio decode``) and the scripts in ``benchmarks/`` all time through these functions, so that
"what a timing covers" is decided in one place: queued GPU work is waited for before the clock
stops, warm-up calls are never timed, and a figure is the median of the timed runs.

Importing this module imports no torch; :func:`sync` imports it only for a CUDA device.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

__all__ = ["interleaved", "median_time", "sync", "sync_fn", "synced", "time_calls", "timer"]

T = TypeVar("T")


def _is_cuda(device: Any) -> bool:
    if device is None:
        return False
    kind = getattr(device, "type", None)  # a torch.device
    return kind == "cuda" if kind is not None else str(device).startswith("cuda")


def sync(device: Any = None) -> None:
    """Wait for the GPU work queued so far, so that a timing covers it (no-op unless CUDA).

    ``device`` is a ``torch.device``, a string such as ``"cuda:0"``, or None (the CPU).
    """
    if _is_cuda(device):
        import torch

        torch.cuda.synchronize()


def sync_fn(device: Any) -> Callable[[], None]:
    """A zero-argument :func:`sync` for ``device`` (a do-nothing function off the GPU)."""
    if _is_cuda(device):
        import torch

        return torch.cuda.synchronize
    return lambda: None


def synced(fn: Callable[[], T], device: Any) -> Callable[[], T]:
    """``fn`` wrapped so that its queued GPU work is finished when it returns (``fn`` off the GPU)."""
    if not _is_cuda(device):
        return fn
    wait = sync_fn(device)

    def run() -> T:
        out = fn()
        wait()
        return out

    return run


@contextlib.contextmanager
def timer(device: Any = None) -> Iterator[list[float]]:
    """Time a ``with`` block; the list it yields holds the seconds once the block has ended.

    With a CUDA ``device`` the GPU work queued in the block is waited for before the clock stops.
    Nothing is recorded when the block raises.
    """
    out: list[float] = []
    start = time.perf_counter()
    yield out
    sync(device)
    out.append(time.perf_counter() - start)


def time_calls(fn: Callable[[], Any], calls: int = 1) -> float:
    """Seconds taken by ``calls`` back-to-back calls of ``fn`` (its outputs are dropped)."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return time.perf_counter() - start


def median_time(fn: Callable[[], T], *, repeats: int, warmup: int = 1,
                sync: Callable[[], None] | None = None) -> tuple[float, T | None]:
    """(median seconds of one ``fn()`` call, the output of the last call).

    ``warmup`` untimed calls first (decoder creation, kernel compilation, caches); then each of
    the ``repeats`` timed runs starts after ``sync()`` and stops after it, so it covers the GPU
    work its call queued and none left from before. The previous output is released before each
    timed call, so two outputs are never alive at once.
    """
    wait = sync if sync is not None else (lambda: None)
    for _ in range(warmup):
        fn()
    wait()
    times: list[float] = []
    out: T | None = None
    for _ in range(repeats):
        out = None
        wait()
        start = time.perf_counter()
        out = fn()
        wait()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def interleaved(items: Sequence[T], round_index: int) -> list[T]:
    """The order of round ``round_index``: ``items`` rotated by that many places.

    Starting every round one place later spreads the machine's slow drifts (heat, other
    processes, the page cache) over all contenders instead of penalising whichever runs last.
    """
    shift = round_index % max(len(items), 1)
    return [*items[shift:], *items[:shift]]
