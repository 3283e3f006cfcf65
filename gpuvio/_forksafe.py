"""Keeping FFmpeg and CUDA objects out of harm's way in forked children.

A forked child inherits its parent's memory but none of its threads. FFmpeg's decoder contexts
own worker threads (slice and frame threading), and freeing one joins them: in a child, where
they do not exist, ``avcodec_free_context`` waits forever. Decoding with one does the same. NVDEC
sessions and CUDA memory belong to a context the child cannot use either.

So every such object gpuvio creates is *held* here from creation until its owner releases it.
At fork, the child moves everything held into a list it never empties: whatever the child's
garbage collector or its code does with the objects that referred to them, the inherited objects
themselves are never freed, closed or decoded with there. Pages shared with the parent stay
shared (copy-on-write), so this costs the child nothing. Owners that notice the fork (see
:func:`generation`) open their sources afresh instead of using what they inherited.

Torch's own thread pool does not survive fork either, so a child runs torch single-threaded
(what ``DataLoader`` does in its workers).

Python weak references would be the natural registry, but PyAV's objects do not support them;
holding strong references means an owner must :func:`release` what it opened (``close()``, or a
``weakref.finalize`` on the owner for objects dropped without it).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, TypeVar

__all__ = ["ForkSafeLock", "generation", "hold", "held_count", "holds", "release"]

T = TypeVar("T")

# id -> object, for objects this process created and has not released yet
_held: dict[int, Any] = {}
# objects created by an ancestor process: this one never frees them
_inherited: list[Any] = []
_generation = 0


def hold(obj: T) -> T:
    """Keep ``obj`` alive until :func:`release`; a forked child never frees it. Returns ``obj``."""
    _held[id(obj)] = obj
    return obj


def release(obj: Any) -> bool:
    """Stop holding ``obj``. True when this process may close and free it, False when ``obj``
    was inherited from the parent process (or was never held): then leave it untouched."""
    if _held.get(id(obj)) is obj:
        del _held[id(obj)]
        return True
    return False


def holds(obj: Any) -> bool:
    """Whether this process holds ``obj`` (False for what a forked child inherited)."""
    return _held.get(id(obj)) is obj


def generation() -> int:
    """A number that changes in every forked child: an owner that recorded it at creation
    knows, when it differs, that its objects came from the parent and must be opened anew."""
    return _generation


def held_count() -> int:
    """How many objects this process holds (not counting inherited ones): for leak tests."""
    return len(_held)


class ForkSafeLock:
    """A ``threading.Lock`` (or ``RLock``) that a forked child finds unlocked.

    A thread of the parent may hold a lock at the moment of fork; the child inherits it locked
    with no thread left to release it, and its first ``with lock:`` would block forever.
    """

    __slots__ = ("_factory", "_lock", "_generation")

    def __init__(self, *, reentrant: bool = False) -> None:
        self._factory = threading.RLock if reentrant else threading.Lock
        self._lock = self._factory()
        self._generation = _generation

    def _current(self) -> Any:
        if self._generation != _generation:
            self._lock, self._generation = self._factory(), _generation
        return self._lock

    def __enter__(self) -> bool:
        return self._current().__enter__()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def _after_fork_in_child() -> None:
    global _generation
    _inherited.extend(_held.values())
    _held.clear()
    _generation += 1
    # torch's intra-op pool on Linux is GNU OpenMP, which does not survive fork: once the parent
    # has run a parallel op, the child's first one blocks forever (torch alone shows it). gpuvio
    # indexes and copies frame tensors, so a child goes single-threaded, as DataLoader's workers do.
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() > 1:
        torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
