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

__all__ = ["agreement_text", "make_record", "markdown_table", "plot", "print_targets", "print_workload",
           "target_result", "write_json"]

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
        agree = agreement_text(r.agreement)
        print(f"  {name:<{width}}{median:>11}{thr:>18}{speed:>17}  {agree}")
    for s in workload.skipped:
        print(f"  {s['contender']:<{width}}  skipped: {s['reason']}")


def agreement_text(agreement: dict[str, float] | None) -> str:
    """The agreement column: pixels (max/mean |diff| against gpuvio's) or bytes."""
    if not agreement:
        return ""
    if "identical_bytes" in agreement:
        return ("identical bytes" if agreement["identical_bytes"] else
                f"other bytes ({agreement['size_bytes']:,.0f} vs gpuvio's {agreement['gpuvio_size_bytes']:,.0f})")
    if "shape_mismatch" in agreement:
        return "shape differs"
    return f"max |diff| {agreement['max_abs_diff']:.0f}, mean {agreement['mean_abs_diff']:.2f}"


def make_record(results: list[Result], workloads: list[Workload], media: list[MediaFile], *,
                args: Any, device: str, device_note: str, repeats: int, started: float,
                load_before: list[float] | None, load_after: list[float] | None) -> dict[str, Any]:
    """The JSON-ready record: system, settings, media, every result, skipped peers, targets."""
    from .._env import system_info

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
    """The issue targets attached to the workloads (``Workload.targets``), checked on this run.

    Each entry: ``target`` (the text), ``issue``, ``kind``, ``workload``, ``needs_speedup``, and
    either ``status`` "met"/"missed" with ``speedup`` (gpuvio's throughput / the peer's; for a
    "ceiling" target the fraction of the ceiling reached) or ``max_abs_diff`` (for "identical"),
    or ``mean_abs_diff`` and ``max_abs_diff`` with ``needs_mean_abs_diff`` in place of
    ``needs_speedup`` (for "close"), or ``status`` "not measured" with the ``reason``.
    """
    out = []
    for w in workloads:
        rs = by_workload.get(w.name, [])
        ref = _reference(rs)
        for t in w.targets:
            peer = next((r for r in rs if not r.contender.is_gpuvio and r.contender.name.startswith(t.peer)),
                        None)
            entry: dict[str, Any] = {"target": t.text, "issue": t.issue, "kind": t.kind,
                                     "workload": w.name, "peer": peer.contender.name if peer else t.peer,
                                     "needs_speedup": t.needs}
            reason = None
            if ref is None:
                reason = "gpuvio failed"
            elif peer is None:
                skip = next((x for x in w.skipped if x["contender"].startswith(t.peer)), None)
                reason = f"{t.peer}: {skip['reason']}" if skip else f"{t.peer} not available here"
            elif peer.error is not None or (t.kind not in ("identical", "close") and not peer.throughput):
                reason = f"{t.peer} failed: {peer.error}"
            if reason is not None or ref is None or peer is None:
                entry.update(status="not measured", reason=reason)
            elif t.kind == "identical":
                agreement = peer.agreement or {}
                if "max_abs_diff" not in agreement:
                    entry.update(status="missed", reason="shapes differ" if agreement else "not compared")
                else:
                    diff = agreement["max_abs_diff"]
                    entry.update(max_abs_diff=diff, status="met" if diff == 0 else "missed")
                entry.pop("needs_speedup")
            elif t.kind == "close":
                agreement = peer.agreement or {}
                entry["needs_mean_abs_diff"] = entry.pop("needs_speedup")
                if "mean_abs_diff" not in agreement:
                    entry.update(status="missed", reason="shapes differ" if agreement else "not compared")
                else:
                    mean = agreement["mean_abs_diff"]
                    entry.update(mean_abs_diff=round(mean, 4), max_abs_diff=agreement["max_abs_diff"],
                                 status="met" if mean <= t.needs else "missed")
            else:
                speedup = (ref.throughput or 0.0) / (peer.throughput or 1.0)  # both measured: see reason
                entry.update(speedup=round(speedup, 3), status="met" if speedup >= t.needs else "missed")
            if record["quick"]:
                entry["indicative"] = "quick run: smaller media and few repeats"
            out.append(entry)
    return out


def target_result(t: dict[str, Any]) -> str:
    """One target's outcome in words, e.g. "met (gpuvio 1.92x, needs 1.8x)"."""
    if t["status"] == "not measured":
        return f"not measured ({t.get('reason', '')})"
    kind = t.get("kind", "speedup")
    if kind == "identical":
        if "max_abs_diff" not in t:
            return f"{t['status']} ({t.get('reason', '')})"
        return f"{t['status']} (max |diff| {t['max_abs_diff']:.0f})"
    if kind == "close":
        if "mean_abs_diff" not in t:
            return f"{t['status']} ({t.get('reason', '')})"
        return (f"{t['status']} (mean |diff| {t['mean_abs_diff']:.3f}, needs <= {t['needs_mean_abs_diff']}; "
                f"max {t['max_abs_diff']:.0f})")
    if kind == "ceiling":
        return f"{t['status']} (gpuvio at {t['speedup']:.2f} of the ceiling, needs {t['needs_speedup']})"
    return f"{t['status']} (gpuvio {t['speedup']:.2f}x, needs {t['needs_speedup']}x)"


def _issue(t: dict[str, Any]) -> str:
    # records written before targets named their issue held issue 2's alone
    return f"#{t.get('issue', 2)} "


def _md(text: str) -> str:
    """A Markdown table cell: its pipes (as in "max |diff|") escaped."""
    return text.replace("|", "\\|")


def print_targets(record: dict[str, Any]) -> None:
    if not record["targets"]:
        return
    print("\ntargets" + (" (indicative: quick run)" if record["quick"] else "") + ":")
    workload = None
    for t in record["targets"]:
        if t["workload"] != workload:
            workload = t["workload"]
            print(f"  {workload}:")
        result = target_result(t)
        if t["status"] != "not measured":
            result = t["status"].upper() + result[len(t["status"]):]
        print(f"    {_issue(t)}{t['target']}: {result}")
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
        "| workload | contender | throughput | gpuvio speed-up | agreement with gpuvio |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    previous = None
    for r in record["results"]:
        workload = r["workload"] if r["workload"] != previous else ""
        previous = r["workload"]
        if r["error"]:
            lines.append(f"| {workload} | {r['contender']} | failed | | |")
            continue
        speed = "reference" if r["is_gpuvio"] and r["ratio_to_gpuvio"] == 1.0 else (
            f"{1 / r['ratio_to_gpuvio']:.2f}x" if r["ratio_to_gpuvio"] else "")
        contender = f"**{r['contender']}**" if r["is_gpuvio"] else r["contender"]
        lines.append(f"| {workload} | {contender} | {r['value']:,.1f} {r['unit']} | {speed} | "
                     f"{_md(agreement_text(r.get('agreement')))} |")
    if record.get("targets"):
        lines += ["", "| issue | workload | target | result |", "| --- | --- | --- | --- |"]
        previous = None
        for t in record["targets"]:
            workload = t["workload"] if t["workload"] != previous else ""
            previous = t["workload"]
            lines.append(f"| {_issue(t).strip()} | {workload} | {_md(t['target'])} | {_md(target_result(t))} |")
    return "\n".join(lines) + "\n"
