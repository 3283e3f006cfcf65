"""Printing, the JSON record and the chart of a benchmark run."""

from __future__ import annotations

import datetime
import json
import os
import sys
import tempfile
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._media import MediaFile
    from ._peers import Workload
    from ._runner import Result

__all__ = ["make_record", "plot", "print_targets", "print_workload", "write_json"]

SCHEMA = "gpuvio-bench/1"


def _reference(results: list[Result]) -> Result | None:
    return next((r for r in results if r.contender.is_gpuvio and r.throughput), None)


def print_workload(workload: Workload, results: list[Result]) -> None:
    """A table: contender, median time per call, throughput, and gpuvio's speed-up over it."""
    ref = _reference(results)
    width = max(len(r.contender.name) for r in results) + 2
    print(f"  {'contender':<{width}}{'median':>11}{'throughput':>18}{'gpuvio speed-up':>17}  agreement")
    for r in results:
        name = r.contender.name
        if r.error is not None:
            print(f"  {name:<{width}}  FAILED: {r.error}")
            continue
        median = f"{r.median_s * 1000:.2f} ms" if r.median_s < 1 else f"{r.median_s:.3f} s"
        thr = f"{r.throughput:,.1f} {workload.unit}"
        if r.contender.is_gpuvio and r is ref:
            speed = "(reference)"
        elif ref is not None:
            speed = f"{ref.throughput / r.throughput:.2f}x"
        else:
            speed = "n/a"
        agree = ""
        if r.agreement:
            if "identical_bytes" in r.agreement:
                agree = ("identical bytes" if r.agreement["identical_bytes"] else
                         f"other bytes ({r.agreement['size_bytes']:,.0f} vs gpuvio's "
                         f"{r.agreement['gpuvio_size_bytes']:,.0f})")
            elif "shape_mismatch" in r.agreement:
                agree = "shape differs"
            else:
                agree = f"max |diff| {r.agreement['max_abs_diff']:.0f}, mean {r.agreement['mean_abs_diff']:.2f}"
        print(f"  {name:<{width}}{median:>11}{thr:>18}{speed:>17}  {agree}")
    for s in workload.skipped:
        print(f"  {s['contender']:<{width}}  skipped: {s['reason']}")


def make_record(results: list[Result], workloads: list[Workload], media: list[MediaFile], *,
                args: Any, device: str, device_note: str, repeats: int, started: float,
                load_before: list[float] | None, load_after: list[float] | None) -> dict[str, Any]:
    """The JSON-ready record: system, settings, media, every result, skipped peers, targets."""
    from ..cli import system_info

    rows = []
    by_workload: dict[str, list[Result]] = {}
    for r in results:
        by_workload.setdefault(r.workload.name, []).append(r)
    for name, rs in by_workload.items():
        ref = _reference(rs)
        for r in rs:
            row: dict[str, Any] = {
                "name": f"{name} | {r.contender.name}",
                "workload": name,
                "media": r.workload.media.path.name,
                "contender": r.contender.name,
                "library": r.contender.library,
                "device": r.contender.device,
                "is_gpuvio": r.contender.is_gpuvio,
                "value": round(r.throughput, 3) if r.throughput else None,
                "unit": r.workload.unit,
                "median_s_per_call": r.median_s,
                "calls_per_run": r.inner,
                "items_per_call": r.workload.items,
                "runs_s": [round(t, 6) for t in r.times_s],
                # ratio_to_gpuvio: the peer's throughput / gpuvio's (below 1: gpuvio is faster)
                "ratio_to_gpuvio": round(r.throughput / ref.throughput, 4)
                if ref is not None and r.throughput else None,
                "agreement": r.agreement,
                "note": r.contender.note or None,
                "error": r.error,
            }
            rows.append(row)
    skipped = [{"workload": w.name, **s} for w in workloads for s in w.skipped]
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "created": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(datetime.datetime.now().timestamp() - started, 1),
        "command": "gpuvio " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0] else "gpuvio bench",
        "quick": bool(args.quick),
        "device": device,
        "device_note": device_note,
        "repeats": repeats,
        "statistic": "median of the timed runs; each run interleaved with the other contenders",
        "load_average_before": load_before,
        "load_average_after": load_after,
        "system": system_info(),
        "media": [m.record() for m in media],
        "results": rows,
        "skipped": skipped,
    }
    record["targets"] = _targets(record, workloads, by_workload)
    return record


def _targets(record: dict[str, Any], workloads: list[Workload],
             by_workload: dict[str, list[Result]]) -> list[dict[str, Any]]:
    """The issue-2 performance targets, checked where this run measured them."""
    out = []
    for w in workloads:
        if not w.target:
            continue
        rs = by_workload.get(w.name, [])
        ref = _reference(rs)
        peers = [r for r in rs if not r.contender.is_gpuvio and r.throughput]
        if w.target["kind"] == "read_video":
            checks = [("torchvision 0.8 algorithm", 1.3, "read_video >= 1.3x the torchvision 0.8 algorithm"),
                      ("torchcodec CPU, default", 1.0,
                       "read_video ahead of torchcodec's CPU decoder (its default: 1 FFmpeg thread)"),
                      ("torchcodec CPU, FFmpeg threads auto", 1.0,
                       "read_video ahead of torchcodec's CPU decoder (FFmpeg threads auto)")]
        else:
            peer = w.target["peer"]
            checks = [(peer, 1.0, f"decode_image JPEG 1080p at least as fast as {peer}")]
        for prefix, needs, text in checks:
            peer_result = next((r for r in peers if r.contender.name.startswith(prefix)), None)
            entry: dict[str, Any] = {"target": text, "workload": w.name, "needs_speedup": needs}
            if ref is None or peer_result is None:
                entry.update(status="not measured",
                             reason="gpuvio failed" if ref is None else f"{prefix} not available here")
            else:
                speedup = ref.throughput / peer_result.throughput
                entry.update(speedup=round(speedup, 3), status="met" if speedup >= needs else "missed")
            if record["quick"]:
                entry["indicative"] = "quick run: smaller media and few repeats"
            out.append(entry)
    return out


def print_targets(record: dict[str, Any]) -> None:
    if not record["targets"]:
        return
    print("\nissue-2 targets" + (" (indicative: quick run)" if record["quick"] else "") + ":")
    for t in record["targets"]:
        if t["status"] == "not measured":
            print(f"  {t['target']}: not measured ({t['reason']})")
        else:
            print(f"  {t['target']}: {t['status'].upper()} (gpuvio {t['speedup']:.2f}x, needs {t['needs_speedup']}x)")
    load = record.get("load_average_before")
    if load:
        print(f"load average before/after: {load[0]} / {(record.get('load_average_after') or ['?'])[0]} "
              f"on {record['system']['cpu_cores']} cores")


def write_json(record: dict[str, Any], path: str) -> None:
    """Write atomically: a reader never sees half a record."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".json.tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def plot(record: dict[str, Any], path: str) -> None:
    """Horizontal bars: each contender's throughput relative to gpuvio, one group per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in record["results"] if r["ratio_to_gpuvio"]]
    labels = [f"{r['workload']}\n{r['contender']}" if i == 0 or rows[i - 1]["workload"] != r["workload"]
              else r["contender"] for i, r in enumerate(rows)]
    values = [r["ratio_to_gpuvio"] for r in rows]
    colours = ["#76b900" if r["is_gpuvio"] else "#888888" for r in rows]
    fig, ax = plt.subplots(figsize=(10, 0.38 * len(rows) + 1.5))
    y = list(range(len(rows)))[::-1]
    ax.barh(y, values, color=colours)
    ax.set_yticks(y, labels, fontsize=7)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlim(0, max(values + [1.0]) * 1.3)  # room for the throughput labels
    for yi, v, r in zip(y, values, rows):
        ax.text(v, yi, f" {r['value']:,.0f} {r['unit']}", va="center", fontsize=6)
    system = record["system"]
    ax.set_xlabel("throughput relative to gpuvio (1.0 = gpuvio; below 1: slower than gpuvio)")
    ax.set_title(f"gpuvio bench on {record['device']}: {system['cpu']} ({system['cpu_cores']} cores)"
                 + (" [quick]" if record["quick"] else ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown_table(record: dict[str, Any]) -> str:
    """The record as Markdown (for the README): one row per contender, grouped by workload."""
    system = record["system"]
    gpus = ", ".join(g["name"] for g in system.get("gpus") or []) or "no GPU"
    lines = [
        f"{system['cpu']}, {system['cpu_cores']} cores; {gpus}; torch {system['packages'].get('torch')}, "
        f"PyAV {system['packages'].get('av (PyAV)')} (FFmpeg {system.get('ffmpeg')}), "
        f"Pillow {system['packages'].get('Pillow')}; device {record['device']}; "
        f"{record['repeats']} interleaved runs, median; {record['created']}"
        + (" (quick run: indicative only)" if record.get("quick") else ""),
        "",
        "| workload | contender | throughput | gpuvio speed-up |",
        "| --- | --- | ---: | ---: |",
    ]
    previous = None
    for r in record["results"]:
        workload = r["workload"] if r["workload"] != previous else ""
        previous = r["workload"]
        if r["error"]:
            lines.append(f"| {workload} | {r['contender']} | failed | |")
            continue
        speed = "reference" if r["is_gpuvio"] and r["ratio_to_gpuvio"] == 1.0 else (
            f"{1 / r['ratio_to_gpuvio']:.2f}x" if r["ratio_to_gpuvio"] else "")
        contender = f"**{r['contender']}**" if r["is_gpuvio"] else r["contender"]
        lines.append(f"| {workload} | {contender} | {r['value']:,.1f} {r['unit']} | {speed} |")
    if record.get("targets"):
        lines += ["", "| issue-2 target | result |", "| --- | --- |"]
        for t in record["targets"]:
            result = t["status"] if t["status"] == "not measured" else \
                f"{t['status']} ({t['speedup']:.2f}x, needs {t['needs_speedup']}x)"
            lines.append(f"| {t['target']} | {result} |")
    return "\n".join(lines) + "\n"
