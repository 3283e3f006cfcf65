"""A short fuzz run in CI: mutated real media never crashes, hangs, or leaks a foreign error type.

The long run is ``python benchmarks/fuzz.py --cases 5000``. Inputs that ever crashed are kept in
tests/regressions/ and replayed here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from _fuzz import build_cases, generated_seeds, run_cases

REGRESSIONS = Path(__file__).parent / "regressions"

SEEDS = [
    ("image", "torchvision/images/grace_hopper_517x606.jpg"),
    ("image", "torchvision/images/logos/palette_pytorch.png"),
    ("image", "torchvision/images/logos/rgbalpha_pytorch16.png"),
    ("image", "torchcodec/cmyk.jpg"),
    ("image", "torchvision/images/interlaced_png/wizard_low-interlaced.png"),
    ("video", "torchcodec/test_non_zero_start.mp4"),
    ("video", "torchvision/videos/RATRACE_wave_f_nm_np1_fr_goo_37.avi"),
    ("video", "torchcodec/av1_video.mkv"),
    ("video", "torchcodec/h265_video.mp4"),
]


def _seeds(media) -> list[tuple[str, bytes]]:
    # the shared files, or without ../shared their generated stand-ins (the same formats)
    return [(kind, media(*rel.split("/")).read_bytes()) for kind, rel in SEEDS] + generated_seeds()


def _check(report) -> None:
    problems = []
    if report.crashes:
        problems.append(f"crashed on {[p.name for p in report.crashes]}")
    if report.hangs:
        problems.append(f"hung on {[p.name for p in report.hangs]}")
    if report.foreign:
        problems.append(f"non-gpuvio errors: {dict(list(report.foreign.items())[:5])}")
    assert not problems, "; ".join(problems)


def test_short_fuzz_run(tmp_path, media):
    cases = build_cases(_seeds(media), 120, seed=1234)
    report = run_cases(cases, tmp_path, timeout=30)
    _check(report)
    assert sum(report.outcomes.values()) >= len(cases)  # every case reported an outcome


def test_saved_regressions(tmp_path):
    saved = sorted(p for p in REGRESSIONS.glob("*") if p.suffix in (".video", ".image"))
    if not saved:
        pytest.skip("no saved regression inputs yet")
    report = run_cases([(p.suffix[1:], p.read_bytes()) for p in saved], tmp_path, timeout=30)
    _check(report)
