"""A small crash-isolating fuzzer for gpuvio's decoders (used by tests/test_fuzz.py and benchmarks/fuzz.py).

Mutated inputs are fed to a worker *subprocess* that runs every decode entry point on each case and
reports, per case, either "ok" or the exception class. The parent watches it: a worker that dies
(segfault, abort) or stops making progress for ``timeout`` seconds marks the case it was on as a crash
or a hang, and a fresh worker carries on with the next case. Native crashes therefore become test
failures with the offending input saved, instead of killing the test run.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import selectors
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["FuzzReport", "build_cases", "generated_seeds", "mutate", "run_cases"]

_WORKER = r"""
import faulthandler, json, sys, warnings
faulthandler.enable()
warnings.simplefilter("ignore")
import gpuvio
from gpuvio._errors import GpuvioError

def attempt(fn, tolerated=()):
    try:
        fn()
        return "ok"
    except GpuvioError as exc:
        return "gpuvio:" + type(exc).__name__
    except tolerated as exc:
        return "ok:" + type(exc).__name__
    except Exception as exc:  # anything else is a leak of a foreign error type
        return "foreign:" + type(exc).__module__ + "." + type(exc).__name__ + ": " + str(exc)[:120]

def video_calls(data):
    def reader():
        r = gpuvio.VideoReader(data)
        for _, _f in zip(range(5), r):
            pass
        r.seek(0.5)
        next(r, None)
        if len(r):
            r.get_frames_at([0, len(r) - 1])
        r.close()
    return [("read_video", lambda: gpuvio.read_video(data, pts_unit="sec")),
            ("read_video_timestamps", lambda: gpuvio.read_video_timestamps(data)),
            ("VideoReader", reader)]

def image_calls(data):
    return [("decode_image", lambda: gpuvio.decode_image(data)),
            ("decode_image_rgb", lambda: gpuvio.decode_image(data, mode="RGB", apply_exif_orientation=True))]

# the case list comes as a file, not through stdin: a full stdin pipe and a full stdout pipe
# would otherwise block the parent and the worker on each other
for line in open(sys.argv[1]):
    index, kind, path = line.rstrip("\n").split("\t")
    data = open(path, "rb").read()
    print(json.dumps({"start": int(index)}), flush=True)
    calls = video_calls(data) if kind == "video" else image_calls(data)
    # a reader's iteration may end in StopIteration / IndexError; an image decode may not
    tolerated = (IndexError, StopIteration) if kind == "video" else ()
    outcome = {name: attempt(fn, tolerated) for name, fn in calls}
    print(json.dumps({"done": int(index), "outcome": outcome}), flush=True)
"""


def mutate(data: bytes, rng: random.Random, *, donor: bytes | None = None) -> bytes:
    """One random corruption of ``data``: bit flips, truncation, zeroed or repeated ranges, or a splice."""
    buf = bytearray(data)
    choice = rng.randrange(6)
    if choice == 0 or len(buf) < 16:
        for _ in range(rng.randint(1, 16)):
            if buf:
                buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif choice == 1:
        buf = buf[: rng.randrange(1, len(buf))]
    elif choice == 2:
        start = rng.randrange(len(buf))
        end = min(len(buf), start + rng.randint(1, 512))
        buf[start:end] = bytes(end - start)
    elif choice == 3:
        start = rng.randrange(len(buf))
        chunk = buf[start : start + rng.randint(1, 4096)]
        at = rng.randrange(len(buf))
        buf[at:at] = chunk
    elif choice == 4 and donor:
        # a header from one file spliced onto the body of another
        cut = rng.randrange(1, min(len(buf), len(donor)))
        buf = bytearray(donor[:cut]) + buf[cut:]
    else:
        # bytes that often hold sizes and counts in headers
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(min(len(buf), 1024))
            buf[at] = rng.choice([0x00, 0xFF, 0x7F, 0x80])
    return bytes(buf)


@dataclass
class FuzzReport:
    cases: int = 0
    crashes: list[Path] = field(default_factory=list)
    hangs: list[Path] = field(default_factory=list)
    foreign: dict[str, str] = field(default_factory=dict)  # case file -> foreign exception text
    outcomes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def run_cases(cases: list[tuple[str, bytes]], workdir: Path, *, timeout: float = 20.0) -> FuzzReport:
    """Run ``(kind, data)`` cases ("video" or "image") in worker subprocesses; see the module docstring."""
    workdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (kind, data) in enumerate(cases):
        path = workdir / f"case{i:05d}.{kind}"
        path.write_bytes(data)
        paths.append((kind, path))
    report = FuzzReport(cases=len(cases))
    started = time.perf_counter()
    next_case = 0
    repo = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
    while next_case < len(paths):
        stderr = open(workdir / "worker.stderr", "w+")
        listing = workdir / "cases.txt"
        listing.write_text("".join(f"{i}\t{paths[i][0]}\t{paths[i][1]}\n" for i in range(next_case, len(paths))))
        worker = subprocess.Popen([sys.executable, "-c", _WORKER, str(listing)], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        assert worker.stdout
        current = None
        progressed = False
        selector = selectors.DefaultSelector()
        selector.register(worker.stdout, selectors.EVENT_READ)
        while True:
            ready = selector.select(timeout)
            if not ready:
                worker.kill()
                worker.wait()
                if current is not None:
                    report.hangs.append(paths[current][1])
                    next_case = current + 1
                break
            line = worker.stdout.readline()
            if not line:
                worker.wait()
                if current is not None:
                    report.crashes.append(paths[current][1])
                    next_case = current + 1
                elif not progressed:
                    stderr.seek(0)
                    raise RuntimeError(f"the fuzz worker failed to start:\n{stderr.read()[-2000:]}")
                else:
                    next_case = len(paths)
                break
            message = json.loads(line)
            progressed = True
            if "start" in message:
                current = message["start"]
                continue
            current = None
            next_case = message["done"] + 1
            for name, outcome in message["outcome"].items():
                key = outcome.split(":", 2)[0] + ":" + outcome.split(":", 2)[1] if ":" in outcome else outcome
                report.outcomes[key] = report.outcomes.get(key, 0) + 1
                if outcome.startswith("foreign:"):
                    report.foreign[f"{paths[message['done']][1].name} {name}"] = outcome
        selector.close()
        stderr.close()
    report.seconds = time.perf_counter() - started
    return report


def build_cases(seeds: list[tuple[str, bytes]], count: int, *, seed: int = 0) -> list[tuple[str, bytes]]:
    """``count`` mutated cases drawn round-robin from the seed files."""
    rng = random.Random(seed)
    cases = []
    for i in range(count):
        kind, data = seeds[i % len(seeds)]
        donors = [d for k, d in seeds if k == kind and d is not data]
        cases.append((kind, mutate(data, rng, donor=rng.choice(donors) if donors else None)))
    return cases


def generated_seeds() -> list[tuple[str, bytes]]:
    """Image seeds made here for what the shared media lack: 8-bit RGB PNG (FFmpeg's PNG path),
    8-bit AVIF with alpha, 10-bit AVIF (FFmpeg's AV1 path) and HEIC, where this machine can make them."""
    import io

    import numpy as np
    from PIL import Image, features

    y, x = np.mgrid[0:40, 0:56]
    rgb = np.stack([x * 4, y * 6, (x + y) * 2], axis=2).astype(np.uint8)
    seeds = []
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    seeds.append(("image", out.getvalue()))
    if features.check("avif"):
        out = io.BytesIO()
        Image.fromarray(np.dstack([rgb, rgb[:, :, 0]])).save(out, format="AVIF", quality=80)
        seeds.append(("image", out.getvalue()))
    try:
        import av

        out = io.BytesIO()
        with av.open(out, "w", format="avif") as container:
            stream = container.add_stream("libsvtav1", rate=1)
            stream.height, stream.width, stream.pix_fmt = 40, 56, "yuv420p10le"
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p10le")
            for packet in [*stream.encode(frame), *stream.encode()]:
                container.mux(packet)
        seeds.append(("image", out.getvalue()))
    except Exception:  # noqa: BLE001 - no AV1 encoder or AVIF muxer in this build
        pass
    try:
        import pillow_heif
    except ImportError:
        return seeds
    out = io.BytesIO()
    pillow_heif.from_bytes(mode="RGB", size=(56, 40), data=rgb.tobytes()).save(out, quality=80)
    seeds.append(("image", out.getvalue()))
    return seeds
