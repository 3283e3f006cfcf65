"""The benchmark's media: generated defaults (cached between runs) or a user's folder."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["MediaFile", "default_cache_dir", "default_media", "folder_media"]

_VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".ts"}
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


@dataclass(frozen=True)
class MediaFile:
    """One file to benchmark: what it is (``role`` ties it to the workloads) and how it was made."""

    path: Path
    kind: Literal["video", "image"]
    role: str  # "target_video", "video", "jpeg", "png"
    description: str
    params: dict[str, Any] = field(default_factory=dict)  # the generator's arguments
    # for a "target_video": which issue targets it carries ("720p" or "1080p"; a --quick stand-in
    # is smaller than its name says). "1080p" clips get only the read_video workload.
    target: str | None = None

    def record(self) -> dict[str, Any]:
        """The JSON description of this file (name, size, how it was generated)."""
        out = {"name": self.path.name, "kind": self.kind, "role": self.role,
               "description": self.description, "size_bytes": self.path.stat().st_size,
               "params": self.params}
        if self.target:
            out["target"] = self.target
        return out


# What `gpuvio bench` generates. The two H.264 clips carry the read_video targets (issues 2 and
# 12): ~4.5 Mbit/s at 720p and ~10 Mbit/s at 1080p (the same bits per pixel) of panning texture,
# the bitrate of ordinary web video, so that entropy decoding costs what it does on real footage;
# GOP 30 and x264's B-frames (preset veryfast: 3). --quick swaps in smaller stand-ins for a smoke
# run. Each entry: file name, kind, role, description, generator arguments, target.
_Entry = tuple[str, str, str, str, dict[str, Any], str | None]  # name, kind, role, description, params, target
_FULL: list[_Entry] = [
    ("h264_720p_10s.mp4", "video", "target_video",
     "H.264 1280x720 30 fps, 10 s, ~4.5 Mbit/s, panning texture, GOP 30, B-frames, no audio",
     {"width": 1280, "height": 720, "seconds": 10.0, "fps": 30, "bit_rate": 4_500_000, "gop": 30,
      "audio": False}, "720p"),
    ("h264_1080p_5s.mp4", "video", "target_video",
     "H.264 1920x1080 30 fps, 5 s, ~10 Mbit/s, panning texture, GOP 30, B-frames, no audio",
     {"width": 1920, "height": 1080, "seconds": 5.0, "fps": 30, "bit_rate": 10_000_000, "gop": 30,
      "audio": False}, "1080p"),
    ("jpeg_1080p.jpg", "image", "jpeg", "JPEG 1920x1080, quality 90, 4:2:0",
     {"width": 1920, "height": 1080, "quality": 90}, None),
    ("png_720p.png", "image", "png", "PNG 1280x720 RGB 8-bit", {"width": 1280, "height": 720}, None),
]
_QUICK: list[_Entry] = [
    ("h264_360p_2s.mp4", "video", "target_video",
     "H.264 640x360 30 fps, 2 s, ~1.1 Mbit/s, panning texture, GOP 30, no audio (quick stand-in for 720p)",
     {"width": 640, "height": 360, "seconds": 2.0, "fps": 30, "gop": 30, "audio": False}, "720p"),
    ("h264_540p_1s.mp4", "video", "target_video",
     "H.264 960x540 30 fps, 1 s, ~2.5 Mbit/s, panning texture, GOP 30, no audio (quick stand-in for 1080p)",
     {"width": 960, "height": 540, "seconds": 1.0, "fps": 30, "gop": 30, "audio": False}, "1080p"),
    ("jpeg_1080p.jpg", "image", "jpeg", "JPEG 1920x1080, quality 90, 4:2:0",
     {"width": 1920, "height": 1080, "quality": 90}, None),
    ("png_360p.png", "image", "png", "PNG 640x360 RGB 8-bit (quick)", {"width": 640, "height": 360}, None),
]


def default_cache_dir() -> Path:
    """``$GPUVIO_CACHE/bench-media``, else ``$XDG_CACHE_HOME/gpuvio/bench-media`` or ``~/.cache/...``."""
    base = os.environ.get("GPUVIO_CACHE")
    if base:
        return Path(base) / "bench-media"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "gpuvio" / "bench-media"


def _generator_version() -> str:
    """A hash of the sample generator's source: when it changes, cached media are remade."""
    from .. import _samples

    return hashlib.sha256(Path(_samples.__file__).read_bytes()).hexdigest()[:10]


def default_media(*, quick: bool, cache_dir: str | os.PathLike[str] | None = None,
                  log: Any = print) -> list[MediaFile]:
    """Generate (or reuse from the cache) the default media; returns them in benchmark order."""
    from .._samples import make_sample_image, make_sample_video

    root = Path(cache_dir) if cache_dir else default_cache_dir()
    root = root / _generator_version()
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for name, kind, role, description, params, target in (_QUICK if quick else _FULL):
        path = root / name
        stamp = path.with_name(path.name + ".json")
        wanted = json.dumps(params, sort_keys=True)
        if not (path.exists() and stamp.exists() and stamp.read_text() == wanted):
            log(f"generating {description} -> {path}")
            # write next to the target and rename: an interrupted run leaves no half file
            fd, tmp = tempfile.mkstemp(dir=root, suffix=path.suffix)
            os.close(fd)
            try:
                if kind == "video":
                    make_sample_video(tmp, **params)
                else:
                    make_sample_image(tmp, **params)
                os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache may be shared
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            stamp.write_text(wanted)
        out.append(MediaFile(path, kind, role, description, params, target))  # type: ignore[arg-type]
    return out


def folder_media(folder: str | os.PathLike[str]) -> list[MediaFile]:
    """The videos and JPEG/PNG images directly in ``folder`` (sorted by name)."""
    from .._formats import sniff_image_format

    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"--media {folder}: not a directory")
    out = []
    for path in sorted(root.iterdir()):
        suffix = path.suffix.lower()
        if not path.is_file():
            continue
        if suffix in _VIDEO_SUFFIXES:
            out.append(MediaFile(path, "video", "video", f"{path.name} (from --media)"))
        elif suffix in _IMAGE_SUFFIXES:
            with open(path, "rb") as f:
                fmt = sniff_image_format(f.read(32))
            if fmt in ("jpeg", "png"):
                out.append(MediaFile(path, "image", fmt, f"{path.name} (from --media)"))
    if not out:
        raise FileNotFoundError(
            f"--media {folder}: no videos ({', '.join(sorted(_VIDEO_SUFFIXES))}) or JPEG/PNG images in it")
    return out
