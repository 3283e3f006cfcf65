"""The built-in backends' registry entries.

Only names, probes and loader strings live here: importing this package loads no backend and
no GPU library. Each GPU backend's own module (``_nvdec.py``, ``_nvimgcodec.py``, ``_dali.py``)
is imported the first time the dispatcher hands it work.
"""

from __future__ import annotations

from .._dispatch import cuda_unavailable_reason, module_missing, register_backend

__all__ = ["register_builtin_backends"]

# the one list of what each backend serves (the dispatcher hands a backend nothing else)
_VIDEO_DECODE = {"read_video", "open_video"}
_IMAGE_DECODE = {"decode_image"}


def _gpu_probe(*modules: str):
    def probe() -> str | None:
        return module_missing(*modules) or cuda_unavailable_reason()

    return probe


def _nvdec_probe() -> str | None:
    # the one NVDEC availability check (gpuvio info asks it too); also looks up the driver's
    # libnvcuvid, without loading it
    from ._cuda import nvdec_probe

    return nvdec_probe()


def register_builtin_backends() -> None:
    """Register cpu, then the GPU backends in order of preference."""
    register_backend(
        "cpu",
        device_type="cpu",
        operations={"decode_image", "encode_jpeg", "encode_png", "write_video", *_VIDEO_DECODE},
        loader="gpuvio.cpu_fallback:CpuBackend",
        probe=lambda: module_missing("av", "PIL"),
        description="PyAV (FFmpeg) and Pillow on the CPU: the reference semantics",
    )
    register_backend(
        "nvdec",
        device_type="cuda",
        operations=set(_VIDEO_DECODE),
        loader="gpuvio._backends._nvdec:NvdecBackend",
        probe=_nvdec_probe,
        description="NVIDIA hardware video decoders through PyNvVideoCodec",
    )
    register_backend(
        "nvimgcodec",
        device_type="cuda",
        operations={"decode_image", "encode_jpeg"},
        loader="gpuvio._backends._nvimgcodec:NvImgCodecBackend",
        probe=_gpu_probe("nvidia.nvimgcodec"),
        description="nvJPEG (and the hardware JPEG engines) through nvImageCodec",
    )
    register_backend(
        "dali",
        device_type="cuda",
        operations={"decode_image"},
        loader="gpuvio._backends._dali:DaliBackend",
        probe=_gpu_probe("nvidia.dali"),
        description="NVIDIA DALI's batched image decoder (device 'mixed')",
    )
