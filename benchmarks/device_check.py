"""The device check's Python half: environment facts, the cuda tests, the GPU benchmarks, one JSON.

Called by ``benchmarks/device_check.sh`` after it has installed the wheels; usable alone::

    python benchmarks/device_check.py OUTDIR [--part all|video|image] [--dry-run] [--skip-tests]

``--part video`` runs the cuda tests and ``gpu_video.py``, ``--part image`` the cuda tests except
``tests/test_nvdec.py`` and ``gpu_image.py``; tests whose backend is not installed skip themselves
(``@pytest.mark.cuda("nvdec")``). Each part needs only its own wheels (av + PyNvVideoCodec, or av +
nvImageCodec + nvJPEG), which fit in one device-tool call each (64 MiB), so the two parts run as two
self-contained calls (``benchmarks/prepare_device_run.sh`` prints them).

Writes ``OUTDIR/device_check.json``::

    {"device", "driver", "commit", "date", "dry_run", "elapsed_s",
     "tests": {"passed", "failed", "skipped", "errors"},
     "results": [{"name", "value", "unit"}, ...],
     "details": {"video_parity": {"targets", "policies", "clips": {clip: {..., "policies": {policy:
                 {"target", "cpu_fps", "cuda_fps", "max_abs_diff", "mean_abs_diff", "differing_pixels",
                  "pixels", "equal", "within_tolerance", "pass", "status"}}}},
                 "summary": {policy: {"pass", "passed", "failed", "not_measured"}}}},
     "stages": {stage: {"seconds", "timeout_s", "exit" (null: killed at its limit)}},
     "environment": {...}, "errors": [{"part", "error"}, ...]}

``details`` holds the benchmarks' tables (``gpu_video.py``: NVDEC against the CPU per codec and
colour policy, issue #12; its docstring describes them; ``video_transforms`` / ``image_transforms``:
the decode-time resize figures of ``gpu_transforms.py``, issue #13); ``errors`` also says which
required figure (issues 3, 4, 12 and 13) is missing, and why.

Nothing here may end the run early or lose what was measured:

* the tests and both benchmarks run as child processes with time limits (a driver abort inside
  PyNvVideoCodec ends its process without a Python exception; a decoder can hang in C code);
* the benchmarks rewrite their own JSON after every figure, which is merged here, so a killed
  benchmark still gives the figures it measured, and an error entry says where it stopped;
* this record is rewritten after every stage, so a kill of the whole run keeps the stages done.

Stage limits (seconds, from the environment): GPUVIO_TIMEOUT_TESTS_NVDEC, GPUVIO_TIMEOUT_TESTS_CUDA,
GPUVIO_TIMEOUT_VIDEO, GPUVIO_TIMEOUT_IMAGE, each cut so that the later stages keep a share of
GPUVIO_CHECK_BUDGET_S. ``--dry-run`` skips what needs a GPU (the tests still run: the cuda ones
report as skipped), to check the script itself on a machine without one.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import importlib.util
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _path in (str(REPO), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from _record import write_json  # noqa: E402

# (environment variable, default seconds, share kept for the stage when earlier ones run long)
STAGES: dict[str, tuple[str, float, float]] = {
    "tests_nvdec": ("GPUVIO_TIMEOUT_TESTS_NVDEC", 150.0, 45.0),
    "tests_cuda": ("GPUVIO_TIMEOUT_TESTS_CUDA", 150.0, 45.0),
    "gpu_video": ("GPUVIO_TIMEOUT_VIDEO", 300.0, 90.0),
    "gpu_image": ("GPUVIO_TIMEOUT_IMAGE", 150.0, 60.0),
}
BUDGET = ("GPUVIO_CHECK_BUDGET_S", 480.0)
PARTS: dict[str, tuple[str, ...]] = {
    "all": tuple(STAGES),
    # the cuda tests skip, by their marker, what needs a backend whose wheels this part lacks
    "video": ("tests_nvdec", "tests_cuda", "gpu_video"),
    "image": ("tests_cuda", "gpu_image"),
}

# the figures issues 3, 4, 12 and 13 ask the device check for, by the benchmark that measures them
REQUIRED = {
    "gpu_video": ("read_video_cuda_torchvision_1080p_h264_fps", "read_video_cuda_accurate_1080p_h264_fps",
                  "read_video_cpu_torchvision_1080p_h264_fps", "read_video_cpu_accurate_1080p_h264_fps",
                  "parity_max_abs_diff", "parity_mean_abs_diff", "parity_pass_torchvision", "parity_pass_accurate",
                  "decode_videos_cuda_torchvision_1080p_h264_fps",
                  # issue 13 (gpu_transforms.py): decode-time resize on the GPU, and its pixels against the CPU's
                  "read_video_cuda_noresize_1080p_h264_fps", "read_video_cuda_resize224_1080p_h264_fps",
                  "transform_parity_mean_abs_diff_video", "transform_parity_pass_video"),
    "gpu_image": ("decode_jpeg_cuda_batch_imgs_per_s", "image_parity_mean_abs_diff",
                  "encode_jpeg_cuda_batch_imgs_per_s", "decode_jpeg_cpu_backend_all_cores_imgs_per_s",
                  "encode_jpeg_cpu_backend_all_cores_imgs_per_s",
                  "decode_image_cuda_resize224_batch_imgs_per_s", "image_transform_parity_mean_abs_diff",
                  "image_transform_parity_pass"),
}


def _env_seconds(name: str, default: float, errors: list) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
        if value > 0:
            return value
    except ValueError:
        pass
    errors.append({"part": "settings", "error": f"{name}={raw!r} is not a positive number; using {default}"})
    return default


class _Budget:
    """Stage time limits: each stage's own, cut so that every later stage keeps its share."""

    def __init__(self, errors: list, stages: tuple[str, ...]) -> None:
        self.deadline = time.monotonic() + _env_seconds(*BUDGET, errors)
        self.limits = {stage: (_env_seconds(var, default, errors), share)
                       for stage, (var, default, share) in STAGES.items() if stage in stages}

    def timeout(self, stage: str) -> float:
        names = list(self.limits)
        reserve = sum(self.limits[s][1] for s in names[names.index(stage) + 1:])
        left = self.deadline - time.monotonic() - reserve
        return min(self.limits[stage][0], max(30.0, left))  # past the budget: still a short try


def _capture(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[int, str]:
    """A short command's exit status and output (-1 when it could not run or timed out)."""
    try:
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                              env=env)
        return done.returncode, (done.stdout + done.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, f"{type(exc).__name__}: {exc}"


def _run_logged(cmd: list[str], log: Path, timeout: float) -> tuple[int | None, float, str]:
    """Run ``cmd`` with its output appended to ``log``; kill its process group at ``timeout``.

    Returns (exit status, or None when killed at the limit; seconds; this run's output).
    """
    start = time.perf_counter()
    with log.open("a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}   (limit {timeout:.0f} s)\n")
        fh.flush()
        offset = fh.tell()
        # its own process group, so that a kill reaches any children too; the same session, so
        # that the device tool still ends it if this whole run is stopped
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, process_group=0,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})  # a kill keeps the output so far
        try:
            code: int | None = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
            fh.write(f"\n[killed at the {timeout:.0f} s limit]\n")
    with log.open() as fh:
        fh.seek(offset)
        output = fh.read()
    elapsed = time.perf_counter() - start
    print("\n".join(output.rstrip().splitlines()[-25:]))
    return code, elapsed, output


def _how(code: int | None, timeout: float) -> str:
    return f"killed at its {timeout:.0f} s limit" if code is None else f"exit {code}"


def gpu_facts(errors: list) -> dict[str, Any]:
    """GPU name and driver from nvidia-smi (torch as a second opinion)."""
    facts: dict[str, Any] = {"device": None, "driver": None}
    code, out = _capture(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"], 30)
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


def _load(path: str) -> str | None:
    """None when the library loads, else the loader's message."""
    try:
        ctypes.CDLL(path)
        return None
    except OSError as exc:
        return str(exc)


def _nvjpeg() -> str:
    """Where nvJPEG loads from: a system soname, or a wheel's ``nvidia/*/lib`` folder on sys.path
    (the cu13 wheel ships ``nvidia/cu13/lib/libnvjpeg.so.13``; no unversioned name anywhere)."""
    messages = []
    for name in ("libnvjpeg.so.13", "libnvjpeg.so.12", "libnvjpeg.so"):
        problem = _load(name)
        if problem is None:
            return f"ok: {name} (system loader)"
        messages.append(problem)
    for base in sys.path:
        for found in sorted(Path(base or ".").glob("nvidia/*/lib/libnvjpeg.so*")):
            problem = _load(str(found))
            if problem is None:
                # nvImageCodec's RUNPATH looks in <its nvidia/>/cu13/lib, not along sys.path
                beside = (found.parents[2] / "nvimgcodec").is_dir()
                return f"ok: {found}" + ("" if beside else " (not beside nvidia/nvimgcodec, which will miss it)")
            messages.append(problem)
    return "not found: " + "; ".join(messages)


def library_facts() -> dict[str, str]:
    """Whether the driver's libraries and nvJPEG load: 'ok' (and where) or the loader's message."""
    out = {name: _load(name) or "ok" for name in ("libcuda.so.1", "libnvcuvid.so.1", "libnvidia-encode.so.1")}
    out["libnvjpeg"] = _nvjpeg()
    return out


def package_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("torch", "av", "PyNvVideoCodec", "cupy-cuda13x", "cupy-cuda12x", "nvidia-nvimgcodec-cu13",
                 "nvidia-nvimgcodec-cu12", "nvidia-nvjpeg", "numpy", "pillow", "torchvision", "gpuvio"):
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


def commit(errors: list) -> str:
    """GPUVIO_COMMIT, else git (the tree's own repository only), else benchmarks/.device_commit."""
    if os.environ.get("GPUVIO_COMMIT", "").strip():
        return os.environ["GPUVIO_COMMIT"].strip()
    # the ceiling keeps git from answering with some repository above the copied tree
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(REPO.parent)}
    code, out = _capture(["git", "describe", "--always", "--dirty", "--abbrev=40", "--exclude=*"], 10, env)
    if code == 0 and out:
        return out.splitlines()[-1].strip()
    stamp = REPO / "benchmarks" / ".device_commit"  # written by whoever sends the tree, if anyone
    if stamp.exists() and stamp.read_text().strip():
        return stamp.read_text().strip()
    errors.append({"part": "commit", "error": "unknown: GPUVIO_COMMIT is unset, there is no git repository "
                   f"here ({out[-200:]}) and no benchmarks/.device_commit; put GPUVIO_COMMIT=<hash> in the "
                   "command (see device_check.sh)"})
    return "unknown"


# "tests/x.py::test_y[cuda] PASSED  [ 10%]", as pytest -v prints each test
_VERBOSE_LINE = re.compile(r"^(\S+::\S.*?) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b", re.MULTILINE)
_OUTCOME = {"PASSED": "passed", "XPASS": "passed", "FAILED": "failed", "ERROR": "errors", "SKIPPED": "skipped",
            "XFAIL": "skipped"}


def _junit_counts(junit: Path) -> tuple[dict[str, int], list[str]]:
    """Counts and the failing test ids from a JUnit report."""
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    root = ET.parse(junit).getroot()
    for suite in [root] if root.tag == "testsuite" else list(root.iter("testsuite")):
        total, failed = int(suite.get("tests", 0)), int(suite.get("failures", 0))
        errored, skipped = int(suite.get("errors", 0)), int(suite.get("skipped", 0))
        counts["failed"] += failed
        counts["errors"] += errored
        counts["skipped"] += skipped
        counts["passed"] += total - failed - errored - skipped
    failing = [f"{c.get('classname')}::{c.get('name')}" for c in root.iter("testcase")
               if c.find("failure") is not None or c.find("error") is not None]
    return counts, failing


def _verbose_counts(output: str) -> tuple[dict[str, int], list[str]]:
    """Counts and the failing test ids from pytest -v's per-test lines (when no report was written)."""
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    failing = []
    for node, outcome in _VERBOSE_LINE.findall(output):
        counts[_OUTCOME[outcome]] += 1
        if outcome in ("FAILED", "ERROR"):
            failing.append(node)
    return counts, failing


def run_tests(label: str, targets: list[str], report: str, out_dir: Path, timeout: float,
              errors: list) -> tuple[dict[str, int], dict[str, Any]]:
    """One ``pytest -m cuda`` call; counts from its JUnit report, or from its -v lines if it was killed."""
    junit = Path(tempfile.gettempdir()) / f"gpuvio_{label}_{os.getpid()}.xml"  # OUTDIR keeps few files
    junit.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-v", report, "-p", "no:cacheprovider",
           "--continue-on-collection-errors", f"--junitxml={junit}"]
    if importlib.util.find_spec("pytest_timeout") is not None:
        # one hung test must not cost the whole call (it cannot interrupt C code: the outer limit does)
        cmd.append("--timeout=90")
    code, seconds, output = _run_logged(cmd + targets, out_dir / "cuda_tests.log", timeout)
    stage = {"seconds": round(seconds, 1), "timeout_s": round(timeout), "exit": code}
    part = f"pytest -m cuda ({label})"
    counts, failing = _verbose_counts(output)
    if junit.exists():
        try:
            counts, failing = _junit_counts(junit)
        except (ET.ParseError, ValueError) as exc:
            errors.append({"part": part, "error": f"unreadable JUnit report ({exc}); counts from the -v lines"})
    else:
        last = [line for line in output.splitlines() if "::" in line][-1:]
        errors.append({"part": part, "error": f"no JUnit report ({_how(code, timeout)}); counts from the -v "
                       f"lines; last test line: {last[0] if last else 'none'}; output: {output[-600:]}"})
    if failing:
        errors.append({"part": part, "error": "failing: " + ", ".join(failing[:40])})
    return counts, stage


def run_benchmark(name: str, args: list[str], out_dir: Path, timeout: float, results: list,
                  errors: list, details: dict[str, Any]) -> dict[str, Any]:
    """``benchmarks/<name>.py`` as a child process; its figures, tables and errors join the record."""
    target = Path(tempfile.gettempdir()) / f"gpuvio_{name}_{os.getpid()}.json"  # per run: no stale figures
    target.unlink(missing_ok=True)
    cmd = [sys.executable, str(HERE / f"{name}.py"), "--json", str(target), *args]
    code, seconds, output = _run_logged(cmd, out_dir / "benchmarks.log", timeout)
    stage = {"seconds": round(seconds, 1), "timeout_s": round(timeout), "exit": code}
    try:
        data = json.loads(target.read_text())
    except (OSError, ValueError) as exc:
        errors.append({"part": name, "error": f"no figures: its JSON is missing or unreadable ({exc}); "
                       f"{_how(code, timeout)}; output: {output[-800:]}"})
        return stage
    results.extend(data.get("results", []))
    details.update(data.get("details") or {})
    errors.extend({**e, "part": f"{name}: {e.get('part')}"} for e in data.get("errors", []))
    if not data.get("complete"):
        errors.append({"part": name, "error": f"stopped early ({_how(code, timeout)}) during "
                       f"{data.get('running')!r}; the {len(data.get('results', []))} figures before that are kept; "
                       f"output: {output[-800:]}"})
    elif code != (1 if data.get("errors") else 0):
        # it finished, then died on the way out (a driver abort in a destructor, say)
        errors.append({"part": name, "error": f"{_how(code, timeout)} after finishing; output: {output[-400:]}"})
    return stage


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--dry-run", action="store_true", help="skip everything that needs a GPU")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--part", choices=sorted(PARTS), default="all",
                        help="video: cuda tests + gpu_video; image: cuda tests but NVDEC's + gpu_image")
    args = parser.parse_args()
    selected = PARTS[args.part]
    started = time.perf_counter()
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for log in ("cuda_tests.log", "benchmarks.log"):  # appended by each stage: start them empty
        (out_dir / log).write_text("")
    errors: list = []
    results: list = []
    details: dict[str, Any] = {}
    stages: dict[str, Any] = {}
    budget = _Budget(errors, selected)
    record: dict[str, Any] = {
        "device": None, "driver": None, "commit": commit(errors),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dry_run": args.dry_run, "part": args.part, "tests": {"passed": 0, "failed": 0, "skipped": 0, "errors": 0},
        "results": results, "details": details, "stages": stages, "errors": errors,
    }
    target = out_dir / "device_check.json"
    install_errors = out_dir / "install_errors.txt"  # written by device_check.sh
    if install_errors.exists():
        errors.extend({"part": "install", "error": line} for line in install_errors.read_text().splitlines() if line)

    def save() -> None:
        record["elapsed_s"] = round(time.perf_counter() - started, 1)
        write_json(target, record)

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
            # NVDEC's tests alone first, with a line per test: a hang there then cannot hide the rest
            for label, targets, report in (("tests_nvdec", ["tests/test_nvdec.py"], "-rA"),
                                           ("tests_cuda", ["--ignore=tests/test_nvdec.py", "tests"], "-rfEs")):
                if label not in selected:
                    continue
                print(f"== pytest -m cuda ({label})")
                counts, stages[label] = run_tests(label, targets, report, out_dir, budget.timeout(label), errors)
                record["tests"] = {k: record["tests"][k] + counts[k] for k in record["tests"]}
                save()
        benchmarks = (("gpu_video", ["--workdir", str(Path(tempfile.gettempdir()) / "gpuvio-device-media")]
                       + (["--dry-run"] if args.dry_run else [])),
                      ("gpu_image", ["--cpu-only", "--images", "32", "--repeats", "2"] if args.dry_run else []))
        for name, extra in benchmarks:
            if name not in selected:
                continue
            print(f"== benchmarks/{name}.py")
            stages[name] = run_benchmark(name, extra, out_dir, budget.timeout(name), results, errors, details)
            save()
        names = {r.get("name") for r in results}
        missing = [n for bench in selected for n in REQUIRED.get(bench, ()) if n not in names]
        if missing:
            why = "a dry run measures nothing on a GPU" if args.dry_run else "the errors above say why"
            errors.append({"part": "required figures", "error": f"missing ({why}): {', '.join(missing)}"})
    except BaseException as exc:  # noqa: BLE001 - the record is written whatever happens
        errors.append({"part": "device_check", "error": f"{type(exc).__name__}: {exc}",
                       "trace": traceback.format_exc(limit=8)})
    finally:
        save()
    for policy, verdict in details.get("video_parity", {}).get("summary", {}).items():
        print(f"video parity, color={policy!r}: " + (
            "not measured" if verdict.get("pass") is None else
            f"{'PASS' if verdict['pass'] else 'FAIL'} (passed {verdict.get('passed')}, failed "
            f"{verdict.get('failed')}, not measured {verdict.get('not_measured')})"))
    print(f"wrote {target} ({len(results)} results, {len(errors)} errors, "
          f"tests {record['tests']}, {record['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
