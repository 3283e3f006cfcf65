"""Shared fixtures: the real media in ../shared/media, generated clips, and the cuda marker.

Tests marked ``cuda`` run only where an NVIDIA GPU and torch's CUDA build are present; they are
skipped here, centrally, with the reason. ``@pytest.mark.cuda("nvdec")`` (or ``"nvimgcodec"``)
also needs that GPU backend usable, as ``gpuvio.backends()`` reports it: the device check runs
the video and image halves with only their own libraries installed. Use ``DEVICES`` to run a test
on the CPU and the GPU.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("GPUVIO_MEDIA", REPO.parent / "shared" / "media"))

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def _cuda_skip_reason() -> str | None:
    if torch.version.cuda is None:
        return f"needs CUDA; torch {torch.__version__} is a CPU-only build"
    if not torch.cuda.is_available():
        return "needs an NVIDIA GPU; none is visible"
    return None


def _backend_skip_reason(names: tuple[str, ...]) -> str | None:
    import gpuvio

    infos = {info.name: info for info in gpuvio.backends()}
    for name in names:
        info = infos.get(name)
        if info is None or not info.usable:
            return f"needs the {name} backend: {info.reason if info else 'not registered'}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = None
    for item in items:
        marker = item.get_closest_marker("cuda")
        if marker is None:
            continue
        if reason is None:
            reason = _cuda_skip_reason() or ""
        why = reason or (_backend_skip_reason(marker.args) if marker.args else None)
        if why:
            item.add_marker(pytest.mark.skip(reason=why))


def media_path(*parts: str) -> Path:
    """A file under ../shared/media; the test is skipped with a reason when it is absent."""
    path = MEDIA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"test media {path} is not available (set GPUVIO_MEDIA to the media folder)")
    return path


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small generated clips and images of realistic content (made once per test session)."""
    from gpuvio._samples import make_sample_image, make_sample_video

    root = tmp_path_factory.mktemp("generated")
    return {
        "h264": make_sample_video(root / "h264.mp4", width=320, height=240, seconds=2.0, gop=12),
        "h264_noaudio": make_sample_video(root / "h264_noaudio.mp4", width=160, height=96, seconds=1.0,
                                          audio=False),
        "mpeg4": make_sample_video(root / "mpeg4.avi", width=320, height=240, seconds=1.0,
                                   codec="mpeg4", audio=False),
        "jpeg": make_sample_image(root / "image.jpg", width=500, height=375),
        "png": make_sample_image(root / "image.png", width=300, height=200),
    }


def write_resolution_switch(path: Path, *, frames: int, pts_gap: int, shade: Callable[[int, int], int]) -> Path:
    """An MPEG-TS file of two H.264 sequences, 160x96 then 128x80 (the SPS changes mid-stream).

    Sequence ``s`` holds ``frames`` flat frames of value ``shade(s, i)`` with pts ``i + pts_gap * s``.
    """
    import av
    import numpy as np

    parts = []
    for index, (width, height) in enumerate([(160, 96), (128, 80)]):
        buf = io.BytesIO()
        with av.open(buf, "w", format="mpegts") as out:
            stream = out.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for i in range(frames):
                image = np.full((height, width, 3), shade(index, i), dtype=np.uint8)
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = i + pts_gap * index
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        parts.append(buf.getvalue())
    path.write_bytes(b"".join(parts))
    return path
