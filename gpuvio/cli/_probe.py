"""``gpuvio probe``: describe a video or image file without decoding it (and :func:`probe_file`)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ._common import CliError, Formatter, size

__all__ = ["add_parser", "probe_file", "run"]


def add_parser(sub: Any) -> None:
    """Add the ``probe`` command to the subparsers ``sub``."""
    probe = sub.add_parser(
        "probe", formatter_class=Formatter,
        help="describe a video or image file: streams, codec, size, colour tags, fps, frames",
        description=("Describe FILE without decoding it: container, duration and bit rate; per stream the\n"
                     "codec, resolution, pixel format, colour tags (space, primaries, transfer, range), fps,\n"
                     "frame count, and the audio layout. Images: format, size, mode, subsampling."))
    probe.add_argument("file", metavar="FILE", help="a video (mp4, mkv, avi, webm...) or image (jpeg, png, gif, webp, avif, heic)")
    probe.add_argument("--json", action="store_true", help="print JSON instead of a table")
    probe.set_defaults(func=run)


# FFmpeg's enum numbers (AVColorSpace, AVColorPrimaries, AVColorTransferCharacteristic,
# AVColorRange) -> the names ffprobe prints. PyAV hands out the numbers.
_COLORSPACE = {0: "gbr", 1: "bt709", 2: "unknown", 4: "fcc", 5: "bt470bg", 6: "smpte170m",
               7: "smpte240m", 8: "ycgco", 9: "bt2020nc", 10: "bt2020c", 14: "ictcp"}
_PRIMARIES = {1: "bt709", 2: "unknown", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
              8: "film", 9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432"}
_TRC = {1: "bt709", 2: "unknown", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m",
        8: "linear", 13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084",
        18: "arib-std-b67"}
_RANGE = {0: "unknown", 1: "tv (limited)", 2: "pc (full)"}


def _enum_name(table: dict[int, str], value: Any) -> str:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return str(value)
    return table.get(number, str(number))


def _probe_heic(path: Path) -> dict[str, Any]:
    try:
        import pillow_heif
    except ImportError:
        raise ImportError("reading HEIC needs pillow-heif: pip install 'gpuvio[heic]'") from None
    heif = pillow_heif.open_heif(path, convert_hdr_to_8bit=False)
    return {"file": str(path), "kind": "image", "format": "heic", "size_bytes": path.stat().st_size,
            "width": heif.size[0], "height": heif.size[1], "mode": heif.mode, "frames": len(heif),
            "bit_depth": heif.info.get("bit_depth", 8)}


def _probe_image(path: Path, fmt: str) -> dict[str, Any]:
    from PIL import Image

    if fmt == "heic":
        return _probe_heic(path)
    with Image.open(path) as im:
        info: dict[str, Any] = {
            "file": str(path), "kind": "image", "format": fmt, "size_bytes": path.stat().st_size,
            "width": im.width, "height": im.height, "mode": im.mode,
            "frames": getattr(im, "n_frames", 1),
        }
        if fmt == "jpeg":
            from .._jpeg import read_frame  # the one JPEG marker walker

            frame = read_frame(path.read_bytes())
            if frame is not None:
                if frame.chroma_subsampling is not None:
                    info["chroma_subsampling"] = frame.chroma_subsampling
                info["progressive"] = frame.progressive
        if fmt == "png":
            info["bit_depth"] = 16 if im.mode.startswith("I;16") or im.mode == "I" else 8
            info["interlaced"] = bool(im.info.get("interlace"))
        orientation = im.getexif().get(0x0112)
        if orientation:
            info["exif_orientation"] = orientation
    return info


def probe_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A description of a media file: container, every stream, and for images the basics.

    Raises :class:`CliError` when the file is missing or neither FFmpeg nor the image sniffer
    can read it.
    """
    import av

    from .._formats import sniff_image_format

    path = Path(path)
    if not path.exists():
        raise CliError(f"{path}: no such file")
    if path.is_dir():
        raise CliError(f"{path}: is a directory, expected a media file")
    with open(path, "rb") as f:
        head = f.read(64)
    fmt = sniff_image_format(head)
    if fmt is not None:
        try:
            return _probe_image(path, fmt)
        except Exception as exc:  # noqa: BLE001
            raise CliError(f"{path}: looks like {fmt} but cannot be read: {exc}") from None
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise CliError(f"{path}: not a readable media file ({exc})") from None
    with container:
        streams = []
        counted = _count_packets(container) if any(
            s.type in ("video", "audio") and not s.frames for s in container.streams) else {}
        for s in container.streams:
            cc = s.codec_context
            entry: dict[str, Any] = {
                "index": s.index, "type": s.type, "codec": cc.name if cc is not None else None,
                "time_base": str(s.time_base) if s.time_base else None,
                "start_time_s": float(s.start_time * s.time_base) if s.start_time is not None
                and s.time_base else None,
                "duration_s": float(s.duration * s.time_base) if s.duration and s.time_base else None,
                "bit_rate": s.bit_rate or None,
                "language": s.language,
            }
            if s.type == "video" and cc is not None:
                rate = s.average_rate or s.guessed_rate
                entry.update({
                    "profile": cc.profile, "width": cc.width, "height": cc.height,
                    "pix_fmt": cc.pix_fmt,
                    "color_space": _enum_name(_COLORSPACE, cc.colorspace),
                    "color_primaries": _enum_name(_PRIMARIES, cc.color_primaries),
                    "color_transfer": _enum_name(_TRC, cc.color_trc),
                    "color_range": _enum_name(_RANGE, cc.color_range),
                    "fps": float(rate) if rate else None,
                    "frames": s.frames or counted.get(s.index),
                })
            elif s.type == "audio" and cc is not None:
                entry.update({
                    "sample_rate": cc.sample_rate, "channels": cc.channels,
                    "layout": cc.layout.name if cc.layout else None,
                    "sample_format": cc.format.name if cc.format else None,
                    "frames": s.frames or counted.get(s.index),
                })
            streams.append(entry)
        return {
            "file": str(path), "kind": "container", "format": container.format.name,
            "size_bytes": path.stat().st_size,
            "duration_s": container.duration / 1_000_000 if container.duration else None,
            "bit_rate": container.bit_rate or None,
            "streams": streams,
        }


def _count_packets(container: Any) -> dict[int, int]:
    """Packets per stream, by demuxing only (no decoding), for containers that do not say."""
    counts: dict[int, int] = {}
    try:
        for packet in container.demux():
            if packet.size:
                counts[packet.stream.index] = counts.get(packet.stream.index, 0) + 1
        container.seek(0)
    except Exception:  # noqa: BLE001, S110 -- a damaged tail: report what was counted
        pass
    return counts


def _print_probe(info: dict[str, Any]) -> None:
    print(f"{info['file']}: {info['format']}, {size(info['size_bytes'])}")
    if info["kind"] == "image":
        for key, value in info.items():
            if key not in ("file", "format", "size_bytes", "kind"):
                print(f"  {key:<20} {value}")
        return
    duration = f"{info['duration_s']:.3f} s" if info["duration_s"] else "unknown"
    rate = f"{info['bit_rate'] / 1000:.0f} kbit/s" if info["bit_rate"] else "unknown"
    print(f"  duration {duration}, bit rate {rate}, {len(info['streams'])} stream(s)")
    for s in info["streams"]:
        head = f"  #{s['index']} {s['type']:<8} {s['codec'] or '?'}"
        if s["type"] == "video":
            fps = f"{s['fps']:.3f}".rstrip("0").rstrip(".") if s["fps"] else "?"
            print(f"{head} ({s['profile']}) {s['width']}x{s['height']} {s['pix_fmt']}, {fps} fps, "
                  f"{s['frames']} frames")
            print(f"      colour: space {s['color_space']}, primaries {s['color_primaries']}, "
                  f"transfer {s['color_transfer']}, range {s['color_range']}")
        elif s["type"] == "audio":
            print(f"{head} {s['sample_rate']} Hz, {s['channels']} ch ({s['layout']}), "
                  f"{s['sample_format']}, {s['frames']} frames")
        else:
            print(head)
        extra = []
        if s["duration_s"] is not None:
            extra.append(f"duration {s['duration_s']:.3f} s")
        if s["start_time_s"]:
            extra.append(f"starts at {s['start_time_s']:.3f} s")
        if s["bit_rate"]:
            extra.append(f"{s['bit_rate'] / 1000:.0f} kbit/s")
        if s["language"]:
            extra.append(f"language {s['language']}")
        if extra:
            print("      " + ", ".join(extra))


def run(args: argparse.Namespace) -> int:
    """``gpuvio probe FILE [--json]``."""
    info = probe_file(args.file)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_probe(info)
    return 0
