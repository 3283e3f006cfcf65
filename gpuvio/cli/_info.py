"""``gpuvio info``: versions, devices, and every backend with whether it can run here.

The environment facts come from :mod:`gpuvio._env`; whether NVDEC can run comes from the
backend registry (:func:`gpuvio.backends`, whose ``nvdec`` entry is
:func:`gpuvio._backends._cuda.nvdec_probe`), and the libnvcuvid line from the look-up that probe
makes, so this report and the dispatcher always agree.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import Formatter

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Add the ``info`` command to the subparsers ``sub``."""
    info = sub.add_parser(
        "info", formatter_class=Formatter,
        help="versions, devices and every backend with whether it can run here",
        description=("Print the versions of gpuvio and the libraries it can use, the CPU and GPUs, whether\n"
                     "libnvcuvid (NVDEC's driver library) is found, and each backend: usable, or why not."))
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=run)


def _nvdec_state(backends: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """(why NVDEC cannot run or None, why libnvcuvid is not found or None), from the registry's probe."""
    from .._backends._cuda import libnvcuvid_reason, nvdec_probe

    entry = next((b for b in backends if b["name"] == "nvdec"), None)
    # the registry's entry when it has one (the same probe, already asked); else the probe itself
    nvdec = (None if entry["usable"] else entry["reason"]) if entry is not None else nvdec_probe()
    return nvdec, libnvcuvid_reason()


def run(args: argparse.Namespace) -> int:
    """``gpuvio info [--json]``."""
    import gpuvio

    from .._dispatch import cuda_unavailable_reason
    from .._env import system_info

    sysinfo = system_info()
    cuda_reason = cuda_unavailable_reason()
    backends = [{"name": b.name, "device": b.device_type, "usable": b.usable, "reason": b.reason,
                 "operations": sorted(b.operations), "description": b.description}
                for b in gpuvio.backends()]
    nvdec, nvcuvid = _nvdec_state(backends)
    if args.json:
        print(json.dumps({**sysinfo, "cuda_usable": cuda_reason is None, "cuda_reason": cuda_reason,
                          "libnvcuvid": nvcuvid is None, "libnvcuvid_reason": nvcuvid,
                          "nvdec_usable": nvdec is None, "nvdec_reason": nvdec,
                          "backends": backends}, indent=2))
        return 0
    print(f"gpuvio {sysinfo['gpuvio']} on Python {sysinfo['python']}, {sysinfo['platform']}")
    print(f"CPU: {sysinfo['cpu']}, {sysinfo['cpu_cores']} cores "
          f"({sysinfo['cpu_affinity']} usable by this process, torch uses {sysinfo['torch_threads']})")
    print("\nPackages:")
    for label, ver in sysinfo["packages"].items():
        print(f"  {label:<16} {ver or 'not installed'}{_package_note(label, ver, sysinfo)}")
    print("\nDevices:")
    print("  cpu              usable")
    for gpu in sysinfo["gpus"]:
        print(f"  cuda:{gpu['index']:<11} {gpu['name']}, {gpu['memory']}, compute {gpu['compute_cap']}, "
              f"driver {gpu['driver']}")
    state = "usable" if cuda_reason is None else f"not usable: {cuda_reason}"
    print(f"  CUDA from torch  {state}")
    print(f"  libnvcuvid       {'found' if nvcuvid is None else f'not found: {nvcuvid}'}")
    print(f"  NVDEC            {'usable' if nvdec is None else f'not usable: {nvdec}'}")
    print("\nBackends (in order of preference for a device):")
    for b in backends:
        state = "usable" if b["usable"] else f"not usable: {b['reason']}"
        print(f"  {b['name']:<11} {b['device']:<5} {state}")
        print(f"              {b['description']}; serves {', '.join(b['operations'])}")
    return 0


def _package_note(label: str, version: str | None, sysinfo: dict[str, Any]) -> str:
    """The parenthesis after a package's version: what it was built with, or how to install it."""
    if label == "torch" and version:
        return f" (CUDA {sysinfo['torch_cuda']})" if sysinfo["torch_cuda"] else " (CPU-only build)"
    if label == "av (PyAV)" and version:
        return f" (FFmpeg {sysinfo['ffmpeg']})"
    if label == "Pillow" and version:
        libs = [f"libjpeg-turbo {sysinfo['libjpeg_turbo']}" if sysinfo["libjpeg_turbo"] else None,
                f"libavif {sysinfo['pillow_avif']}" if sysinfo.get("pillow_avif") else "no AVIF"]
        return f" ({', '.join(lib for lib in libs if lib)})"
    if label == "pillow-heif" and not version:
        return " (HEIC decoding: pip install 'gpuvio[heic]')"
    return ""
