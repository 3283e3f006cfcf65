#!/usr/bin/env python3
"""Run torchvision 0.21's own io tests against gpuvio (see README.md beside this file).

    python benchmarks/torchvision_tests/run.py [--setup] [--source PATH] [--venv DIR]
        [--jit eager|strict] [--report FILE] [test files ...] [-- pytest arguments]

Steps: (1) lay out upstream's test files and assets in a work folder, from the torchvision
source tarball that ``fetch_sources.sh`` downloads (or a checkout, or a bare git mirror plus a
ref); (2) with ``--setup``, make the separate venv (torch 2.14.1, torchvision 0.29.1, pytest,
PyAV, gpuvio installed editable); (3) run pytest there with the ``gpuvio_tv_plugin`` plugin,
which puts gpuvio in place of ``torchvision.io``; (4) print, per test file, the passed / failed /
skipped counts, every failure with the first line of its error, and the skip reasons.

Nothing of upstream's is kept in this repository: the tests are read from the source given.
This script uses only the standard library, so any Python 3.9+ runs it.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_CACHE = Path(os.environ.get("GPUVIO_TV_CACHE", Path.home() / ".cache" / "gpuvio" / "torchvision-tests"))
VISION_TARBALL = "pytorch-vision_0.21.0.orig.tar.gz"
GIFLIB_TARBALL = "giflib_5.2.2.orig.tar.gz"
DEFAULT_FILES = ("test_image.py", "test_io.py", "test_videoapi.py")
SUPPORT_FILES = ("common_utils.py", "conftest.py")
REQUIREMENTS = ("torch==2.14.1", "torchvision==0.29.1", "pytest", "av", "numpy", "pillow", "pillow-heif",
                "requests")
# shared media folder -> upstream test/assets path, for a source that has the .py files only
SHARED_MEDIA = Path(os.environ.get("GPUVIO_MEDIA", REPO.parent / "shared" / "media")) / "torchvision"
SHARED_MAP = {
    "videos": "videos",
    "images/damaged_jpeg": "damaged_jpeg",
    "images/damaged_png": "damaged_png",
    "images/toosmall_png": "toosmall_png",
    "images/interlaced_png": "interlaced_png",
    "images/logos": "fakedata/logos",
    "images/grace_hopper_517x606.jpg": "encode_jpeg/grace_hopper_517x606.jpg",
}


# refuse links and absolute paths out of the tarballs where this Python can (3.12+, some 3.8+)
_SAFE = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def _extract_tarball(tarball: Path, dest: Path) -> None:
    """test/ of a torchvision source tarball into ``dest`` (``dest/test/...``)."""
    with tarfile.open(tarball) as tar:
        members = []
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if len(parts) > 2 and parts[1] == "test" and (member.isfile() or member.isdir()):
                member.name = str(Path(*parts[1:]))
                members.append(member)
        tar.extractall(dest, members=members, **_SAFE)


def _extract_git(git_dir: Path, ref: str, dest: Path) -> None:
    archive = subprocess.run(["git", f"--git-dir={git_dir}", "archive", "--format=tar", ref, "test"],
                             check=True, stdout=subprocess.PIPE).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def _fill_assets_from_shared(test_dir: Path) -> None:
    assets = test_dir / "assets"
    if (assets / "videos").is_dir():
        return
    print(f"note: the source has no test/assets; copying what {SHARED_MEDIA} holds (some tests will "
          "then miss their files)", file=sys.stderr)
    for src, dst in SHARED_MAP.items():
        origin, target = SHARED_MEDIA / src, assets / dst
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, target, dirs_exist_ok=True)
        elif origin.is_file():
            shutil.copy2(origin, target)


def prepare(source: Path, ref: str, work: Path) -> Path:
    """The work folder's test/ directory, laid out from ``source`` (done once per source)."""
    stamp = work / ".source"
    key = f"{source.resolve()}@{ref}"
    test_dir = work / "test"
    if stamp.is_file() and stamp.read_text() == key and test_dir.is_dir():
        return test_dir
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    if source.is_file():
        _extract_tarball(source, work)
    elif (source / "HEAD").is_file() and (source / "objects").is_dir():
        _extract_git(source, ref, work)
    elif (source / "test").is_dir():
        shutil.copytree(source / "test", test_dir)
    elif (source / "common_utils.py").is_file():
        shutil.copytree(source, test_dir)
    else:
        raise SystemExit(f"{source}: not a torchvision source tarball, checkout, test folder or bare git dir")
    missing = [f for f in (*DEFAULT_FILES, *SUPPORT_FILES) if not (test_dir / f).is_file()]
    if missing:
        raise SystemExit(f"{source}: test/ lacks {', '.join(missing)}")
    _fill_assets_from_shared(test_dir)
    stamp.write_text(key)
    return test_dir


def gif_dir(cache: Path, work: Path) -> Path | None:
    tarball = cache / GIFLIB_TARBALL
    if not tarball.is_file():
        return None
    out = work / "giflib-pic"
    if not out.is_dir():
        out.mkdir(parents=True)
        with tarfile.open(tarball) as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if len(parts) == 3 and parts[1] == "pic" and member.isfile() and parts[2].endswith(".gif"):
                    member.name = parts[2]
                    tar.extract(member, out, **_SAFE)
    return out


def setup_venv(venv: Path) -> None:
    python = venv / "bin" / "python"
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", str(REPO)], check=True)


def summarize(junit: Path) -> tuple[str, bool]:
    """Markdown-ish summary of a junit XML report, and whether anything failed."""
    root = ET.parse(junit).getroot()
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    failures: list[tuple[str, str, str]] = []
    skips: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for case in root.iter("testcase"):
        file = (case.get("classname") or "").split(".")[0] + ".py"
        name = case.get("name", "")
        klass = (case.get("classname") or "").split(".")[-1]
        test_id = f"{klass}::{name}" if klass and not klass.startswith("test_") else name
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed" if child.tag == "failure" else "error"
                text = (child.get("message") or child.text or "").strip()
                failures.append((file, test_id, _first_line(text)))
            elif child.tag == "skipped":
                outcome = "xfailed" if child.get("type") == "pytest.xfail" else "skipped"
                reason = re.sub(r"^.*?:\d+: ", "", child.get("message") or "")
                skips[file][("(xfail) " if outcome == "xfailed" else "") + reason[:140]] += 1
        counts[file][outcome] += 1
    lines = ["| file | passed | failed | errors | skipped | xfailed |", "| --- | --- | --- | --- | --- | --- |"]
    for file in sorted(counts):
        c = counts[file]
        lines.append(f"| {file} | {c['passed']} | {c['failed']} | {c['error']} | {c['skipped']} | {c['xfailed']} |")
    if failures:
        lines += ["", "Failures:"]
        lines += [f"- {file}::{test_id}: {message}" for file, test_id, message in failures]
    if skips:
        lines += ["", "Skip (and xfail) reasons:"]
        for file in sorted(skips):
            lines += [f"- {file}: {n} x {reason}" for reason, n in skips[file].most_common()]
    return "\n".join(lines), bool(failures)


def _first_line(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line[:220]
    return "(no message)"


def main() -> int:
    argv = sys.argv[1:]
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1:]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", help=f"upstream test files (default: {' '.join(DEFAULT_FILES)})")
    parser.add_argument("--source", type=Path, default=Path(os.environ.get("GPUVIO_TV_SOURCE", DEFAULT_CACHE / VISION_TARBALL)),
                        help="torchvision source: the 0.21.0 tarball (default, from fetch_sources.sh), "
                             "a checkout, its test/ folder, or a bare git mirror (with --ref)")
    parser.add_argument("--ref", default="v0.21.0", help="tag or commit, for a bare git mirror (default v0.21.0)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where fetch_sources.sh put the tarballs")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("GPUVIO_TV_WORK", "/tmp/gpuvio-tv-tests")),
                        help="work folder for the laid-out tests (default /tmp/gpuvio-tv-tests)")
    parser.add_argument("--venv", type=Path, default=Path(os.environ.get("GPUVIO_TV_VENV", "/tmp/tvvenv")),
                        help="the separate venv with torchvision (default /tmp/tvvenv)")
    parser.add_argument("--setup", action="store_true", help="create or update the venv first")
    parser.add_argument("--jit", choices=("eager", "strict"), default="eager",
                        help="eager (default): torch.jit.script(gpuvio function) returns it unchanged; "
                             "strict: leave TorchScript alone (the scripted variants then fail)")
    parser.add_argument("--report", type=Path, help="also write the summary to this file")
    args = parser.parse_args(argv)

    if not args.source.exists():
        raise SystemExit(f"{args.source} does not exist: run benchmarks/torchvision_tests/fetch_sources.sh "
                         "first (once, with network), or give --source")
    if args.setup:
        setup_venv(args.venv)
    python = args.venv / "bin" / "python"
    if not python.is_file():
        raise SystemExit(f"no venv at {args.venv}: run with --setup (or give --venv)")

    test_dir = prepare(args.source, args.ref, args.work)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH", "")]))
    env["GPUVIO_TV_JIT"] = args.jit
    gifs = gif_dir(args.cache, args.work)
    if gifs is not None:
        env["GPUVIO_TV_GIF_DIR"] = str(gifs)
    junit = args.work / "junit.xml"
    command = [str(python), "-m", "pytest", "-p", "gpuvio_tv_plugin", "-p", "no:cacheprovider", "-q", "-rfEs",
               "--tb=short", f"--junitxml={junit}", *(args.files or DEFAULT_FILES), *extra]
    print("+", " ".join(command), f"(in {test_dir})", flush=True)
    code = subprocess.run(command, cwd=test_dir, env=env).returncode
    if junit.is_file():
        summary, _ = summarize(junit)
        print("\n" + summary)
        if args.report:
            args.report.write_text(summary + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
