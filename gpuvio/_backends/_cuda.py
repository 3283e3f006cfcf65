"""CUDA-side helpers of the NVDEC backend: loading PyNvVideoCodec, driver libraries, raw buffers.

Importing this module imports nothing CUDA-related; every function loads what it needs when it
is called, and only the GPU code paths call them.
"""

from __future__ import annotations

import ctypes
import glob
import importlib
import importlib.util
import os
import sys
from typing import Any

from .._forksafe import ForkSafeLock

__all__ = [
    "CudaBuffer",
    "driver_library_reason",
    "libnvcuvid_reason",
    "load_pynvvideocodec",
    "nvdec_probe",
    "pynvvideocodec_version",
]

_load_lock = ForkSafeLock()
_loaded: list[Any] = []
_load_notes: list[str] = []


def driver_library_reason(name: str) -> str | None:
    """Why the driver library ``name`` (e.g. ``"libnvcuvid.so.1"``) cannot be loaded, or None.

    Loading it maps the driver's user-space library into the process; it creates no CUDA context.
    """
    try:
        ctypes.CDLL(name)
    except OSError as exc:
        return f"{name} cannot be loaded ({exc}); the NVIDIA driver's video libraries are missing " \
               "(in a container, set NVIDIA_DRIVER_CAPABILITIES to include 'video')"
    return None


_nvcuvid_found: list[bool] = []
# where drivers put their libraries when ldconfig does not list them (containers, WSL)
_DRIVER_DIRS = ("/usr/local/nvidia/lib64", "/usr/local/nvidia/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib64",
                "/usr/lib/aarch64-linux-gnu", "/usr/lib/wsl/lib")


def _on_library_path(stem: str) -> bool:
    folders = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d] + list(_DRIVER_DIRS)
    return any(glob.glob(os.path.join(folder, stem + "*")) for folder in folders)


def libnvcuvid_reason() -> str | None:
    """None when the dynamic loader knows the driver's ``libnvcuvid``, else why not.

    The library is looked up (ldconfig's cache, ``LD_LIBRARY_PATH``, the usual driver folders),
    not loaded: no CUDA library enters the process. The answer is kept for the process. Outside
    Linux there is nothing to look up and the answer is None. :func:`nvdec_probe` asks this, and
    ``gpuvio info`` reports it, so the two cannot disagree.
    """
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return None
    if not _nvcuvid_found:
        _nvcuvid_found.append(ctypes.util.find_library("nvcuvid") is not None or _on_library_path("libnvcuvid.so"))
    if not _nvcuvid_found[0]:
        return ("the NVIDIA driver's video decoding library libnvcuvid is not installed (in a "
                "container, set NVIDIA_DRIVER_CAPABILITIES to include 'video')")
    return None


def nvdec_probe() -> str | None:
    """A cheap probe for the registry: None when the NVDEC backend can run here, else why not.

    Checks that PyNvVideoCodec and PyAV are installed, that torch sees a CUDA device, and that
    the dynamic loader knows the driver's ``libnvcuvid`` (:func:`libnvcuvid_reason`: looked up,
    not loaded, so no CUDA library enters the process and no CUDA context is created).
    """
    from .._dispatch import cuda_unavailable_reason, module_missing

    return module_missing("PyNvVideoCodec", "av") or cuda_unavailable_reason() or libnvcuvid_reason()


def _load_extension_directly() -> Any:
    """Load PyNvVideoCodec's compiled module without its package ``__init__``.

    The package's ``__init__`` refuses to import when ``libnvidia-encode`` is missing (it asks the
    encoder library for the driver's API version first). Decoding does not need the encoder, so
    when that check fails we load the compiled extension, which PyNvVideoCodec itself loads
    under the name ``_PyNvVideoCodec``, straight from the installed package folder.
    """
    spec = importlib.util.find_spec("PyNvVideoCodec")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("PyNvVideoCodec is not installed")
    folder = list(spec.submodule_search_locations)[0]
    tag = f"{sys.version_info.major}{sys.version_info.minor}"
    errors = []
    for suffix in ("_130", "_121"):  # the builds for NVENC API 13.0 and 12.1; decoding is the same
        for path in sorted(glob.glob(os.path.join(folder, f"PyNvVideoCodec{suffix}.cpython-{tag}*.so"))):
            try:
                module_spec = importlib.util.spec_from_file_location("_PyNvVideoCodec", path)
                module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
                module_spec.loader.exec_module(module)  # type: ignore[union-attr]
                return module
            except Exception as exc:  # try the next build
                errors.append(f"{os.path.basename(path)}: {exc}")
    raise ImportError("no PyNvVideoCodec extension could be loaded: " + "; ".join(errors or ["none found"]))


def load_pynvvideocodec() -> Any:
    """The PyNvVideoCodec module (or its compiled core), imported once per process.

    Raises :class:`gpuvio.BackendUnavailableError` naming the missing piece.
    """
    if _loaded:
        return _loaded[0]
    from .._errors import BackendUnavailableError

    with _load_lock:
        if _loaded:
            return _loaded[0]
        first: Exception
        try:
            module = importlib.import_module("PyNvVideoCodec")
        except ImportError as exc:
            if importlib.util.find_spec("PyNvVideoCodec") is None:
                raise BackendUnavailableError(
                    "the NVDEC backend needs PyNvVideoCodec: pip install 'gpuvio[cu13]' (or [cu12])") from exc
            first = exc
        except Exception as exc:  # its __init__ raises RuntimeError when the encoder library is absent
            first = exc
        else:
            _loaded.append(module)
            return module
        try:
            module = _load_extension_directly()
        except Exception as exc:
            raise BackendUnavailableError(
                f"PyNvVideoCodec is installed but cannot be loaded: {str(first).splitlines()[0]}; "
                f"loading its decoder directly failed too: {exc}") from exc
        _load_notes.append(f"PyNvVideoCodec's __init__ failed ({str(first).splitlines()[0]}); "
                           "loaded its compiled decoder module directly")
        _loaded.append(module)
        return module


def load_notes() -> list[str]:
    """What :func:`load_pynvvideocodec` had to work around (empty when the plain import worked)."""
    return list(_load_notes)


def pynvvideocodec_version() -> str | None:
    """The installed PyNvVideoCodec version (from its metadata, without importing it), or None."""
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return None
    for name in ("PyNvVideoCodec", "pynvvideocodec"):
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


class CudaBuffer:
    """A device pointer wrapped in ``__cuda_array_interface__`` (v3), for ``torch.as_tensor``.

    No stream is named: callers read the buffer on the stream that wrote it. ``owner`` is kept
    alive as long as this object (and torch keeps this object alive as long as the tensor).
    """

    def __init__(self, pointer: int, shape: tuple[int, ...], typestr: str, owner: Any = None) -> None:
        self.owner = owner
        self.__cuda_array_interface__ = {
            "version": 3,
            "shape": tuple(int(s) for s in shape),
            "typestr": typestr,
            "data": (int(pointer), False),
            "strides": None,
            "stream": None,
        }
