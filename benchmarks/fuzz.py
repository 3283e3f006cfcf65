"""Long fuzz run over the shared media: ``python benchmarks/fuzz.py --cases 5000 [--seed N] [--save]``.

Every mutated input must end in a result or a gpuvio exception within the time bound; crashes,
hangs and foreign exception types are listed, and with ``--save`` the inputs that crashed or hung
are copied into tests/regressions/ so CI replays them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

from _fuzz import build_cases, generated_seeds, run_cases  # noqa: E402
from conftest import MEDIA  # noqa: E402
from test_fuzz import SEEDS  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=2000, help="number of mutated inputs (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds without progress = hang")
    parser.add_argument("--save", action="store_true", help="keep crashing/hanging inputs in tests/regressions")
    parser.add_argument("--images-only", action="store_true", help="fuzz only the image seeds")
    args = parser.parse_args()
    seeds = [(kind, (MEDIA / rel).read_bytes()) for kind, rel in SEEDS if (MEDIA / rel).exists()]
    if not seeds:
        print(f"no seed media under {MEDIA}", file=sys.stderr)
        return 2
    seeds += generated_seeds()
    if args.images_only:
        seeds = [(kind, data) for kind, data in seeds if kind == "image"]
    workdir = Path(tempfile.mkdtemp(prefix="gpuvio-fuzz-"))
    report = run_cases(build_cases(seeds, args.cases, seed=args.seed), workdir, timeout=args.timeout)
    print(f"{report.cases} cases in {report.seconds:.0f} s: outcomes {report.outcomes}")
    print(f"crashes: {len(report.crashes)}, hangs: {len(report.hangs)}, foreign errors: {len(report.foreign)}")
    for case, text in report.foreign.items():
        print(f"  {case}: {text}")
    bad = report.crashes + report.hangs
    if args.save:
        for path in bad:
            shutil.copy(path, TESTS / "regressions" / f"seed{args.seed}-{path.name}")
    return 1 if bad or report.foreign else 0


if __name__ == "__main__":
    raise SystemExit(main())
