"""Shared by the device-check benchmarks: a record that is on disk after every figure.

``gpu_video.py`` and ``gpu_image.py`` run as child processes of ``device_check.py``, which kills
them when they outlast their time; a driver error inside PyNvVideoCodec can also end the process
without a Python exception. Writing the JSON after every figure keeps what was measured up to
that point. The file holds::

    {"results": [{"name", "value", "unit"}, ...], "errors": [{"part", "error", "trace"?}, ...],
     "details": {name: any JSON, e.g. gpu_video.py's "video_parity" table},
     "running": the part in progress (null when none), "complete": true once the script ended}
"""

from __future__ import annotations

import contextlib
import json
import os
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["Recorder", "caught_warnings", "write_json"]


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as JSON atomically: a kill mid-write leaves the previous file, never half of one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


class Recorder:
    """Figures and errors of one benchmark script, saved to ``json_path`` (when given) on every change."""

    def __init__(self, json_path: str | os.PathLike[str] | None = None, *,
                 log: Callable[[str], None] = print) -> None:
        self.results: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        # structured tables beside the flat figures (edit them in place, then save())
        self.details: dict[str, Any] = {}
        self.path = Path(json_path) if json_path else None
        self.log = log
        self.running: str | None = None
        self.complete = False
        self.save()

    def save(self) -> None:
        if self.path is not None:
            write_json(self.path, {"results": self.results, "errors": self.errors, "details": self.details,
                                   "running": self.running, "complete": self.complete})

    def add(self, name: str, value: float, unit: str, *, digits: int = 3) -> None:
        value = round(float(value), digits)
        self.results.append({"name": name, "value": value, "unit": unit})
        self.log(f"  {name} = {value} {unit}")
        self.save()

    def error(self, part: str, message: str, *, trace: str | None = None) -> None:
        entry = {"part": part, "error": message}
        if trace:
            entry["trace"] = trace
        self.errors.append(entry)
        self.log(f"  [{part}] {message}")
        self.save()

    def guard(self, part: str, fn: Callable[[], Any]) -> bool:
        """Run one measurement; a failure becomes an error entry and the script goes on. True if it ran."""
        self.running = part
        self.save()  # a kill during this part then names it
        try:
            fn()
            return True
        except Exception as exc:  # noqa: BLE001 - one broken part must not lose the others
            self.error(part, f"{type(exc).__name__}: {exc}", trace=traceback.format_exc(limit=6))
            return False
        finally:
            self.running = None
            self.save()

    def finish(self) -> int:
        """Mark the record complete; the exit status: 0 when every part ran, 1 when some failed."""
        self.complete = True
        self.save()
        return 1 if self.errors else 0


@contextlib.contextmanager
def caught_warnings() -> Iterator[list[str]]:
    """Collect the text of every warning raised in the block, repeats and worker threads included.

    Before Python 3.14 the warning filters are process-wide, so warnings from the decode threads
    of ``decode_videos`` and nvImageCodec land here too; "always" defeats the once-per-place rule.
    """
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield messages
        finally:
            messages.extend(str(w.message) for w in caught)
