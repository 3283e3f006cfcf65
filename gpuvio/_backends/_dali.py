"""The DALI backend: batched image decoding through an NVIDIA DALI pipeline (``backend="dali"``).

A pipeline of ``fn.external_source`` -> ``fn.decoders.image`` is built per (batch size bucket,
device, output type, EXIF flag) and cached; on the GPU the decoder runs with ``device="mixed"``
(nvJPEG and the hardware JPEG engine), with ``device="cpu"`` in CPU-only mode (the tests).
It produces the same outputs as the CPU backend, with the same per-image policy as the
nvimgcodec backend: only screened 1- and 3-component JPEGs go to DALI, everything else (and any
image DALI fails on) is decoded by the CPU backend and uploaded.

DALI stops a whole batch at the first sample it cannot decode; its message names the sample, so
that sample is handed to the CPU backend and the rest are decoded again (the pipeline is rebuilt,
as DALI does not promise that a pipeline is usable after an error).

Forks: DALI's pipeline destructor waits for the pipeline's worker threads, which a forked child
does not have, so a pipeline destroyed in a child hangs it (for example a DataLoader worker whose
garbage collector meets a pipeline the parent had already dropped). So pipelines are shut down
explicitly, in the process that built them, whenever they are dropped; and in a forked child the
inherited ones are kept alive, never destroyed, and the child builds its own.

The DALI wheel (``nvidia-dali-cuda120`` / ``-cuda130``, about 200 MB) is optional; it is imported
only when a backend object is created.
"""

from __future__ import annotations

import os
import re
import threading
import warnings
import weakref
from typing import TYPE_CHECKING, Any, Literal

from .._errors import BackendUnavailableError, InvalidArgumentError
from .._fallback import LOG
from .._protocols import DecodedImage, EncodedImage
from .._types import ImageReadMode
from ._nvimgcodec_common import (
    FallbackView,
    Request,
    complete,
    cpu_decode,
    finish_mode,
    plan_batch,
    screen_jpeg,
)

if TYPE_CHECKING:
    import torch

__all__ = ["DaliBackend"]

_FAILED_SAMPLE = re.compile(r"sample #(\d+)")

# every live backend, so that a forked child can take their pipelines out of circulation
_live_backends: weakref.WeakSet[DaliBackend] = weakref.WeakSet()
# pipelines inherited through fork: referenced for the child's whole life, so never destroyed there
_inherited_pipelines: list[Any] = []


def _shut_down(pipe: Any) -> None:
    """Stop a pipeline's threads now, so that its destructor (wherever it runs) has nothing to wait for."""
    shutdown = getattr(pipe, "_shutdown", None)  # DALI has no public close; __del__ calls this
    if shutdown is not None:
        shutdown()


def _after_fork_in_child() -> None:
    for backend in list(_live_backends):
        _inherited_pipelines.extend(backend._pipelines.values())
        backend._pipelines = {}
        backend._lock = threading.Lock()  # it may have been held by a parent thread at fork time


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _import_dali() -> Any:
    try:
        from nvidia import dali
        # what the pipelines use, imported now so that an incomplete install fails here
        from nvidia.dali import fn, pipeline_def, types
        del fn, pipeline_def, types
    except ImportError as exc:
        raise BackendUnavailableError(
            "the dali backend needs NVIDIA DALI: pip install nvidia-dali-cuda120 (or -cuda130 to match "
            f"your CUDA) ({exc})") from None
    return dali


def _bucket(n: int) -> int:
    """The pipeline batch size serving ``n`` images: the next power of two (fewer pipelines to build)."""
    size = 1
    while size < n:
        size *= 2
    return size


class DaliBackend:
    """Batched image decoding through NVIDIA DALI's ``fn.decoders.image`` (an ``ImageDecoder`` of
    :mod:`gpuvio._protocols`).

    Args:
        cpu_only: build CPU pipelines (``device_id=None``, decoder device ``"cpu"``); results are
            CPU tensors. Default False: ``"mixed"`` decoding on the GPU.
        num_threads: CPU threads per pipeline (default 4).
        max_batch_size: largest pipeline batch; longer lists are decoded in chunks (default 256).
        hw_decoder_load: share of JPEGs DALI hands to the hardware JPEG engine (default 0.9).
    """

    #: registry name, under which fallbacks and GPU work are logged
    name: str = "dali"

    def __init__(self, *, cpu_only: bool = False, num_threads: int = 4, max_batch_size: int = 256,
                 hw_decoder_load: float = 0.9) -> None:
        for label, value in (("num_threads", num_threads), ("max_batch_size", max_batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{label} must be an int >= 1; got {value!r}")
        if not 0.0 <= hw_decoder_load <= 1.0:
            raise InvalidArgumentError(f"hw_decoder_load must be between 0 and 1; got {hw_decoder_load!r}")
        self._dali = _import_dali()
        self.cpu_only = cpu_only
        self._num_threads = num_threads
        self._max_batch = _bucket(max_batch_size)
        self._hw_load = hw_decoder_load
        self._pipelines: dict[tuple[int, int | None, Request, bool], Any] = {}
        self._lock = threading.Lock()
        #: How many images DALI decoded, and how many went to the CPU backend and why (this
        #: backend's part of ``gpuvio._fallback.LOG``).
        self.fallbacks = FallbackView(self.name)
        _live_backends.add(self)

    def close(self) -> None:
        """Shut down this backend's pipelines now (they are rebuilt if it decodes again)."""
        with self._lock:
            pipelines, self._pipelines = self._pipelines, {}
        for pipe in pipelines.values():  # built by this process: a fork hook removes inherited ones
            _shut_down(pipe)

    def __del__(self) -> None:
        if getattr(self, "_pipelines", None):
            self.close()

    def __repr__(self) -> str:
        where = "cpu-only" if self.cpu_only else "mixed"
        return f"DaliBackend({where}, dali {self._dali.__version__}, {len(self._pipelines)} pipelines)"

    def _device_index(self, device: torch.device) -> int | None:
        if self.cpu_only:
            return None
        if device.type != "cuda":
            raise InvalidArgumentError(
                f"the dali backend decodes into CUDA tensors; got device={str(device)!r} "
                "(use DaliBackend(cpu_only=True) for DALI's CPU pipelines)")
        import torch

        return device.index if device.index is not None else torch.cuda.current_device()

    def _pipeline(self, batch: int, device_index: int | None, request: Request, exif: bool) -> Any:
        key = (batch, device_index, request, exif)
        pipe = self._pipelines.get(key)
        if pipe is not None:
            return pipe
        from nvidia.dali import fn, pipeline_def, types

        decoder_device = "cpu" if device_index is None else "mixed"
        output_type = types.GRAY if request == "gray" else types.RGB
        extra: dict[str, Any] = {}
        if decoder_device == "mixed":
            extra = {"jpeg_fancy_upsampling": True, "hw_decoder_load": self._hw_load}

        @pipeline_def(batch_size=batch, num_threads=self._num_threads, device_id=device_index,
                      prefetch_queue_depth=1)
        def decode_pipeline() -> Any:
            encoded = fn.external_source(name="encoded", dtype=types.UINT8)
            return fn.decoders.image(encoded, device=decoder_device, output_type=output_type,
                                     adjust_orientation=exif, **extra)

        pipe = decode_pipeline()
        try:
            pipe.build()
        except BaseException:
            _shut_down(pipe)
            raise
        self._pipelines[key] = pipe
        return pipe

    def decode_images(self, items: list[EncodedImage], *, mode: ImageReadMode, apply_exif_orientation: bool,
                      device: torch.device, on_error: Literal["raise", "skip"]) -> list[DecodedImage]:
        """Decode ``(bytes, format)`` items in DALI batches.

        Returns:
            a list, in input order, of ``Tensor[C, H, W] uint8`` on ``device`` or the
            :class:`GpuvioError` of each image that failed (the front-end raises or skips them
            per ``on_error``).
        """
        results: list[DecodedImage | None] = [None] * len(items)
        groups, _, to_cpu = plan_batch(items, mode, screen_jpeg)

        device_index = self._device_index(device)
        for request, indices in groups.items():
            for start in range(0, len(indices), self._max_batch):
                chunk = indices[start : start + self._max_batch]
                failed = self._decode_chunk(items, chunk, request, mode, apply_exif_orientation,
                                            device, device_index, results)
                if failed:
                    to_cpu.setdefault("DALI could not decode it", []).extend(failed)

        cpu_decode(self.name, items, to_cpu, mode=mode, apply_exif_orientation=apply_exif_orientation,
                   device=device, results=results)

        if on_error == "raise" and len(items) == 1 and isinstance(results[0], BaseException):
            raise results[0]
        return complete(results)

    def _decode_chunk(self, items: list[EncodedImage], chunk: list[int], request: Request, mode: ImageReadMode,
                      exif: bool, device: torch.device, device_index: int | None,
                      results: list[DecodedImage | None]) -> list[int]:
        """Run ``items[chunk]`` through a pipeline; return the indices DALI failed on."""
        import numpy as np

        pending = list(chunk)
        failed: list[int] = []
        while pending:
            batch = _bucket(len(pending))
            with self._lock:
                pipe = self._pipeline(batch, device_index, request, exif)
                pipe.feed_input("encoded", [np.frombuffer(items[i][0], dtype=np.uint8) for i in pending])
                try:
                    (out,) = pipe.run()
                    tensors = [self._copy_out(out[k], device) for k in range(len(pending))]
                except RuntimeError as exc:
                    # the pipeline's state after an error is not promised: build a fresh one
                    _shut_down(self._pipelines.pop((batch, device_index, request, exif)))
                    match = _FAILED_SAMPLE.search(str(exc))
                    if match is None or int(match.group(1)) >= len(pending):
                        warnings.warn(f"DALI failed on a batch of {len(pending)} images ({exc}); "
                                      "decoding them on the CPU", RuntimeWarning, stacklevel=4)
                        failed.extend(pending)
                        return failed
                    failed.append(pending.pop(int(match.group(1))))
                    continue
            for i, hwc in zip(pending, tensors):
                results[i] = finish_mode(hwc, mode)
            LOG.add_gpu(self.name, len(pending))
            pending = []
        return failed

    def _copy_out(self, sample: Any, device: torch.device) -> torch.Tensor:
        """``Tensor[H, W, C]`` copied out of a DALI output sample (DALI reuses its buffers)."""
        import numpy as np
        import torch

        if self.cpu_only:
            hwc = torch.from_numpy(np.array(sample, copy=True))
            return hwc if device.type == "cpu" else hwc.to(device)
        from nvidia.dali.plugin.pytorch import feed_ndarray

        hwc = torch.empty(tuple(sample.shape()), dtype=torch.uint8, device=device)
        # copy on torch's current stream, so later torch work is ordered after it
        feed_ndarray(sample, hwc, cuda_stream=torch.cuda.current_stream(device))
        return hwc
