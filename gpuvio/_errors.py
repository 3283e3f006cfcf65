"""The error classes of gpuvio.

Every error has one root, :class:`GpuvioError`, and also inherits the builtin exception that
code written for ``torchvision.io`` (or plain Python) would catch. torchvision signals most
problems with ``RuntimeError``, so the classes below keep ``RuntimeError`` in their bases next to
the more precise builtin (``ValueError``, ``TypeError``, ``FileNotFoundError``, ``ImportError``).
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailableError",
    "DecodeError",
    "GpuvioError",
    "InvalidArgumentError",
    "InvalidInputTypeError",
    "InvalidSourceError",
    "MediaFileNotFoundError",
    "ResourceLimitError",
    "UnsupportedFormatError",
]


class GpuvioError(Exception):
    """Root of every error raised by gpuvio."""


class DecodeError(GpuvioError, RuntimeError):
    """The input could not be decoded: corrupt, truncated or unsupported data."""


class UnsupportedFormatError(DecodeError, ValueError):
    """The data is not in a format this operation can read (e.g. a BMP given to decode_image)."""


class InvalidArgumentError(GpuvioError, ValueError, RuntimeError):
    """An argument has a bad value: out of range, wrong shape, unknown choice."""


class InvalidInputTypeError(GpuvioError, TypeError, RuntimeError):
    """An argument has the wrong type or dtype."""


class InvalidSourceError(InvalidInputTypeError, ValueError):
    """A media source of a type gpuvio cannot read; also a ``ValueError``, as torchvision raises."""


class MediaFileNotFoundError(GpuvioError, FileNotFoundError, RuntimeError):
    """The file to read does not exist."""


class ResourceLimitError(GpuvioError, ValueError, RuntimeError):
    """The input asks for more than the configured limits allow (e.g. a decompression bomb)."""


class BackendUnavailableError(GpuvioError, ImportError, RuntimeError):
    """The requested backend or device cannot run here; the message says why."""


def for_item(exc: BaseException, what: str, index: int, total: int) -> BaseException:
    """``exc`` again, of the same class, with ``"{what} {index} of {total}: "`` before its message:
    the error of one item of a batch call, saying which item it was."""
    try:
        return type(exc)(f"{what} {index} of {total}: {exc}")
    except TypeError:  # a class with another constructor: keep the original
        return exc
