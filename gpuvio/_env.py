"""The environment report: versions, CPU and GPUs, as ``gpuvio info`` and benchmark records give it.

Library code (the benchmark's JSON record) and the command line both take it from here. Whether
a backend can run is not decided here: that is the registry's probes (:func:`gpuvio.backends`).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from typing import Any

__all__ = ["PACKAGES", "cpu_model", "system_info"]

# (label shown, distribution name(s) to ask importlib.metadata for, "|" between alternatives)
PACKAGES: list[tuple[str, str]] = [
    ("gpuvio", "gpuvio"), ("torch", "torch"), ("av (PyAV)", "av"), ("Pillow", "pillow"),
    ("numpy", "numpy"), ("pillow-heif", "pillow-heif"), ("PyNvVideoCodec", "PyNvVideoCodec"),
    ("nvImageCodec", "nvidia-nvimgcodec-cu13|nvidia-nvimgcodec-cu12"),
    ("DALI", "nvidia-dali-cuda130|nvidia-dali-cuda120|nvidia-dali-cuda110"),
    ("cupy", "cupy-cuda13x|cupy-cuda12x"), ("torchvision", "torchvision"),
    ("torchcodec", "torchcodec"), ("tqdm", "tqdm"), ("matplotlib", "matplotlib"),
]


def _dist_version(names: str) -> str | None:
    """The installed version of the first of ``names`` ("a|b") that is installed, else None."""
    from importlib.metadata import PackageNotFoundError, version

    for name in names.split("|"):
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def _nvidia_smi() -> list[dict[str, str]]:
    """GPUs as nvidia-smi reports them (name, driver, memory), or [] without a driver."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,name,driver_version,memory.total,compute_cap",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 5:
            gpus.append(dict(zip(("index", "name", "driver", "memory", "compute_cap"), parts)))
    return gpus


def _torch_gpus() -> list[dict[str, str]]:
    """GPUs as torch sees them, for machines without nvidia-smi (e.g. a slim container)."""
    import torch

    from ._dispatch import cuda_unavailable_reason

    if cuda_unavailable_reason() is not None:
        return []
    gpus = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        gpus.append({"index": str(i), "name": props.name, "driver": "?",
                     "memory": f"{props.total_memory // 2**20} MiB",
                     "compute_cap": f"{props.major}.{props.minor}"})
    return gpus


def cpu_model() -> str:
    """The CPU's marketing name where the OS tells it, else platform's guess."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def system_info() -> dict[str, Any]:
    """Versions, CPU and GPUs: what a benchmark record or a bug report needs."""
    import av
    import torch
    from PIL import features

    import gpuvio

    return {
        "gpuvio": gpuvio.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "packages": {label: gpuvio.__version__ if label == "gpuvio" else _dist_version(dist)
                     for label, dist in PACKAGES},
        "torch_cuda": torch.version.cuda,
        "ffmpeg": getattr(av, "ffmpeg_version_info", None),
        "libjpeg_turbo": features.version("libjpeg_turbo") if features.check_feature("libjpeg_turbo")
        else None,
        "pillow_avif": features.version("avif") if features.check("avif") else None,
        "gpus": _nvidia_smi() or _torch_gpus(),
    }
