"""Backend dispatch: (operation, device, backend name) -> the backend object that does the work.

Backends join a registry with a *loader* (``"module:Class"``, imported on first use) and a cheap
*probe* that says whether the backend can run here without importing it. Nothing in this module
imports a CUDA library or creates a CUDA context: the CPU path stays safe in forked DataLoader
workers, and GPU libraries load only when a GPU backend is first asked for.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal

from . import _fallback
from ._errors import BackendUnavailableError, InvalidArgumentError, InvalidInputTypeError
from ._forksafe import ForkSafeLock

if TYPE_CHECKING:
    import torch

__all__ = [
    "BackendInfo",
    "Operation",
    "backends",
    "check_backend_name",
    "get_backend",
    "parse_device",
    "register_backend",
    "resolve_device",
    "select_backend",
]

# What a backend can be asked to do, and the interface it implements for it (gpuvio/_protocols.py):
# read_video/open_video -> VideoDecoder, decode_image -> ImageDecoder, encode_jpeg -> JpegEncoder;
# encode_png and write_video are the CPU backend's alone. read_video_timestamps demuxes only
# (gpuvio._media): no backend is involved.
Operation = Literal[
    "decode_image",
    "encode_jpeg",
    "encode_png",
    "read_video",
    "open_video",
    "write_video",
]
OPERATIONS: frozenset[str] = frozenset(Operation.__args__)  # type: ignore[attr-defined]
DeviceType = Literal["cpu", "cuda"]


@dataclass(frozen=True)
class BackendInfo:
    """What :func:`gpuvio.backends` reports about one backend.

    Attributes:
        name, device_type, operations, description: the registry entry.
        usable: whether it can run here; ``reason`` says why not.
        fallbacks: ``{reason: count}`` of the work this (GPU) backend handed to the CPU backend
            in this process so far (see :class:`gpuvio.Fallback`).
    """

    name: str
    device_type: DeviceType
    operations: frozenset[str]
    usable: bool
    reason: str | None
    description: str
    fallbacks: dict[str, int] = field(default_factory=dict)

    def __repr__(self) -> str:
        state = "usable" if self.usable else f"not usable: {self.reason}"
        handed = f", {sum(self.fallbacks.values())} fallbacks" if self.fallbacks else ""
        return f"BackendInfo({self.name!r}, device={self.device_type}, {state}{handed})"


@dataclass(frozen=True)
class _Entry:
    name: str
    device_type: DeviceType
    operations: frozenset[str]
    loader: str
    probe: Callable[[], str | None]
    description: str


_REGISTRY: dict[str, _Entry] = {}
_INSTANCES: dict[str, Any] = {}
_LOCK = ForkSafeLock()


def register_backend(name: str, *, device_type: DeviceType, operations: frozenset[str] | set[str],
                     loader: str, probe: Callable[[], str | None], description: str = "") -> None:
    """Add a backend to the registry (earlier registrations are preferred for a device).

    ``loader`` is ``"module:Class"``; the class is imported and instantiated on first use.
    ``probe()`` returns ``None`` when the backend can run here, else a short reason. It must be
    cheap and must not import CUDA libraries.
    """
    unknown = set(operations) - OPERATIONS
    if unknown:
        raise InvalidArgumentError(f"unknown operations {sorted(unknown)}; allowed: {sorted(OPERATIONS)}")
    _REGISTRY[name] = _Entry(name, device_type, frozenset(operations), loader, probe, description)
    _INSTANCES.pop(name, None)


def _unregister_backend(name: str) -> None:
    """Remove a backend (tests use it to add and drop fake backends)."""
    _REGISTRY.pop(name, None)
    _INSTANCES.pop(name, None)


_installed: dict[str, bool] = {}


def module_missing(*modules: str) -> str | None:
    """A probe helper: the reason a module is missing, without importing it.

    Answers are cached: ``find_spec`` scans ``sys.path`` each time, which would otherwise cost
    tens of microseconds on every dispatched call.
    """
    for module in modules:
        found = _installed.get(module)
        if found is None:
            if module in sys.modules:
                found = True
            else:
                try:
                    found = importlib.util.find_spec(module) is not None
                except (ImportError, ValueError):
                    found = False
            _installed[module] = found
        if not found:
            return f"{module} is not installed"
    return None


_cuda_reason_cache: list[str | None] = []


def cuda_unavailable_reason() -> str | None:
    """Why CUDA cannot be used here (``None`` when it can), without creating a CUDA context.

    torch's device count goes through NVML when it can, which leaves CUDA uninitialised, so
    asking is safe before a fork.
    """
    if _cuda_reason_cache:
        return _cuda_reason_cache[0]
    import torch

    if torch.version.cuda is None:
        reason: str | None = f"torch {torch.__version__} is a CPU-only build"
    elif torch.cuda.device_count() == 0:
        reason = "no CUDA device"
    else:
        reason = None
    _cuda_reason_cache.append(reason)
    return reason


def backends() -> list[BackendInfo]:
    """Every registered backend, with whether it can run here and, if not, why.

    Example::

        >>> [b.name for b in gpuvio.backends() if b.usable]
        ['cpu']
    """
    _load_builtin_backends()
    out = []
    for entry in _REGISTRY.values():
        reason = entry.probe()
        out.append(BackendInfo(entry.name, entry.device_type, entry.operations, reason is None,
                               reason, entry.description, _fallback.LOG.reasons(entry.name)))
    return out


def check_backend_name(name: str) -> None:
    """InvalidArgumentError naming the registered backends when ``name`` is not one of them."""
    _load_builtin_backends()
    if name not in _REGISTRY:
        raise InvalidArgumentError(f"unknown backend {name!r}; registered: {sorted(_REGISTRY)}")


def parse_device(device: Any) -> torch.device | Literal["auto"]:
    """Normalise ``device=`` to a ``torch.device`` or ``"auto"``; reject anything else clearly."""
    import torch

    if device is None:
        return torch.device("cpu")
    if isinstance(device, str) and device.strip().lower() == "auto":
        return "auto"
    if not isinstance(device, (str, torch.device)):
        raise InvalidInputTypeError(
            f"device must be a string or torch.device; got {type(device).__name__}")
    try:
        parsed = torch.device(device)
    except RuntimeError:
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        raise InvalidArgumentError(
            f"device must be 'cpu', 'cuda', 'cuda:N', 'auto' or a torch.device of type cpu or cuda; "
            f"got {device!r}")
    return parsed


def resolve_device(device: torch.device) -> torch.device:
    """``device`` with its index: a bare ``cuda`` becomes the GPU this process works on.

    That is the current CUDA device once CUDA is initialised (``torch.cuda.set_device`` is
    honoured); before, under torchrun, the GPU of ``LOCAL_RANK``, else GPU 0. Asking creates no
    CUDA context. Every backend and front-end goes through this one rule.
    """
    import torch

    if device.type != "cuda" or device.index is not None:
        return device
    if torch.cuda.is_initialized():
        return torch.device("cuda", torch.cuda.current_device())
    local_rank = os.environ.get("LOCAL_RANK")
    return torch.device("cuda", int(local_rank) if local_rank and local_rank.isdigit() else 0)


def _auto_cuda_device() -> torch.device:
    import torch

    return resolve_device(torch.device("cuda"))


def _instance(entry: _Entry) -> Any:
    with _LOCK:
        backend = _INSTANCES.get(entry.name)
        if backend is None:
            module_name, _, class_name = entry.loader.partition(":")
            backend = getattr(importlib.import_module(module_name), class_name)()
            _INSTANCES[entry.name] = backend
        return backend


def get_backend(name: str) -> Any:
    """The backend object registered under ``name`` (imported on first use)."""
    _load_builtin_backends()
    entry = _REGISTRY.get(name)
    if entry is None:
        raise InvalidArgumentError(f"unknown backend {name!r}; registered: {sorted(_REGISTRY)}")
    reason = entry.probe()
    if reason is not None:
        raise BackendUnavailableError(f"backend {name!r} cannot run here: {reason}")
    return _instance(entry)


def select_backend(operation: Operation, device: Any = "cpu",
                   backend: str | None = None) -> tuple[Any, torch.device]:
    """Pick the backend and the output device for one call.

    ``device`` is ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"``, ``"auto"`` or a ``torch.device``;
    ``backend`` forces a registered backend by name. ``"auto"`` takes the first usable GPU backend
    for the operation and otherwise the CPU. Raises :class:`BackendUnavailableError` naming what
    is missing when a CUDA device is asked for and no GPU backend can serve it.
    """
    import torch

    _load_builtin_backends()
    target = parse_device(device)
    if backend is not None:
        entry = _REGISTRY.get(backend)
        if entry is None:
            raise InvalidArgumentError(f"unknown backend {backend!r}; registered: {sorted(_REGISTRY)}")
        if operation not in entry.operations:
            raise InvalidArgumentError(
                f"backend {backend!r} does not support {operation}; it supports {sorted(entry.operations)}")
        if target == "auto":
            target = torch.device("cpu") if entry.device_type == "cpu" else _auto_cuda_device()
        elif entry.device_type == "cpu" and target.type != "cpu":
            # the CPU backend serves a CUDA device by decoding on the CPU and uploading
            pass
        elif entry.device_type == "cuda" and target.type != "cuda":
            raise InvalidArgumentError(
                f"backend {backend!r} produces CUDA tensors; got device={device!r}")
        reason = entry.probe()
        if reason is not None:
            raise BackendUnavailableError(f"backend {backend!r} cannot run here: {reason}")
        return _instance(entry), resolve_device(target)

    if target == "auto" or target.type == "cuda":
        reasons = []
        for entry in _REGISTRY.values():
            if entry.device_type != "cuda" or operation not in entry.operations:
                continue
            reason = entry.probe()
            if reason is None:
                return _instance(entry), (_auto_cuda_device() if target == "auto" else resolve_device(target))
            reasons.append(f"{entry.name}: {reason}")
        if target != "auto":
            detail = "; ".join(reasons) if reasons else "no GPU backend is registered for it"
            raise BackendUnavailableError(
                f"device={device!r} needs a GPU backend for {operation}, and none can run here ({detail}). "
                "Use device='cpu', or device='auto' to fall back to the CPU.")
        target = torch.device("cpu")

    for entry in _REGISTRY.values():
        if entry.device_type == "cpu" and operation in entry.operations:
            reason = entry.probe()
            if reason is None:
                return _instance(entry), resolve_device(target)
            raise BackendUnavailableError(f"{operation} on the CPU needs backend {entry.name!r}: {reason}")
    raise BackendUnavailableError(f"no backend is registered for {operation}")


_builtins_loaded = False
_builtins_lock = ForkSafeLock(reentrant=True)


def _load_builtin_backends() -> None:
    """Register the built-in backends once (lightweight: probes and loader strings only).

    Threads that arrive together wait for the first to finish registering, so none of them can
    see a half-filled registry.
    """
    global _builtins_loaded
    if _builtins_loaded:
        return
    with _builtins_lock:
        if _builtins_loaded:
            return
        from ._backends import register_builtin_backends

        register_builtin_backends()
        _builtins_loaded = True
