"""Shared fixtures: the real media in ../shared/media, generated clips, and the cuda marker.

Tests marked ``cuda`` run only where an NVIDIA GPU and torch's CUDA build are present; they are
skipped here, centrally, with the reason. ``@pytest.mark.cuda("nvdec")`` (or ``"nvimgcodec"``)
also needs that GPU backend usable, as ``gpuvio.backends()`` reports it: the device check runs
the video and image halves with only their own libraries installed. Use ``DEVICES`` to run a test
on the CPU and the GPU.

Without ``../shared/media`` (a clean clone, CI), the ``media`` fixture gives each shared file's
generated stand-in (tests/_media_stand_ins.py) instead; only tests of files that have none skip.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("GPUVIO_MEDIA", REPO.parent / "shared" / "media"))

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
# the same, where the GPU run also needs that half's backend (the device check installs the video
# and image libraries separately, and device="cuda" without a usable GPU backend is an error)
VIDEO_DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda("nvdec"))]
IMAGE_DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda("nvimgcodec"))]
GPU_PIXEL_TOLERANCE = 2  # max abs difference of GPU video frames from the CPU's (color="torchvision")
GPU_JPEG_MEAN_TOLERANCE = 1.0  # mean abs difference of nvJPEG's pixels from libjpeg's


def assert_pixels(got: torch.Tensor, want: Any, device: str, *, kind: str = "video", msg: str = "") -> None:
    """``got``, returned on ``device``, equals the CPU reference ``want`` (a tensor or ndarray).

    On the CPU the pixels must be equal. On a GPU they are compared on the CPU: ``kind="video"``
    within :data:`GPU_PIXEL_TOLERANCE` (the GPU's own YUV conversion may round differently; also
    for AVIF/HEIC, which a GPU video decoder could decode),
    ``"jpeg"`` within :data:`GPU_JPEG_MEAN_TOLERANCE` on average (another IDCT and upsampling),
    ``"lossless"`` (PNG, GIF, WebP, ...) equal.
    """
    import numpy as np

    assert kind in ("video", "jpeg", "lossless"), kind
    assert got.device.type == torch.device(device).type, f"{msg}: on {got.device}, asked for {device}"
    if not isinstance(want, torch.Tensor):
        want = torch.from_numpy(np.ascontiguousarray(want))
    got = got.cpu()
    assert got.dtype == want.dtype and got.shape == want.shape, f"{msg}: {got.dtype} {tuple(got.shape)} " \
                                                                f"!= {want.dtype} {tuple(want.shape)}"
    if torch.equal(got, want):
        return
    diff = (got.int() - want.int()).abs()
    worst, mean = int(diff.max()), float(diff.float().mean())
    where = f"{msg}: max abs difference {worst}, mean {mean:.3f} on {device}"
    assert device != "cpu" and kind != "lossless", where
    if kind == "video":
        assert worst <= GPU_PIXEL_TOLERANCE, where
    else:
        assert mean < GPU_JPEG_MEAN_TOLERANCE, where


def torchvision_info(info: dict[str, Any], device: str) -> dict[str, Any]:
    """read_video's ``info`` as torchvision has it: on the CPU all of it; a GPU backend's also
    says who decoded (``backend``, ``fallback``, ``fallback_reason``), which is left out here."""
    if device == "cpu":
        return info
    return {k: v for k, v in info.items() if k in ("video_fps", "audio_fps")}


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
    """A file under ../shared/media; the test is skipped with a reason when it is absent.

    For files with a generated stand-in, use the ``media`` fixture instead.
    """
    path = MEDIA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"test media {path} is not available (set GPUVIO_MEDIA to the media folder)")
    return path


_STAND_INS_USED: set[str] = set()


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``media("torchcodec", "h265_video.mp4")``: the shared file, or its generated stand-in.

    The shared file is used whenever it is there. Without it the stand-in registered for that
    path in tests/_media_stand_ins.py is written (once per session, under the same relative path
    and name, next to its side files) and returned; a file with no stand-in skips the test.
    """
    from _media_stand_ins import make

    root: list[Path] = []

    def get(*parts: str) -> Path:
        path = MEDIA.joinpath(*parts)
        if path.exists():
            return path
        if not root:
            root.append(tmp_path_factory.mktemp("stand_ins"))
        rel = "/".join(parts)
        made = make(root[0], rel)
        if made is None:
            pytest.skip(f"test media {path} is not available and has no generated stand-in "
                        "(set GPUVIO_MEDIA to the media folder)")
        _STAND_INS_USED.add(rel)
        return made

    return get


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _STAND_INS_USED:
        terminalreporter.write_line(f"{len(_STAND_INS_USED)} shared media files missing from {MEDIA} were "
                                    "replaced by their generated stand-ins (tests/_media_stand_ins.py)")


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


@pytest.fixture(scope="session")
def tiny_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny clips for the training-data tests: 30 fps with B-frames, 25 fps with audio, and one
    too short for most clips."""
    from gpuvio._samples import make_sample_video

    root = tmp_path_factory.mktemp("tiny_clips")
    return {
        "a": make_sample_video(root / "a.mp4", width=96, height=64, seconds=1.0, fps=30, gop=10, audio=False),
        "b": make_sample_video(root / "b.mp4", width=96, height=64, seconds=0.8, fps=25, gop=8, seed=1),
        "short": make_sample_video(root / "short.mp4", width=96, height=64, seconds=0.1, fps=30, audio=False),
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
