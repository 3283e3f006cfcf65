"""Worker-process scenarios for tests/test_worker_safety.py, run as ``python worker_cases.py CASE DIR``.

Each case runs in its own interpreter (a hang must fail a test, not stall the suite): the test
runs this script under a time limit, and every forked child here arms ``faulthandler`` so that a
hang prints where it blocked. A case prints one JSON line, its result, as the last line of its
output. ``DIR`` holds the media the test generated (``clip.mp4``, ``image.jpg``).

The classes live in this file so that spawn and forkserver workers can import them: those start
methods re-import the main script in the child.
"""

from __future__ import annotations

import faulthandler
import gc
import json
import os
import pickle
import select
import sys
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader, Dataset

import gpuvio

CHILD_TIMEOUT = 30.0


def in_child(fn: Callable[[], Any], timeout: float = CHILD_TIMEOUT) -> Any:
    """Run ``fn`` in a forked child and return what it returned (pickled through a pipe).

    Raises RuntimeError when the child hangs (it is killed after ``timeout`` s, with its
    traceback dumped by faulthandler) or fails.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        faulthandler.dump_traceback_later(timeout, exit=True)
        try:
            payload = pickle.dumps(("ok", fn()))
        except BaseException as exc:  # reported to the parent, which raises
            payload = pickle.dumps(("error", f"{type(exc).__name__}: {exc}"))
        with os.fdopen(write_end, "wb") as out:
            out.write(payload)
        os._exit(0)
    os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as inp:
        while True:
            ready, _, _ = select.select([inp], [], [], timeout + 5)
            if not ready:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise RuntimeError(f"forked child hung (no result after {timeout + 5} s)")
            chunk = inp.read1(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if not chunks:
        raise RuntimeError(f"forked child died without a result (wait status {status})")
    kind, value = pickle.loads(b"".join(chunks))
    if kind == "error":
        raise RuntimeError(f"forked child failed: {value}")
    return value


def positioned_reader(clip: str, state: str) -> gpuvio.VideoReader:
    """A reader left mid-stream: after seek + next, after get_frames_at, or fresh."""
    reader = gpuvio.VideoReader(clip)
    if state in ("seek_next", "frames_at"):
        reader.seek(0.9)
        next(reader)
        next(reader)
    if state == "frames_at":
        reader.get_frames_at([0, 7, 25, 3])
    return reader


def frames(reader: gpuvio.VideoReader, count: int) -> list[tuple[float, torch.Tensor]]:
    out = []
    for frame in reader:
        out.append((frame["pts"], frame["data"]))
        if len(out) == count:
            break
    return out


def same_frames(a: list[tuple[float, torch.Tensor]], b: list[tuple[float, torch.Tensor]]) -> bool:
    return len(a) == len(b) and all(pa == pb and torch.equal(ta, tb) for (pa, ta), (pb, tb) in zip(a, b))


# --------------------------------------------------------------------------------- the cases
def case_garbage_at_fork(media: Path) -> dict[str, Any]:
    """Hang 1: readers that are cyclic garbage at fork time, collected by the child's gc."""
    gc.disable()  # keep the cycles uncollected until the child collects them
    for state in ("fresh", "seek_next", "frames_at"):
        reader = positioned_reader(str(media / "clip.mp4"), state)
        reader.cycle = reader  # type: ignore[attr-defined]
        del reader
    result = in_child(lambda: gc.collect() >= 0)
    gc.enable()
    return {"collected": result}


def case_inherited_reader(media: Path) -> dict[str, Any]:
    """Hang 2: a live reader used in the child gives the parent's frames; dropped, returns."""
    clip = str(media / "clip.mp4")
    out: dict[str, Any] = {}
    for state in ("fresh", "seek_next", "frames_at"):
        reader = positioned_reader(clip, state)
        child_next = in_child(lambda: frames(reader, 5))
        child_seek = in_child(lambda: frames(reader.seek(1.3), 3))
        child_at = in_child(lambda: reader.get_frames_at([20, 2, 2]))
        child_meta = in_child(lambda: (reader.get_metadata(), len(reader)))
        dropped = in_child(lambda: _drop(reader))
        parent_next = frames(reader, 5)  # the parent goes on from where the children started
        out[state] = {
            "next": same_frames(child_next, parent_next),
            "seek": same_frames(child_seek, frames(reader.seek(1.3), 3)),
            "frames_at": torch.equal(child_at, reader.get_frames_at([20, 2, 2])),
            "metadata": child_meta == (reader.get_metadata(), len(reader)),
            "dropped": dropped,
        }
    audio = gpuvio.VideoReader(clip, "audio")
    next(audio)
    out["audio"] = {"next": same_frames(in_child(lambda: frames(audio, 4)), frames(audio, 4))}
    return out


def _drop(reader: gpuvio.VideoReader) -> bool:
    del reader
    gc.collect()
    return True


def case_vanished_source(media: Path) -> dict[str, Any]:
    """A child reopening a source that has gone raises MediaFileNotFoundError naming it."""
    clip = media / "vanishing.mp4"
    clip.write_bytes((media / "clip.mp4").read_bytes())
    reader = gpuvio.VideoReader(str(clip))
    next(reader)
    clip.unlink()

    def use() -> str:
        try:
            next(reader)
        except gpuvio.MediaFileNotFoundError as exc:
            return f"MediaFileNotFoundError: {exc}"
        return "no error"

    return {"child": in_child(use), "path": str(clip)}


def case_long_workload_then_fork(media: Path) -> dict[str, Any]:
    """Decoding of every kind for a while, leftovers included, then fork again and again."""
    clip, image = str(media / "clip.mp4"), str(media / "image.jpg")
    rounds = int(os.environ.get("GPUVIO_FORK_ROUNDS", "20"))
    hangs = 0
    for round_ in range(rounds):
        keep = []
        for i in range(6):
            reader = gpuvio.VideoReader(clip)
            reader.seek(0.2 * i)
            next(reader)
            if i % 2:
                reader.get_frames_at([i, 10 + i])
            if i % 3 == 0:
                reader.cycle = reader  # type: ignore[attr-defined]  # left for the gc
            else:
                keep.append(reader)
        gpuvio.read_video(clip, start_pts=0.3, end_pts=0.8, pts_unit="sec")
        gpuvio.decode_image(gpuvio.read_file(image))
        gpuvio.decode_videos([clip, clip], device="cpu", end_pts=0.5, pts_unit="sec")
        try:
            in_child(lambda: (gc.collect(), next(keep[0])["pts"],
                              gpuvio.read_video(clip, end_pts=0.2, pts_unit="sec")[0].shape[0]))
        except RuntimeError as exc:
            print(f"round {round_}: {exc}", file=sys.stderr)
            hangs += 1
    return {"rounds": rounds, "hangs": hangs}


def case_device_loader_in_child(media: Path) -> dict[str, Any]:
    """A DeviceLoader iteration inherited mid-way fails clearly in a child; a new one works there."""
    from gpuvio.data import DeviceLoader

    loader = DeviceLoader([torch.zeros(2), torch.ones(2), torch.ones(3)], device="cpu")
    running = iter(loader)
    next(running)

    def child() -> dict[str, Any]:
        try:
            next(running)
            inherited = "no error"
        except gpuvio.InvalidArgumentError as exc:
            inherited = str(exc)
        running.close()  # what __del__ does when the child drops it: must return at once
        return {"inherited": inherited, "fresh": [t.tolist() for t in loader]}

    result = in_child(child)
    result["parent_rest"] = [t.tolist() for t in running]
    return result


class ReadersInInit(Dataset):
    """The common pattern: readers opened once, in ``__init__``."""

    def __init__(self, clip: str, count: int) -> None:
        self.readers = [gpuvio.VideoReader(clip) for _ in range(count)]
        for i, reader in enumerate(self.readers):
            reader.seek(0.1 * i)

    def __len__(self) -> int:
        return len(self.readers)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.stack([next(self.readers[i])["data"] for _ in range(3)])


class ReadersPerItem(Dataset):
    def __init__(self, clip: str, count: int) -> None:
        self.clip, self.count = clip, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> torch.Tensor:
        reader = gpuvio.VideoReader(self.clip)
        return reader.get_frames_at([i, i + 5])


class ImageLists(Dataset):
    def __init__(self, image: str, count: int) -> None:
        self.data = gpuvio.read_file(image)
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.stack(gpuvio.decode_image([self.data, self.data], mode="RGB"))


def case_dataloader(media: Path, method: str, kind: str) -> dict[str, Any]:
    """DataLoader workers of a start method, readers from __init__ / per item / image lists."""
    clip, image = str(media / "clip.mp4"), str(media / "image.jpg")
    make = {"init": lambda: ReadersInInit(clip, 4), "per_item": lambda: ReadersPerItem(clip, 4),
            "images": lambda: ImageLists(image, 4)}[kind]
    dataset, reference = make(), make()
    if kind == "init":  # the parent has read from one reader: the workers go on after that frame
        next(dataset.readers[0])
        next(reference.readers[0])
    expected = [reference[i] for i in range(4)]
    loader = DataLoader(dataset, batch_size=None, num_workers=2, multiprocessing_context=method, timeout=60)
    got = list(loader)
    return {"items": len(got), "equal": len(got) == 4 and all(torch.equal(a, b) for a, b in zip(got, expected))}


def main() -> None:
    faulthandler.enable()
    case, media, *args = sys.argv[1:]
    result = globals()[f"case_{case}"](Path(media), *args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
