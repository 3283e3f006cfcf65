"""DeviceLoader: decode the batches of a DataLoader on the GPU, in the main process, one batch ahead.

Why in the main process: a CUDA context does not survive ``fork``, and one context per worker
wastes GPU memory. So the workers only read encoded bytes (datasets with ``decode=False``) and
this loader decodes each batch on the device. A background thread pulls the next batch from the
DataLoader and decodes it on a CUDA stream of its own while the training step runs on the
default stream; handing a batch over makes the consumer's stream wait for that batch's event
and tells the caching allocator the consumer now uses its memory (``record_stream``).

The CPU path (``device="cpu"``) runs the very same thread, queue and hand-over, with no stream:
that is what the tests on a machine without a GPU exercise.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch

from .. import _forksafe
from .._dispatch import (
    _auto_cuda_device,
    cuda_unavailable_reason,
    parse_device,
    select_backend,
)
from .._errors import BackendUnavailableError, InvalidArgumentError
from .._types import DeviceLike
from ._encoded import (
    EncodedBatch,
    EncodedClip,
    EncodedImage,
    decode_items,
    stack_or_list,
)

__all__ = ["DeviceLoader", "resolve_device"]


def resolve_device(device: DeviceLike) -> torch.device:
    """The device batches go to: ``"auto"`` is ``cuda:{LOCAL_RANK}`` (0 outside torchrun) when CUDA
    is usable, else the CPU; ``"cuda"`` without CUDA raises, saying why."""
    parsed = parse_device(device)
    reason = cuda_unavailable_reason()
    if parsed == "auto":
        return torch.device("cpu") if reason is not None else _auto_cuda_device()
    if parsed.type == "cuda" and reason is not None:
        raise BackendUnavailableError(f"device={device!r} needs CUDA: {reason}")
    if parsed.type == "cuda" and parsed.index is None:
        return _auto_cuda_device()  # bare "cuda": this process's GPU under torchrun
    return parsed


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


class DeviceLoader:
    """Wrap a DataLoader so that its batches arrive decoded, on ``device``.

    In each batch, an :class:`~gpuvio.data.EncodedBatch` (from :func:`gpuvio.data.collate` over a
    ``decode=False`` dataset) becomes the decoded batch: ``Tensor[B, ...]`` when every item has the
    same shape, else a list of tensors; single encoded items (``batch_size=None``) become a tensor.
    Every other tensor in the batch (labels, indices) is moved to ``device``. Tuples, lists,
    dicts and namedtuples keep their structure.

    Each encoded item is decoded with its own decode-time ``transforms`` (what the dataset's
    ``transforms=`` put in it, a seeded window per random crop), so the batch holds the
    transformed sizes, and the pixels the dataset decoding in its workers gives (within the CPU
    and GPU backends' parity on a GPU). That is why this loader takes no ``transforms=`` of its
    own: a random window is drawn when the sample is read, in ``__getitem__``, not in this
    loader's decoding thread, where the draws would depend on timing and on the training loop's
    use of the RNG.

    With ``device`` on CUDA, decoding runs on the GPU backends (nvImageCodec/NVDEC) on a side
    stream; an operation no GPU backend can serve here is decoded on the CPU and uploaded, with
    a warning, and :attr:`fallback_reasons` says why. With ``device="cpu"`` the main process
    decodes on the CPU backend, which gives the same tensors as decoding in the workers.

    Example::

        ds = ImageDataset("train/", decode=False, transforms=[Resize(256), RandomCrop(224)])
        loader = DataLoader(ds, batch_size=64, num_workers=8, collate_fn=gpuvio.data.collate)
        for images, labels in DeviceLoader(loader, device="auto"):
            ...   # images: Tensor[64, 3, 224, 224] uint8 on cuda:{LOCAL_RANK}

    Args:
        loader: any iterable of batches, usually a ``torch.utils.data.DataLoader``.
        device: ``"auto"`` (default: ``cuda:{LOCAL_RANK}`` when CUDA is usable, else the CPU),
            ``"cuda"``, ``"cuda:N"``, ``"cpu"`` or a ``torch.device``.
        transform: any callable, applied to each decoded (and already ``transforms``-ed) item on
            ``device`` before batching (e.g. a normalisation). For resizing and cropping prefer
            the dataset's ``transforms=``, applied as part of decoding.
        prefetch: decoded batches kept ready ahead of the consumer (>= 1, default 1).
        backend: force a decoding backend by name.
    """

    def __init__(self, loader: Iterable[Any], device: DeviceLike = "auto", *,
                 transform: Callable[[torch.Tensor], Any] | None = None, prefetch: int = 1,
                 backend: str | None = None) -> None:
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
            raise InvalidArgumentError(f"prefetch must be an int >= 1; got {prefetch!r}")
        self.loader = loader
        self.device = resolve_device(device)
        self.transform = transform
        self.prefetch = prefetch
        self.backend = backend
        #: per operation ("decode_image", "read_video"), why it ran on the CPU instead of the GPU
        self.fallback_reasons: dict[str, str] = {}
        self._decode_on: dict[str, torch.device] = {}
        self._stream: Any = None

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        return _DeviceIterator(self)

    def __repr__(self) -> str:
        return f"DeviceLoader(device={str(self.device)!r}, prefetch={self.prefetch})"

    # ------------------------------------------------------------------ decoding
    def _decode_device(self, operation: str) -> torch.device:
        """Where one operation decodes: the output device if a backend serves it there, else the CPU."""
        where = self._decode_on.get(operation)
        if where is None:
            where = self.device
            if self.device.type == "cuda":
                try:
                    select_backend(operation, self.device, self.backend)  # type: ignore[arg-type]
                except BackendUnavailableError as exc:
                    where = torch.device("cpu")
                    self.fallback_reasons[operation] = str(exc)
                    warnings.warn(f"DeviceLoader: {operation} runs on the CPU and is copied to {self.device}: {exc}",
                                  RuntimeWarning, stacklevel=2)
            self._decode_on[operation] = where
        return where

    def _decode(self, batch: EncodedBatch) -> Any:
        op = "read_video" if any(isinstance(i, EncodedClip) for i in batch) else "decode_image"
        where = self._decode_device(op)
        items = decode_items(batch, device=where, backend=self.backend if where == self.device else None)
        if where != self.device:
            items = [self._upload(x) for x in items]
        if self.transform is not None:
            items = [self.transform(x) for x in items]
        return stack_or_list(items)

    def _upload(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            if value.device == self.device:
                return value
            if self.device.type == "cuda" and value.device.type == "cpu" and not value.is_pinned():
                value = value.pin_memory()  # an asynchronous copy needs page-locked memory
            return value.to(self.device, non_blocking=True)
        if isinstance(value, list):
            return [self._upload(v) for v in value]
        return value

    def _convert(self, batch: Any) -> Any:
        """Decode encoded parts of one batch and move every tensor to the device."""
        if isinstance(batch, EncodedBatch):
            return self._decode(batch)
        if isinstance(batch, (EncodedImage, EncodedClip)):
            decoded = self._decode(EncodedBatch([batch]))
            return decoded[0]
        if isinstance(batch, torch.Tensor):
            return self._upload(batch)
        if isinstance(batch, Mapping):
            return type(batch)({k: self._convert(v) for k, v in batch.items()})  # type: ignore[call-arg]
        if isinstance(batch, tuple) and hasattr(batch, "_fields"):
            return type(batch)(*(self._convert(v) for v in batch))
        if isinstance(batch, (list, tuple)):
            return type(batch)(self._convert(v) for v in batch)
        return batch

    # ------------------------------------------------------------------ streams
    def _stream_scope(self) -> contextlib.AbstractContextManager[Any]:
        """In the producer thread: make the side stream current (CUDA), or nothing (CPU)."""
        if self.device.type != "cuda":
            return contextlib.nullcontext()
        if self._stream is None:
            self._stream = torch.cuda.Stream(device=self.device)
        scope = contextlib.ExitStack()
        scope.enter_context(torch.cuda.device(self.device))
        scope.enter_context(torch.cuda.stream(self._stream))
        return scope

    def _mark_ready(self) -> Any:
        """In the producer thread, after a batch: an event the consumer will wait on (CUDA)."""
        if self.device.type != "cuda":
            return None
        event = torch.cuda.Event()
        event.record(self._stream)
        return event

    def _hand_over(self, batch: Any, event: Any) -> None:
        """In the consumer thread: order its stream after the batch's work; keep its memory safe."""
        if event is None:
            return
        consumer = torch.cuda.current_stream(self.device)
        consumer.wait_event(event)
        for tensor in _tensors(batch):
            if tensor.device.type == "cuda":
                # allocated on the side stream, used on the consumer's: the allocator must not
                # hand this memory out again before the consumer's work on it is done
                tensor.record_stream(consumer)


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)


def _put(out: queue.Queue[Any], stop: threading.Event, item: Any) -> bool:
    """Queue ``item`` unless the consumer has stopped; False when it has."""
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _produce(owner: DeviceLoader, source: Iterator[Any], out: queue.Queue[Any], stop: threading.Event) -> None:
    """The producer thread: convert (decode) each batch of ``source`` ahead of the consumer."""
    try:
        with owner._stream_scope():
            for batch in source:
                if stop.is_set():
                    return
                converted = owner._convert(batch)
                if not _put(out, stop, (converted, owner._mark_ready())):
                    return
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
        _put(out, stop, _Failure(exc))
        return
    _put(out, stop, _END)


class _DeviceIterator:
    """One pass over the loader: a producer thread decodes ahead, ``__next__`` hands batches over."""

    def __init__(self, owner: DeviceLoader) -> None:
        self._owner = owner
        # iter() here, in the caller's thread: DataLoader workers are started (forked) from it
        self._source = iter(owner.loader)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=owner.prefetch)
        self._stop = threading.Event()
        self._done = False
        self._generation = _forksafe.generation()
        # the thread gets what it works on, not this object: a loop left early then drops the
        # iterator, whose __del__ stops the thread (which would otherwise keep it alive forever)
        self._thread = threading.Thread(target=_produce, args=(owner, self._source, self._queue, self._stop),
                                        name="gpuvio-device-loader", daemon=True)
        self._thread.start()

    def __iter__(self) -> _DeviceIterator:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        if self._generation != _forksafe.generation():
            # the producer thread stayed in the parent: waiting on its queue here would never end
            raise InvalidArgumentError(
                "this DeviceLoader iteration was started in the parent process, and its decoding thread "
                "does not exist in this forked child; start a new one here with iter(loader)")
        item = self._queue.get()
        if item is _END:
            self._finish()
            raise StopIteration
        if isinstance(item, _Failure):
            self._finish()
            raise item.exc
        batch, event = item
        self._owner._hand_over(batch, event)
        return batch

    def _finish(self) -> None:
        self._done = True
        self._stop.set()
        self._thread.join(timeout=5)

    def close(self) -> None:
        """Stop decoding ahead (for a loop left early); the DataLoader iterator is released."""
        if self._done:
            return
        self._done = True
        if self._generation != _forksafe.generation():
            return  # a forked child's copy: its locks may have been held by the parent's thread
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()

    def __del__(self) -> None:
        self.close()
