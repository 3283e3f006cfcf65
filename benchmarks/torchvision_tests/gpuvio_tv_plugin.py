"""pytest plugin: run torchvision's own io tests with ``torchvision.io`` replaced by gpuvio.

Loaded with ``pytest -p gpuvio_tv_plugin`` (``run.py`` does that), so it is imported before
torchvision's ``conftest.py`` and before any test module: every ``from torchvision.io import X``
in the upstream tests then gets gpuvio's ``X``.

What it replaces
    * ``torchvision.io.<name>`` and ``torchvision.io.image.<name>`` for every image function,
      ``read_file`` / ``write_file`` and ``ImageReadMode``;
    * the video API, which torchvision >= 0.24 no longer has: modules ``torchvision.io.video``
      (``read_video``, ``read_video_timestamps``, ``write_video``, ``_check_av_available``) and
      ``torchvision.io.video_reader`` (``VideoReader``), the same names on ``torchvision.io``,
      ``torchvision.io._HAS_CPU_VIDEO_DECODER`` / ``_HAS_VIDEO_OPT`` (True: gpuvio stands in for
      the "video_reader" backend too, so the tests torchvision gates on it run),
      ``torchvision.io._probe_video_from_file`` / ``_probe_video_from_memory`` (thin adapters over
      ``gpuvio.VideoReader.get_metadata``), and ``torchvision.set_video_backend`` /
      ``get_video_backend`` (they record the name; gpuvio decodes the same way for every name).

``torch.jit.script`` of a gpuvio function
    gpuvio is plain Python and cannot be compiled by TorchScript. By default
    (``GPUVIO_TV_JIT=eager``) ``torch.jit.script(f)`` returns ``f`` itself when ``f`` comes from
    gpuvio, so the ``scripted=True`` variants run the eager function. ``GPUVIO_TV_JIT=strict``
    leaves ``torch.jit.script`` alone (those variants then fail, and say so).

Network
    test_image's ``test_decode_gif`` downloads GIFLIB's sample GIFs (and one from Wikipedia) with
    ``requests.get``. When ``GPUVIO_TV_GIF_DIR`` names a folder, a URL whose file name (for
    example ``fire.gif``) is in it is served from there; ``run.py`` points it at GIFLIB's own
    ``pic/`` folder from its source tarball. Any other download that cannot connect makes its
    test skip ("needs network") instead of failing.

The video backend name is put back to "pyav" (torchvision's default) after each test, since
test_videoapi sets it inside its tests and test_io's expectations depend on it.
"""

from __future__ import annotations

import os
import sys
import types

import pytest
import torch
import torchvision
import torchvision.io
import torchvision.io.image

import gpuvio

# torchvision.io's image API: gpuvio's image front-end, plus the file helpers and the mode enum
IMAGE_NAMES = ("ImageReadMode", "read_file", "write_file", *gpuvio._image.__all__)

_VIDEO_BACKENDS = ("pyav", "video_reader", "cuda")
_state = {"video_backend": "pyav"}


def set_video_backend(backend: str) -> None:
    if backend not in _VIDEO_BACKENDS:
        raise ValueError(f"Invalid video backend '{backend}'. Options are 'pyav', 'video_reader' and 'cuda'")
    _state["video_backend"] = backend


def get_video_backend() -> str:
    return _state["video_backend"]


def _check_av_available() -> None:
    import av  # noqa: F401  (raises ImportError as torchvision's does)


class _ProbeResult(types.SimpleNamespace):
    """Stand-in for torchvision's VideoMetaData (the fields its tests read)."""


def _probe(src) -> _ProbeResult:
    out = _ProbeResult(has_video=False, video_duration=0.0, video_fps=0.0,
                       has_audio=False, audio_duration=0.0, audio_sample_rate=0.0)
    md = gpuvio.VideoReader(src, "video").get_metadata()
    video = md.get("video")
    if video and video.get("duration"):
        out.has_video = True
        out.video_duration = float(video["duration"][0])
        out.video_fps = float(video["fps"][0])
    audio = md.get("audio")
    if audio and audio.get("duration"):
        out.has_audio = True
        out.audio_duration = float(audio["duration"][0])
        rate = audio.get("framerate") or audio.get("sample_rate") or [0.0]
        out.audio_sample_rate = float(rate[0])
    return out


def _probe_video_from_file(filename) -> _ProbeResult:
    return _probe(filename)


def _probe_video_from_memory(video_data) -> _ProbeResult:
    if isinstance(video_data, torch.Tensor):
        video_data = bytes(video_data.numpy().tobytes())
    return _probe(video_data)


def _install() -> None:
    tio = torchvision.io
    for name in IMAGE_NAMES:
        setattr(tio, name, getattr(gpuvio, name))
        setattr(torchvision.io.image, name, getattr(gpuvio, name))

    video = types.ModuleType("torchvision.io.video", "gpuvio's video functions, installed by the harness")
    video.read_video = gpuvio.read_video
    video.read_video_timestamps = gpuvio.read_video_timestamps
    video.write_video = gpuvio.write_video
    video._check_av_available = _check_av_available
    video_reader = types.ModuleType("torchvision.io.video_reader", "gpuvio.VideoReader, installed by the harness")
    video_reader.VideoReader = gpuvio.VideoReader
    sys.modules["torchvision.io.video"] = video
    sys.modules["torchvision.io.video_reader"] = video_reader
    tio.video = video
    tio.video_reader = video_reader
    tio.read_video = gpuvio.read_video
    tio.read_video_timestamps = gpuvio.read_video_timestamps
    tio.write_video = gpuvio.write_video
    tio.VideoReader = gpuvio.VideoReader
    tio._HAS_CPU_VIDEO_DECODER = True
    tio._HAS_VIDEO_OPT = True
    tio._HAS_GPU_VIDEO_DECODER = False
    tio._probe_video_from_file = _probe_video_from_file
    tio._probe_video_from_memory = _probe_video_from_memory
    torchvision.set_video_backend = set_video_backend
    torchvision.get_video_backend = get_video_backend

    if os.environ.get("GPUVIO_TV_JIT", "eager") == "eager":
        real_script = torch.jit.script

        def script(obj, *args, **kwargs):
            if getattr(obj, "__module__", "").startswith("gpuvio"):
                return obj
            return real_script(obj, *args, **kwargs)

        torch.jit.script = script


class _LocalResponse:
    def __init__(self, content: bytes) -> None:
        self.content = content
        self.status_code = 200

    def raise_for_status(self) -> None:
        pass


def _install_offline_downloads() -> None:
    try:
        import requests
    except ImportError:
        return
    real_get = requests.get
    gif_dir = os.environ.get("GPUVIO_TV_GIF_DIR", "")

    def get(url, *args, **kwargs):
        name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        local = os.path.join(gif_dir, name) if gif_dir else ""
        if local and os.path.isfile(local):
            with open(local, "rb") as f:
                return _LocalResponse(f.read())
        kwargs.setdefault("timeout", 20)
        try:
            return real_get(url, *args, **kwargs)
        except requests.exceptions.ConnectionError as exc:
            pytest.skip(f"needs network: could not download {url} ({type(exc).__name__})")

    requests.get = get


_install()
_install_offline_downloads()


@pytest.fixture(autouse=True)
def _reset_video_backend():
    yield
    _state["video_backend"] = "pyav"


def pytest_report_header(config):
    return (f"gpuvio {gpuvio.__version__} stands in for torchvision.io (torchvision {torchvision.__version__}, "
            f"torch {torch.__version__}); GPUVIO_TV_JIT={os.environ.get('GPUVIO_TV_JIT', 'eager')}")
