"""The device check's Python half: environment facts, the cuda tests, the GPU benchmarks, one JSON.

Called by ``benchmarks/device_check.sh`` after it has installed the wheels; usable alone::

    python benchmarks/device_check.py OUTDIR [--dry-run] [--pytest-timeout 200]

Writes ``OUTDIR/device_check.json``::

    {"device", "driver", "commit", "date", "dry_run", "elapsed_s",
     "tests": {"passed", "failed", "skipped", "errors"},
     "results": [{"name", "value", "unit"}, ...],
     "environment": {...}, "errors": [...]}

Nothing here is allowed to end the run early: every part records its failure in ``errors`` and
the JSON is written whatever happens. ``--dry-run`` skips what needs a GPU (the tests still run:
the cuda ones report as skipped), to check the script itself on a machine without one.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import importlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _run(cmd: list[str], timeout: float) -> tuple[int, str]:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
        return done.returncode, (done.stdout + done.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, f"{type(exc).__name__}: {exc}"


def gpu_facts(errors: list) -> dict[str, Any]:
    """GPU name and driver from nvidia-smi (torch as a second opinion)."""
    facts: dict[str, Any] = {"device": None, "driver": None}
    code, out = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"], 30)
    if code == 0 and out:
        first = out.splitlines()[0].split(",")
        facts["device"] = first[0].strip()
        facts["driver"] = first[1].strip() if len(first) > 1 else None
        facts["nvidia_smi"] = out.splitlines()
    else:
        errors.append({"part": "nvidia-smi", "error": out[-500:]})
    try:
        import torch

        if torch.cuda.is_available():
            facts["torch_device"] = torch.cuda.get_device_name(0)
            facts["device"] = facts["device"] or facts["torch_device"]
            facts["gpu_count"] = torch.cuda.device_count()
    except Exception as exc:  # noqa: BLE001
        errors.append({"part": "torch.cuda", "error": f"{type(exc).__name__}: {exc}"})
    return facts


def library_facts() -> dict[str, str]:
    """Whether the driver's libraries load: 'ok' or the loader's message."""
    out = {}
    for name in ("libcuda.so.1", "libnvcuvid.so.1", "libnvidia-encode.so.1", "libnvjpeg.so"):
        try:
            ctypes.CDLL(name)
            out[name] = "ok"
        except OSError as exc:
            out[name] = str(exc)
    return out


def package_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("torch", "av", "PyNvVideoCodec", "cupy-cuda13x", "cupy-cuda12x", "nvidia-nvimgcodec-cu13",
                 "nvidia-nvimgcodec-cu12", "numpy", "pillow", "torchvision", "gpuvio"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def backend_facts(errors: list) -> dict[str, Any]:
    try:
        import gpuvio

        return {b.name: ("usable" if b.usable else f"not usable: {b.reason}") for b in gpuvio.backends()}
    except Exception as exc:  # noqa: BLE001
        errors.append({"part": "gpuvio.backends()", "error": f"{type(exc).__name__}: {exc}"})
        return {}


def commit() -> str:
    if os.environ.get("GPUVIO_COMMIT"):
        return os.environ["GPUVIO_COMMIT"]
    code, out = _run(["git", "rev-parse", "HEAD"], 10)
    if code == 0 and out:
        return out.splitlines()[-1].strip()
    stamp = REPO / "benchmarks" / ".device_commit"  # written by whoever sends the tree, if anyone
    return stamp.read_text().strip() if stamp.exists() else "unknown"


def run_tests(out_dir: Path, timeout: float, errors: list) -> dict[str, int]:
    """``pytest -m cuda`` with a JUnit report; counts from the report."""
    junit = out_dir / "cuda_tests.xml"
    log = out_dir / "cuda_tests.log"
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rfEs", "-p", "no:cacheprovider",
           f"--junitxml={junit}", "tests"]
    if importlib.util.find_spec("pytest_timeout") is not None:
        cmd.insert(-1, "--timeout=90")  # one hung test must not cost the whole report
    code, output = _run(cmd, timeout)
    log.write_text(output)
    print(output[-4000:])
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    if not junit.exists():
        errors.append({"part": "pytest -m cuda", "error": f"no report (exit {code}): {output[-800:]}"})
        return counts
    try:
        root = ET.parse(junit).getroot()
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        for suite in suites:
            total = int(suite.get("tests", 0))
            failed = int(suite.get("failures", 0))
            errored = int(suite.get("errors", 0))
            skipped = int(suite.get("skipped", 0))
            counts["failed"] += failed
            counts["errors"] += errored
            counts["skipped"] += skipped
            counts["passed"] += total - failed - errored - skipped
        failing = [f"{c.get('classname')}::{c.get('name')}" for c in root.iter("testcase")
                   if c.find("failure") is not None or c.find("error") is not None]
        if failing:
            errors.append({"part": "pytest -m cuda", "error": "failing: " + ", ".join(failing[:40])})
    except ET.ParseError as exc:
        errors.append({"part": "pytest -m cuda", "error": f"unreadable report: {exc}"})
    return counts


def run_benchmarks(results: list, errors: list, *, dry_run: bool, out_dir: Path) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_video

        print("== benchmarks/gpu_video.py")
        # media stay out of OUTDIR: only the record and the logs are meant to come back
        gpu_video.run(results, dry_run=dry_run, workdir=Path(tempfile.gettempdir()) / "gpuvio-device-media",
                      errors=errors)
    except Exception as exc:  # noqa: BLE001
        errors.append({"part": "gpu_video", "error": f"{type(exc).__name__}: {exc}",
                       "trace": traceback.format_exc(limit=6)})
    if (REPO / "benchmarks" / "gpu_image.py").exists():
        try:
            gpu_image = importlib.import_module("gpu_image")
            print("== benchmarks/gpu_image.py")
            if dry_run:
                gpu_image.run(results, cpu_only=True, images=32, repeats=2)
            else:
                gpu_image.run(results)
        except Exception as exc:  # noqa: BLE001
            errors.append({"part": "gpu_image", "error": f"{type(exc).__name__}: {exc}",
                           "trace": traceback.format_exc(limit=6)})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--dry-run", action="store_true", help="skip everything that needs a GPU")
    parser.add_argument("--pytest-timeout", type=float, default=200.0, help="seconds for pytest -m cuda")
    parser.add_argument("--skip-tests", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    errors: list = []
    results: list = []
    record: dict[str, Any] = {
        "device": None, "driver": None, "commit": commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dry_run": args.dry_run, "tests": {"passed": 0, "failed": 0, "skipped": 0, "errors": 0},
        "results": results, "errors": errors,
    }
    target = out_dir / "device_check.json"
    install_errors = out_dir / "install_errors.txt"  # written by device_check.sh
    if install_errors.exists():
        errors.extend({"part": "install", "error": line} for line in install_errors.read_text().splitlines() if line)

    def save() -> None:
        record["elapsed_s"] = round(time.perf_counter() - started, 1)
        target.write_text(json.dumps(record, indent=2, default=str))

    try:
        facts = {} if args.dry_run else gpu_facts(errors)
        record["device"] = facts.pop("device", None) or ("none (dry run)" if args.dry_run else None)
        record["driver"] = facts.pop("driver", None)
        record["environment"] = {"gpu": facts, "libraries": library_facts(), "packages": package_versions(),
                                 "backends": backend_facts(errors), "platform": platform.platform()}
        print(json.dumps({k: record[k] for k in ("device", "driver", "commit")}))
        print(json.dumps(record["environment"]["libraries"], indent=1))
        save()
        if not args.skip_tests:
            print("== pytest -m cuda")
            record["tests"] = run_tests(out_dir, args.pytest_timeout, errors)
            save()
        run_benchmarks(results, errors, dry_run=args.dry_run, out_dir=out_dir)
    except BaseException as exc:  # noqa: BLE001 - the record is written whatever happens
        errors.append({"part": "device_check", "error": f"{type(exc).__name__}: {exc}",
                       "trace": traceback.format_exc(limit=8)})
    finally:
        save()
    print(f"wrote {target} ({len(results)} results, {len(errors)} errors, "
          f"tests {record['tests']}, {record['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
