"""Timing: warm-up, then repeated runs with the contenders interleaved; the median is reported.

Interleaving (round r runs every contender once, starting from a rotated position) spreads slow
drifts of the machine (thermal, other processes, the page cache) over all contenders instead of
penalising whichever ran last.
"""

from __future__ import annotations

import gc
import importlib
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from . import BenchError
from ._peers import Contender, Workload, build_workloads
from ._timing import interleaved, time_calls

__all__ = ["Result", "measure", "run_from_cli"]

# Short calls (one image) are repeated until one timed run lasts about this long, so that the
# timer's resolution and per-run noise do not dominate. --quick uses the smaller value.
MIN_RUN_S, MIN_RUN_S_QUICK = 0.2, 0.05


@dataclass
class Result:
    """The measurement of one contender on one workload."""

    workload: Workload
    contender: Contender
    times_s: list[float] = field(default_factory=list)  # per timed run (each run does `inner` calls)
    inner: int = 1
    error: str | None = None
    agreement: dict[str, float] | None = None

    @property
    def median_s(self) -> float | None:
        """Median seconds of one call (one run divided by its repeats)."""
        return statistics.median(self.times_s) / self.inner if self.times_s else None

    @property
    def throughput(self) -> float | None:
        m = self.median_s
        return self.workload.items / m if m else None


def _agreement(reference: torch.Tensor | None, other: torch.Tensor | None,
               compare: str = "pixels") -> dict[str, float] | None:
    """max/mean absolute difference between two views, or None when they cannot be compared.

    For encoders (``compare="bytes"``): whether the bytes are identical, and both sizes.
    """
    if compare == "bytes" and reference is not None and other is not None:
        return {"identical_bytes": float(torch.equal(reference, other)),
                "size_bytes": float(other.numel()), "gpuvio_size_bytes": float(reference.numel())}
    if reference is None or other is None or reference.shape != other.shape:
        return None if reference is None or other is None else {"shape_mismatch": 1.0}
    diff = (reference.to(torch.int32) - other.to(torch.int32)).abs()
    return {"max_abs_diff": float(diff.max()) if diff.numel() else 0.0,
            "mean_abs_diff": float(diff.float().mean()) if diff.numel() else 0.0}


class _Progress:
    """tqdm when it is installed and stderr is a terminal; otherwise nothing per step."""

    def __init__(self, total: int, desc: str) -> None:
        self._bar = None
        try:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="run", leave=False, file=sys.stderr,
                             disable=not sys.stderr.isatty())
        except ImportError:
            pass

    def update(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def measure(workload: Workload, *, repeats: int, warmup: int = 1,
            min_run_s: float = MIN_RUN_S) -> list[Result]:
    """Time every contender of ``workload``; a contender that raises is reported, not fatal."""
    results = [Result(workload, c) for c in workload.contenders]
    ref_view = None
    # warm-up: first calls pay for imports, codec set-up, CUDA context and caches
    for r in results:
        try:
            out = r.contender.fn()
            for _ in range(warmup - 1):
                out = r.contender.fn()
            view = r.contender.view(out) if r.contender.view is not None else None
            del out
            if r.contender.is_gpuvio:
                ref_view = view
            r.agreement = _agreement(ref_view, view, workload.compare) if not r.contender.is_gpuvio else None
        except Exception as exc:  # noqa: BLE001
            r.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
    live = [r for r in results if r.error is None]
    if workload.short:
        # calibrate: enough calls per run that the slowest live contender takes ~min_run_s
        slowest = max((time_calls(r.contender.fn) for r in live), default=0.0)
        inner = max(1, min(200, math.ceil(min_run_s / max(slowest, 1e-6))))
        for r in live:
            r.inner = inner
    bar = _progress_for(workload, len(live) * repeats)
    for round_index in range(repeats):
        for r in interleaved(live, round_index):
            if r.error is not None:
                continue
            gc.collect()
            try:
                r.times_s.append(time_calls(r.contender.fn, r.inner))
            except Exception as exc:  # noqa: BLE001
                r.error = f"{type(exc).__name__}: {exc}"[:300]
            bar.update()
    bar.close()
    return results


def _progress_for(workload: Workload, total: int) -> _Progress:
    return _Progress(total, desc=workload.name[:40])


def _resolve(device: str) -> tuple[str, str]:
    """(device string, note) for --device; 'auto' picks CUDA when a GPU backend can read video."""
    from .._dispatch import cuda_unavailable_reason, select_backend

    if device == "cpu":
        return "cpu", "cpu"
    if device == "auto":
        _, target = select_backend("read_video", "auto")
        if target.type == "cpu":
            return "cpu", f"auto -> cpu ({cuda_unavailable_reason() or 'no GPU backend is usable'})"
        return str(target), f"auto -> {target}"
    try:
        _, target = select_backend("read_video", device)
    except ImportError as exc:
        raise BenchError(f"--device {device}: {exc}") from None
    return str(target), str(target)


def run_from_cli(args: Any) -> int:
    """``gpuvio bench``: build the media and workloads, measure, print, write JSON / PNG."""
    from . import _report
    from ._media import default_media, folder_media

    if args.repeats is not None and args.repeats < 1:
        raise BenchError(f"--repeats must be >= 1, got {args.repeats}", code=2)
    for option, value, suffix in (("--json", args.json, None), ("--plot", args.plot, ".png")):
        if value:
            parent = os.path.dirname(os.path.abspath(value))
            if not os.path.isdir(parent):
                raise BenchError(f"{option} {value}: the folder {parent} does not exist", code=2)
            if suffix and not value.lower().endswith(suffix):
                raise BenchError(f"{option} {value}: expected a file name ending in {suffix}", code=2)
    if args.media and not os.path.isdir(args.media):
        raise BenchError(f"--media {args.media}: not a directory")
    if args.plot:
        try:
            importlib.import_module("matplotlib")  # only to fail now rather than after the run
        except ImportError:
            raise BenchError("--plot needs matplotlib: pip install matplotlib "
                             "(or pip install 'gpuvio[bench]')") from None
    device, device_note = _resolve(args.device)
    repeats = args.repeats or (3 if args.quick else 7)
    load_before = _loadavg()
    started = time.time()
    print(f"gpuvio bench: device {device_note}, {repeats} timed run{'s' if repeats > 1 else ''} per contender"
          + (" (quick: smoke-test sizes, not numbers to publish)" if args.quick else ""))
    if load_before and load_before[0] > 0.5 * (os.cpu_count() or 1):
        print(f"warning: the machine is busy (load average {load_before[0]:.1f} on {os.cpu_count()} cores); "
              "treat these numbers as indicative", file=sys.stderr)
    try:
        media = folder_media(args.media) if args.media else default_media(
            quick=args.quick, cache_dir=args.cache_dir, log=lambda m: print(f"  {m}"))
    except FileNotFoundError as exc:
        raise BenchError(str(exc)) from None
    workloads = build_workloads(media, device=device, quick=args.quick, only=args.only)
    if not workloads:
        raise BenchError("nothing to measure" + (f": no workload matches --only {args.only}" if args.only else ""))
    all_results: list[Result] = []
    for i, workload in enumerate(workloads, 1):
        print(f"[{i}/{len(workloads)}] {workload.name} on {workload.media.path.name} "
              f"({len(workload.contenders)} contenders)", flush=True)
        results = measure(workload, repeats=repeats, warmup=1 if args.quick else 2,
                          min_run_s=MIN_RUN_S_QUICK if args.quick else MIN_RUN_S)
        all_results += results
        _report.print_workload(workload, results)
    record = _report.make_record(all_results, workloads, media, args=args, device=device,
                                 device_note=device_note, repeats=repeats, started=started,
                                 load_before=load_before, load_after=_loadavg())
    _report.print_targets(record)
    if args.json:
        _report.write_json(record, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        _report.plot(record, args.plot)
        print(f"wrote {args.plot}")
    failed = [r for r in all_results if r.error is not None and r.contender.is_gpuvio]
    if failed:
        for r in failed:
            print(f"error: gpuvio failed on {r.workload.name}: {r.error}", file=sys.stderr)
        return 1
    return 0


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None
