"""Resident memory levels off under a long mixed workload (issue 11).

The workload of ``benchmarks/memory_plateau.py`` (clean JPEG decodes, corrupt JPEGs that raise
DecodeError, VideoReader open/seek/next/drop), reduced in size, runs in a child process: RSS
is a property of the whole process, and a fresh one is not disturbed by what other tests left
on the heap. After warm-up, the RSS at the end of the last round may exceed the RSS at the end
of the middle round by less than ``LATE_GROWTH_BOUND_MB``. glibc's heap keeps some freed memory
and gives it back unevenly, so RSS moves by a few MB now and then (under 3 MB in the second half
here), without a trend. A leak of one decoded image per call adds 55 MB per round; one leaked
VideoReader per open, 19 MB per round; even one 320x240 frame kept per reader, 1.8 MB per round,
22 MB over the 12 late rounds. Each of these made this test fail when tried.
"""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

SCRIPT = REPO / "benchmarks" / "memory_plateau.py"
ROUNDS = 24
LATE_GROWTH_BOUND_MB = 15.0
# per round: 60 decodes of a 640x480 JPEG, 20 corrupt JPEGs, 8 readers of a 2 s 320x240 clip
REDUCED = ["--jpeg-size", "640x480", "--decodes", "60", "--corrupt", "20", "--readers", "8", "--next", "3",
           "--video-size", "320x240", "--video-seconds", "2"]


def run_workload(tmp_path, *extra: str) -> dict:
    """The reduced workload in a child process; its JSON record."""
    record = tmp_path / "memory.json"
    # --watchdog: faulthandler prints every thread's stack and ends the child if it hangs
    command = [sys.executable, str(SCRIPT), "--rounds", str(ROUNDS), "--quiet", "--watchdog", "90",
               "--json", str(record), *REDUCED, *extra]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, f"the workload failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(record.read_text())


def test_rss_levels_off_under_a_mixed_workload(tmp_path):
    record = run_workload(tmp_path)
    summary = record["summary"]
    rss = [r["rss_mb"] for r in record["rounds"]]
    assert len(rss) == ROUNDS
    late = summary["late_growth_mb"]
    assert late < LATE_GROWTH_BOUND_MB, (
        f"RSS grew by {late:.1f} MB from the end of round {summary['late_from_round']} to the end of round "
        f"{ROUNDS} (bound {LATE_GROWTH_BOUND_MB} MB): a leak? RSS per round: {rss}")
    # nor did it climb high in between and come back down just at the end
    assert max(rss[ROUNDS // 2 - 1:]) - rss[ROUNDS // 2 - 1] < 2 * LATE_GROWTH_BOUND_MB, rss
