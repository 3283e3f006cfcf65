"""Inputs and outputs: paths, in-memory bytes, 1-D uint8 tensors, and atomic file writes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch

from ._errors import InvalidArgumentError, InvalidInputTypeError, MediaFileNotFoundError

__all__ = ["atomic_output", "encoded_view", "read_file", "resolve_source", "write_file"]

_BYTES_LIKE = (bytes, bytearray, memoryview)


def _check_path(path: str | os.PathLike[str]) -> str:
    name = os.fspath(path)
    if not isinstance(name, str):
        name = os.fsdecode(name)
    if not os.path.exists(name):
        raise MediaFileNotFoundError(2, "No such file or directory", name)
    if os.path.isdir(name):
        raise InvalidArgumentError(f"expected a file, got the directory {name!r}")
    return name


def encoded_view(data: Any, *, what: str = "input") -> memoryview:
    """A read-only byte view of encoded data held in memory.

    Accepts ``bytes``, ``bytearray``, ``memoryview`` and 1-D ``torch.uint8`` tensors (CPU or CUDA;
    CUDA ones are copied to the host). Raises with torchvision's messages for tensors of the
    wrong shape or dtype.
    """
    if isinstance(data, torch.Tensor):
        if data.dtype != torch.uint8:
            raise InvalidInputTypeError(f"Expected a torch.uint8 tensor for {what}, got {data.dtype}")
        if data.dim() != 1 or data.numel() == 0:
            raise InvalidArgumentError(
                f"Expected a non empty 1-dimensional tensor for {what}, got shape {tuple(data.shape)}")
        if data.device.type != "cpu":
            data = data.cpu()
        return memoryview(data.contiguous().numpy()).cast("B")
    if isinstance(data, _BYTES_LIKE):
        view = memoryview(data).cast("B")
        if view.nbytes == 0:
            raise InvalidArgumentError(f"Expected non-empty encoded data for {what}, got 0 bytes")
        return view
    raise InvalidInputTypeError(
        f"{what} must be a path, bytes, or a 1-D uint8 tensor; got {type(data).__name__}")


def resolve_source(source: Any, *, what: str = "source") -> str | memoryview:
    """A path (checked to exist) or a byte view, from any supported source."""
    if isinstance(source, (str, os.PathLike)):
        return _check_path(source)
    return encoded_view(source, what=what)


def read_file(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read a file's bytes.

    Returns:
        ``Tensor[N] uint8``: the file's contents.

    Raises:
        MediaFileNotFoundError: (a ``FileNotFoundError``) when ``path`` does not exist.
    """
    name = _check_path(path)
    with open(name, "rb") as f:
        data = bytearray(f.read())
    if not data:
        return torch.empty(0, dtype=torch.uint8)
    return torch.frombuffer(data, dtype=torch.uint8)


@contextlib.contextmanager
def atomic_output(filename: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary path beside ``filename``; move it into place only if the block succeeds.

    A failure (or an interrupt) removes the temporary file and leaves any existing ``filename``
    untouched: callers never see a half-written file. The temporary name keeps the suffix, since
    FFmpeg picks the container format from it.
    """
    target = Path(os.fspath(filename))
    if not isinstance(filename, (str, os.PathLike)):
        raise InvalidInputTypeError(f"filename must be a str or os.PathLike, got {type(filename).__name__}")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise MediaFileNotFoundError(2, "No such directory", str(parent))
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=f".part{target.suffix}")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_file(filename: str | os.PathLike[str], data: torch.Tensor) -> None:
    """Write a 1-D uint8 tensor's bytes to ``filename`` (atomically)."""
    view = encoded_view(data, what="data")
    with atomic_output(filename) as tmp, open(tmp, "wb") as f:
        f.write(view)
