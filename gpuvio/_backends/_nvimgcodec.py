"""The nvImageCodec backend: batched nvJPEG decoding (and encoding) into torch CUDA tensors.

nvImageCodec (pip ``nvidia-nvimgcodec-cu12`` / ``-cu13``, with its ``nvjpeg`` extra) drives
nvJPEG's CUDA decoder and the hardware JPEG engines of A100/H100/H200. A list of images is
decoded in one library call, so the hardware engine sees whole batches. Results match the CPU
backend (the reference):

* Only JPEGs that pass a cheap screening go to nvImageCodec (see ``_nvimgcodec_common``); PNG,
  GIF, WebP, CMYK/YCCK and 12-bit JPEGs, damaged or truncated files, and anything nvImageCodec
  fails on (it returns ``None`` then) are decoded by the CPU backend, per image, and uploaded.
  So an error is the CPU backend's error, and never a silent ``None``.
* Chroma is upsampled with interpolation ("fancy upsampling", as libjpeg does) for parity.
* Output is ``Tensor[C, H, W] uint8``: a channels-first view of channels-last memory, like the
  CPU backend; grayscale stays one channel in ``UNCHANGED``.
* Work is ordered on torch's current CUDA stream: nvImageCodec decodes on it, and the DLPack
  hand-off passes it again, so no device-wide synchronisation is needed.

``NvImgCodecBackend(cpu_only=True)`` runs the same code with nvImageCodec's CPU-only device id
and its CPU codecs (libjpeg-turbo), producing CPU tensors: the tests use it on machines without a
GPU. nvImageCodec is imported only when a backend object is created.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from .._errors import BackendUnavailableError, InvalidArgumentError
from .._fallback import LOG, record
from .._protocols import DecodedImage, EncodedImage
from .._types import ImageReadMode
from ._nvimgcodec_common import (
    FallbackView,
    Request,
    complete,
    cpu_backend,
    cpu_decode,
    finish_mode,
    plan_batch,
    screen_header,
    screen_scan,
)

if TYPE_CHECKING:
    import torch

__all__ = ["NvImgCodecBackend"]

BackendKind = Literal["hw_gpu", "gpu", "hybrid", "cpu"]
_KINDS: tuple[BackendKind, ...] = ("hw_gpu", "gpu", "hybrid", "cpu")
# batches at least this long overlap the scan-data screening with the library's decode
_OVERLAP_MIN = 8


def _import_nvimgcodec() -> Any:
    # nvImageCodec logs every image it cannot decode; this backend handles those itself (CPU
    # fallback), so keep its log quiet unless the user asked for it.
    os.environ.setdefault("PYNVIMGCODEC_VERBOSITY", "0")
    try:
        from nvidia import nvimgcodec
    except ImportError as exc:
        raise BackendUnavailableError(
            "the nvimgcodec backend needs nvImageCodec: pip install 'nvidia-nvimgcodec-cu12[nvjpeg]' "
            f"(or -cu13 to match your CUDA) ({exc})") from None
    return nvimgcodec


class NvImgCodecBackend:
    """Image decoding and JPEG encoding through NVIDIA nvImageCodec (an ``ImageDecoder`` and a
    ``JpegEncoder`` of :mod:`gpuvio._protocols`).

    Args:
        cpu_only: run nvImageCodec with its CPU-only device id and CPU codecs; results are CPU
            tensors (or uploaded to the requested device). Default False: decode on the GPU.
        backend_kinds: which nvImageCodec backends may run, in any order: ``"hw_gpu"`` (the
            hardware JPEG engine), ``"hybrid"`` (nvJPEG's CUDA decoder, which does the Huffman
            stage on the CPU below about 1 Mpx), ``"gpu"`` (GPU-only codecs: JPEG 2000 and
            TIFF, *no JPEG decoder* in nvImageCodec 0.9, so JPEGs then go to the CPU backend),
            ``"cpu"`` (libjpeg-turbo). Default: all of them (nvImageCodec picks per image and
            falls back between them). Applies to decoding; ignored when ``cpu_only``.
        num_threads: CPU threads nvImageCodec may use; 0 (default) means one per core.
        fancy_upsampling: interpolate chroma like libjpeg (default True; needed for parity).
    """

    #: registry name, under which fallbacks and GPU work are logged
    name: str = "nvimgcodec"

    def __init__(self, *, cpu_only: bool = False, backend_kinds: Sequence[BackendKind] | None = None,
                 num_threads: int = 0, fancy_upsampling: bool = True) -> None:
        if backend_kinds is not None:
            unknown = [k for k in backend_kinds if k not in _KINDS]
            if unknown or not backend_kinds:
                raise InvalidArgumentError(
                    f"backend_kinds must be a non-empty list of {list(_KINDS)}; got {list(backend_kinds)!r}")
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 0:
            raise InvalidArgumentError(f"num_threads must be an int >= 0; got {num_threads!r}")
        self._nv = _import_nvimgcodec()
        self.cpu_only = cpu_only
        self._kinds = tuple(backend_kinds) if backend_kinds is not None else None
        self._num_threads = num_threads
        self._options = f":fancy_upsampling={int(bool(fancy_upsampling))}"
        self._decoders: dict[int, Any] = {}
        self._encoders: dict[int, Any] = {}
        self._locks: dict[tuple[str, int], threading.Lock] = {}
        self._guard = threading.Lock()
        self._warned_host = False
        self._warned_dlpack = False
        #: How many images the library decoded, and how many went to the CPU backend and why
        #: (this backend's part of ``gpuvio._fallback.LOG``).
        self.fallbacks = FallbackView(self.name)

    # ------------------------------------------------------------------ library objects

    def __repr__(self) -> str:
        where = "cpu-only" if self.cpu_only else "gpu"
        return f"NvImgCodecBackend({where}, nvimgcodec {self.library_version})"

    @property
    def library_version(self) -> str:
        """nvImageCodec's version string."""
        return str(getattr(self._nv, "__version__", "unknown"))

    def _device_id(self, device: torch.device) -> int:
        if self.cpu_only or device.type != "cuda":
            if not self.cpu_only:
                raise InvalidArgumentError(
                    f"the nvimgcodec backend decodes into CUDA tensors; got device={str(device)!r} "
                    "(use NvImgCodecBackend(cpu_only=True) for nvImageCodec's CPU codecs)")
            return int(self._nv.NVIMGCODEC_DEVICE_CPU_ONLY)
        import torch

        return device.index if device.index is not None else torch.cuda.current_device()

    def _backends(self) -> list[Any] | None:
        nv = self._nv
        if self.cpu_only:
            return [nv.Backend(nv.BackendKind.CPU_ONLY)]
        if self._kinds is None:
            return None
        kind = {"hw_gpu": nv.BackendKind.HW_GPU_ONLY, "gpu": nv.BackendKind.GPU_ONLY,
                "hybrid": nv.BackendKind.HYBRID_CPU_GPU, "cpu": nv.BackendKind.CPU_ONLY}
        return [nv.Backend(kind[k]) for k in self._kinds]

    def _codec(self, what: Literal["decoder", "encoder"], device_id: int) -> tuple[Any, threading.Lock]:
        """The cached Decoder/Encoder for a device, and the lock that serialises calls into it."""
        cache = self._decoders if what == "decoder" else self._encoders
        with self._guard:
            codec = cache.get(device_id)
            if codec is None:
                cls = self._nv.Decoder if what == "decoder" else self._nv.Encoder
                kwargs: dict[str, Any] = {"device_id": device_id, "max_num_cpu_threads": self._num_threads}
                if what == "decoder":
                    kwargs.update(backends=self._backends(), options=self._options)
                elif self.cpu_only:  # backend_kinds choose decoders; encoders are all allowed
                    kwargs.update(backends=self._backends())
                codec = cls(**kwargs)
                cache[device_id] = codec
                self._locks[(what, device_id)] = threading.Lock()
            return codec, self._locks[(what, device_id)]

    def _stream(self, device: torch.device) -> int:
        """torch's current CUDA stream on ``device`` as an int (0 for CPU-only work)."""
        if self.cpu_only or device.type != "cuda":
            return 0
        import torch

        return int(torch.cuda.current_stream(device).cuda_stream)

    # ------------------------------------------------------------------ hand-off

    def _to_torch(self, image: Any, device: torch.device) -> torch.Tensor:
        """``Tensor[H, W, C]`` of a decoded nvImageCodec Image, on ``device`` (a copy on the GPU,
        a view of the host buffer in CPU-only mode)."""
        import numpy as np
        import torch

        if image.buffer_kind == self._nv.ImageBufferKind.STRIDED_DEVICE:
            try:
                # torch passes its current stream to __dlpack__; nvImageCodec orders the hand-off on it.
                # Cloned at once: the library's buffer (freed on its own stream, unseen by torch's
                # allocator, so record_stream cannot protect it) is released right after the copy,
                # and the result is ordinary torch memory (~0.1 ms per 256 ImageNet-size images)
                hwc = torch.from_dlpack(image).clone()
            except (RuntimeError, TypeError, ValueError, BufferError) as exc:
                # the CUDA array interface is the documented second way out (no copy either); the
                # decode already ran on torch's current stream, so the order holds
                if not self._warned_dlpack:
                    self._warned_dlpack = True
                    warnings.warn(f"DLPack export of an nvImageCodec image failed ({exc}); using "
                                  "__cuda_array_interface__", RuntimeWarning, stacklevel=4)
                hwc = torch.as_tensor(image, device=device).clone()
        else:
            # host buffer (CPU-only mode, or a CPU codec without a device copy): view it through the
            # array interface; nvImageCodec's __dlpack__ needs a CUDA driver even for host images
            hwc = torch.from_numpy(np.asarray(image))
            if device.type == "cuda" and not self.cpu_only and not self._warned_host:
                self._warned_host = True
                warnings.warn("nvImageCodec returned host images on a GPU decoder: is its nvJPEG "
                              "extra installed (pip install 'nvidia-nvimgcodec-cu12[nvjpeg]')? Uploading.",
                              RuntimeWarning, stacklevel=4)
        if hwc.dim() == 2:
            hwc = hwc[:, :, None]
        if hwc.device != device:
            hwc = hwc.to(device)
        return hwc

    # ------------------------------------------------------------------ decoding

    def decode_images(self, items: list[EncodedImage], *, mode: ImageReadMode, apply_exif_orientation: bool,
                      device: torch.device, on_error: Literal["raise", "skip"]) -> list[DecodedImage]:
        """Decode ``(bytes, format)`` items as one batch.

        Returns:
            a list, in input order, of ``Tensor[C, H, W] uint8`` on ``device`` or the
            :class:`GpuvioError` of each image that failed (the front-end raises or skips them
            per ``on_error``).
        """
        results: list[DecodedImage | None] = [None] * len(items)
        groups, headers, to_cpu = plan_batch(items, mode, screen_header)

        # nvImageCodec decodes (it releases the GIL) while this thread checks the scan data of the
        # same images; an image that check rejects is then decoded again by the CPU backend.
        # Truncated, oversized and CMYK/12-bit files never reach the library (screen_header).
        jobs = [(indices, self._start_decode(items, indices, request, apply_exif_orientation, device))
                for request, indices in groups.items() if indices]
        suspect = {i: reason for indices, _ in jobs for i in indices
                   if (reason := screen_scan(items[i][0], headers[i])) is not None}
        for indices, job in jobs:
            images = job()
            decoded = 0
            for i, image in zip(indices, images):
                if i in suspect:
                    to_cpu.setdefault(suspect[i], []).append(i)
                elif image is None:
                    to_cpu.setdefault("nvImageCodec could not decode it", []).append(i)
                else:
                    results[i] = finish_mode(self._to_torch(image, device), mode)
                    decoded += 1
            LOG.add_gpu(self.name, decoded)

        cpu_decode(self.name, items, to_cpu, mode=mode, apply_exif_orientation=apply_exif_orientation,
                   device=device, results=results)

        if on_error == "raise" and len(items) == 1 and isinstance(results[0], BaseException):
            raise results[0]
        return complete(results)

    def _start_decode(self, items: list[EncodedImage], indices: list[int], request: Request,
                      apply_exif_orientation: bool, device: torch.device) -> Callable[[], list[Any]]:
        """Start batch-decoding ``items[indices]``; the returned call waits for the list of Images.

        An entry is ``None`` where nvImageCodec failed. Batches of ``_OVERLAP_MIN`` or more run in
        a short-lived thread (cheap next to the batch, and safe across fork), smaller ones at once.
        """
        import numpy as np

        nv = self._nv
        color_spec, sample_format = ((nv.ColorSpec.GRAY, nv.SampleFormat.I_Y) if request == "gray"
                                     else (nv.ColorSpec.SRGB, nv.SampleFormat.I_RGB))
        params = nv.DecodeParams(apply_exif_orientation=apply_exif_orientation, color_spec=color_spec,
                                 allow_any_depth=False, sample_format=sample_format)
        # CodeStreams view the caller's bytes (the arrays stay referenced by the CodeStreams)
        streams = [nv.CodeStream(np.frombuffer(items[i][0], dtype=np.uint8)) for i in indices]
        decoder, lock = self._codec("decoder", self._device_id(device))
        # torch's current stream belongs to this thread: read it here, not in the worker
        cuda_stream = self._stream(device)
        outcome: list[Any] = []

        def work() -> None:
            with lock:
                try:
                    outcome.append(decoder.decode(streams, params=params, cuda_stream=cuda_stream))
                except Exception as exc:  # noqa: BLE001 - any library failure: the batch goes to the CPU
                    outcome.append(exc)

        def finish() -> list[Any]:
            if worker is not None:
                worker.join()
            result = outcome[0]
            if not isinstance(result, BaseException) and len(result) != len(indices):
                result = RuntimeError(f"it returned {len(result)} images for {len(indices)}")
            if isinstance(result, BaseException):
                warnings.warn(f"nvImageCodec failed on a batch of {len(indices)} images ({result}); "
                              "decoding them on the CPU", RuntimeWarning, stacklevel=4)
                return [None] * len(indices)
            return list(result)

        worker = None
        if len(indices) >= _OVERLAP_MIN:
            worker = threading.Thread(target=work, name="gpuvio-nvimgcodec-decode", daemon=True)
            worker.start()
        else:
            work()
        return finish

    # ------------------------------------------------------------------ encoding

    def _encoder_view(self, image: torch.Tensor) -> tuple[Any, Any]:
        """(array, sample format) presenting ``Tensor[C, H, W]`` to the encoder, copying only if needed.

        nvJPEG's CUDA encoder takes planar RGB (CHW), interleaved RGB (HWC) or planar luma, so a
        contiguous tensor and a channels-first view of channels-last memory (what the decoders
        return) both go in as they are. CPU-only mode hands numpy arrays over (the array interface).
        """
        nv = self._nv
        if image.shape[0] == 1:
            array, layout = image.reshape(image.shape[1], image.shape[2]), nv.SampleFormat.P_Y
        elif image.is_contiguous():
            array, layout = image, nv.SampleFormat.P_RGB
        elif image.permute(1, 2, 0).is_contiguous():
            array, layout = image.permute(1, 2, 0), nv.SampleFormat.I_RGB
        else:
            array, layout = image.contiguous(), nv.SampleFormat.P_RGB
        if self.cpu_only:
            import numpy as np

            # numpy's single-threaded copy is steadier than torch's on a busy CPU
            array = np.ascontiguousarray(array.cpu().numpy())
        elif not array.is_contiguous():
            array = array.contiguous()
        return array, layout

    def encode_jpeg(self, images: list[torch.Tensor], *, quality: int) -> list[torch.Tensor]:
        """JPEG-encode ``Tensor[C, H, W] uint8`` images (C = 1 or 3) as one batch per device.

        Chroma is subsampled 4:2:0 for colour images (Pillow's default); grayscale images are
        encoded as single-component JPEGs. Returns ``Tensor[N] uint8`` of JPEG bytes **on the
        CPU** (nvImageCodec writes its code streams to host memory); the front-end moves them to
        the input's device. An image the library fails on is encoded by the CPU backend.
        """
        import torch

        out: list[torch.Tensor | None] = [None] * len(images)
        groups: dict[tuple[torch.device, int], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault((image.device, image.shape[0]), []).append(i)
        nv = self._nv
        for (device, channels), indices in groups.items():
            if device.type != "cuda" and not self.cpu_only:
                # a GPU encoder gains nothing on CPU tensors: the reference encoder takes them
                cpu = cpu_backend()
                for i in indices:
                    out[i] = cpu.encode_jpeg([images[i]], quality=quality)[0]
                continue
            # colour spec is left to nvImageCodec (from each image); only the sampling is chosen
            params = nv.EncodeParams(
                quality_type=nv.QualityType.QUALITY, quality_value=float(quality),
                chroma_subsampling=nv.ChromaSubsampling.CSS_GRAY if channels == 1 else nv.ChromaSubsampling.CSS_420)
            stream = self._stream(device)
            sources = [self._encoder_view(images[i]) for i in indices]
            wrapped = [nv.as_image(array, cuda_stream=stream, sample_format=layout) for array, layout in sources]
            encoder, lock = self._codec("encoder", self._device_id(device))
            with lock:
                try:
                    streams = encoder.encode(wrapped, "jpeg", params=params, cuda_stream=stream)
                except (RuntimeError, ValueError) as exc:
                    warnings.warn(f"nvImageCodec failed to encode {len(indices)} images ({exc}); "
                                  "encoding them on the CPU", RuntimeWarning, stacklevel=3)
                    streams = [None] * len(indices)
            for i, code_stream in zip(indices, streams):
                if code_stream is None:
                    record(self.name, "encode_jpeg", "nvImageCodec could not encode it")
                    out[i] = cpu_backend().encode_jpeg([images[i]], quality=quality)[0]
                else:
                    out[i] = torch.frombuffer(bytearray(memoryview(code_stream)), dtype=torch.uint8)
            del sources, wrapped
        return complete(out)
