"""One record type for work a GPU backend hands to the CPU backend, and the process-wide log.

A GPU backend that cannot do something exactly like the CPU backend (a codec NVDEC lacks, a
JPEG nvImageCodec rejects) does it on the CPU instead, says so once with a ``RuntimeWarning``,
and records a :class:`Fallback`. The same record is what every report shows:

* ``info["fallback"]`` from :func:`gpuvio.read_video` (``info["fallback_reason"]`` is its reason);
* ``VideoReader.fallback`` (and ``.fallback_reason``);
* ``BackendInfo.fallbacks`` from :func:`gpuvio.backends`: counts by reason, in this process.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

__all__ = ["Fallback", "FallbackLog", "LOG", "record"]


@dataclass(frozen=True)
class Fallback:
    """Work that ``backend`` (a GPU backend) handed to the CPU backend, and why.

    Attributes:
        backend: the GPU backend's registry name (``"nvdec"``, ``"nvimgcodec"``, ``"dali"``).
        operation: what was handed over (``"read_video"``, ``"open_video"``, ``"decode_image"``,
            ``"encode_jpeg"``).
        reason: a sentence naming what the GPU path could not take.
    """

    backend: str
    operation: str
    reason: str

    def __str__(self) -> str:
        return f"{self.backend} -> cpu for {self.operation}: {self.reason}"


class FallbackLog:
    """Counts of :class:`Fallback` records (thread-safe), plus how much the GPU did itself."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[Fallback] = Counter()
        self._gpu: Counter[str] = Counter()

    def add(self, fallback: Fallback, count: int = 1) -> None:
        with self._lock:
            self._counts[fallback] += count

    def add_gpu(self, backend: str, count: int = 1) -> None:
        """Note that ``backend`` did ``count`` items itself (images decoded, files read)."""
        with self._lock:
            self._gpu[backend] += count

    def gpu_count(self, backend: str) -> int:
        with self._lock:
            return self._gpu[backend]

    def counts(self, backend: str | None = None) -> dict[Fallback, int]:
        """The records so far (of one backend, or all), with how often each happened."""
        with self._lock:
            return {f: n for f, n in self._counts.items() if backend is None or f.backend == backend}

    def reasons(self, backend: str) -> dict[str, int]:
        """``{reason: count}`` for one backend, all operations together."""
        out: Counter[str] = Counter()
        for fallback, n in self.counts(backend).items():
            out[fallback.reason] += n
        return dict(out)

    def reset(self, backend: str | None = None) -> None:
        """Forget the records (of one backend, or all)."""
        with self._lock:
            if backend is None:
                self._counts.clear()
                self._gpu.clear()
                return
            for fallback in [f for f in self._counts if f.backend == backend]:
                del self._counts[fallback]
            self._gpu.pop(backend, None)

    def __repr__(self) -> str:
        return f"FallbackLog({dict(self._counts)!r})"


#: The process's log, which :func:`gpuvio.backends` reads.
LOG = FallbackLog()


def record(backend: str, operation: str, reason: str, count: int = 1) -> Fallback:
    """Log a fallback and return its record."""
    fallback = Fallback(backend, operation, reason)
    LOG.add(fallback, count)
    return fallback
