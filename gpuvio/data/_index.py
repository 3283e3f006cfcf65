"""The frame index of a set of videos: every frame's pts and the frame rate, per file.

Reading timestamps only demuxes packets (see :func:`gpuvio.read_video_timestamps`), but it still
reads every byte of every file, so the index is built once, in parallel, and kept on disk: one
small JSON file per video, keyed by its absolute path and checked against the file's size and
modification time on every load. JSON rather than pickle: a shared cache directory must not be
a way to run code.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import multiprocessing
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .._dispatch import _load_builtin_backends
from .._errors import InvalidArgumentError, MediaFileNotFoundError

__all__ = ["VideoTimestamps", "build_index"]

# bump when the meaning of the stored pts changes, so that old entries are recomputed
_FORMAT = 1

IndexExecutor = Literal["thread", "process"]


@dataclass(frozen=True)
class VideoTimestamps:
    """Timestamps of one video: ``pts`` (ints, stream time base, display order) and ``fps``."""

    pts: list[int]
    fps: float | None


def _stat(path: str) -> os.stat_result:
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise MediaFileNotFoundError(2, "No such file or directory", path) from None


def _cache_file(cache_dir: Path, path: str) -> Path:
    digest = hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return cache_dir / f"{digest}.json"


def _load(cache_dir: Path, path: str, stat: os.stat_result) -> VideoTimestamps | None:
    try:
        with open(_cache_file(cache_dir, path), encoding="utf-8") as f:
            entry = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict):
        return None
    if (entry.get("format"), entry.get("path"), entry.get("size"), entry.get("mtime_ns")) != (
            _FORMAT, path, stat.st_size, stat.st_mtime_ns):
        return None  # another file, or this one changed since: recompute
    pts, fps = entry.get("pts"), entry.get("fps")
    if not isinstance(pts, list) or not all(isinstance(p, int) for p in pts):
        return None
    return VideoTimestamps(pts, float(fps) if fps is not None else None)


def _store(cache_dir: Path, path: str, stat: os.stat_result, value: VideoTimestamps) -> None:
    entry = {"format": _FORMAT, "path": path, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
             "fps": value.fps, "pts": value.pts}
    target = _cache_file(cache_dir, path)
    # write then rename: readers (other ranks, other jobs) never see a half-written entry
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f".{target.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(entry, f, separators=(",", ":"))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _timestamps(path: str) -> tuple[list[int], float | None]:
    """Top-level so that a process pool can pickle it."""
    from .._video import read_video_timestamps

    pts, fps = read_video_timestamps(path, pts_unit="pts")
    return [int(p) for p in pts], fps


def build_index(paths: list[str], *, cache_dir: str | os.PathLike[str] | None = None,
                num_workers: int | None = None, executor: IndexExecutor = "thread") -> list[VideoTimestamps]:
    """Timestamps of every video in ``paths`` (absolute paths), from the cache where it is fresh.

    Args:
        cache_dir: directory of cached entries (created if missing); None keeps nothing on disk.
        num_workers: parallel readers; None is ``min(8, cpu count)``, 0 or 1 read in this thread.
        executor: ``"thread"`` (default; cheap to start) or ``"process"`` (spawned processes:
            faster for many files, as demuxing holds the GIL between packets).

    A file that FFmpeg cannot read gets no frames (and a warning from
    :func:`gpuvio.read_video_timestamps`); it is not cached, so a later run tries again.
    """
    if executor not in ("thread", "process"):
        raise InvalidArgumentError(f"index executor must be 'thread' or 'process'; got {executor!r}")
    if num_workers is None:
        num_workers = min(8, os.cpu_count() or 1)
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise InvalidArgumentError(f"num_workers must be an int >= 0 or None; got {num_workers!r}")
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    stats = [_stat(p) for p in paths]
    result: list[VideoTimestamps | None] = [
        _load(cache, p, s) if cache is not None else None for p, s in zip(paths, stats)]
    missing = [i for i, r in enumerate(result) if r is None]
    if len(missing) > 1 and num_workers > 1:
        # register the backends before the threads race to do it (see the report on _dispatch)
        _load_builtin_backends()
        if executor == "process":
            # spawn: never fork a process that may hold threads (or, later, CUDA)
            pool: concurrent.futures.Executor = concurrent.futures.ProcessPoolExecutor(
                max_workers=min(num_workers, len(missing)), mp_context=multiprocessing.get_context("spawn"))
        else:
            pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(num_workers, len(missing)),
                                                         thread_name_prefix="gpuvio-index")
        with pool:
            computed = list(pool.map(_timestamps, [paths[i] for i in missing]))
    else:
        computed = [_timestamps(paths[i]) for i in missing]
    for i, (pts, fps) in zip(missing, computed):
        value = VideoTimestamps(pts, fps)
        result[i] = value
        if cache is not None and pts:
            _store(cache, paths[i], stats[i], value)
    return result  # type: ignore[return-value]
