"""The ``gpuvio`` command line: demo, info, probe, decode and bench.

Run ``gpuvio --help`` (or ``python -m gpuvio --help``) for the overview and
``gpuvio COMMAND --help`` for each command. Every command exits 0 on success, 1 when the work
fails (unreadable file, decoding error, missing backend) and 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

_DEVICE_HELP = ("'cpu', 'cuda', 'cuda:N' or 'auto' (the GPU when a GPU backend can run here, "
                "else the CPU)")


class CliError(Exception):
    """A failure to report on one line and exit with ``code`` (1: the work failed, 2: bad usage)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- small helpers

def _shape(t: Any) -> str:
    """``uint8 [60, 360, 640, 3]`` for a tensor (dtype without the ``torch.`` prefix)."""
    return f"{str(t.dtype).replace('torch.', '')} [{', '.join(str(s) for s in t.shape)}]"


def _size(n_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024  # type: ignore[assignment]
    return ""


def _sync(device: Any) -> None:
    """Wait for queued GPU work so that timings cover it (no-op on the CPU)."""
    if getattr(device, "type", device) == "cuda" or str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


@contextlib.contextmanager
def _timer() -> Iterator[list[float]]:
    out: list[float] = []
    start = time.perf_counter()
    yield out
    out.append(time.perf_counter() - start)


def _served_by(operation: str, device: Any) -> str:
    """Name of the backend the dispatcher picks for ``operation`` on ``device``."""
    from ._dispatch import select_backend

    backend, _ = select_backend(operation, device)  # type: ignore[arg-type]
    return backend.name


def _resolve_device(device: str, *, require: str | None = None) -> tuple[Any, str]:
    """(torch.device, note) for a user's ``--device``; the note says why 'auto' chose the CPU.

    With ``require`` (an operation), a CUDA device that no GPU backend can serve for it is refused
    here, with the dispatcher's explanation, instead of failing later in every step.
    """

    from ._dispatch import cuda_unavailable_reason, parse_device, select_backend

    try:
        parsed = parse_device(device)
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc), code=2) from None
    if parsed == "auto":
        _, target = select_backend("read_video", "auto")
        if target.type == "cpu":
            reason = cuda_unavailable_reason() or "no GPU backend is usable (see 'gpuvio info')"
            return target, f"auto -> cpu ({reason})"
        return target, f"auto -> {target}"
    if require is not None and parsed.type == "cuda":
        try:
            select_backend(require, parsed)  # type: ignore[arg-type]
        except ImportError as exc:  # BackendUnavailableError
            raise CliError(str(exc)) from None
    return parsed, str(parsed)


# --------------------------------------------------------------------------- demo

def _demo_media(root: Path, *, small: bool) -> dict[str, Path]:
    from ._samples import make_sample_image, make_sample_video

    w, h, secs = (320, 180, 1.0) if small else (640, 360, 2.0)
    return {
        "clip.mp4": make_sample_video(root / "clip.mp4", width=w, height=h, seconds=secs, gop=15),
        "clip.avi": make_sample_video(root / "clip.avi", width=w, height=h, seconds=secs / 2,
                                      codec="mpeg4", audio=False, seed=1),
        "photo.jpg": make_sample_image(root / "photo.jpg", width=w * 2, height=h * 2, quality=90),
        "graphic.png": make_sample_image(root / "graphic.png", width=w, height=h, seed=2),
    }


def _describe_file(path: Path) -> str:
    """One line about a media file, from :func:`probe_file`."""
    info = probe_file(path)
    if info["kind"] == "image":
        return f"{info['format'].upper()} {info['width']}x{info['height']} {info['mode']}"
    parts = []
    for s in info["streams"]:
        if s["type"] == "video":
            parts.append(f"{s['codec']} {s['width']}x{s['height']} {s['pix_fmt']} "
                         f"{s['fps']:g} fps {s['frames']} frames")
        elif s["type"] == "audio":
            parts.append(f"{s['codec']} {s['layout']} {s['sample_rate']} Hz")
    duration = f", {info['duration_s']:.1f} s" if info["duration_s"] else ""
    return f"{info['format'].split(',')[0]}: " + " + ".join(parts) + duration


def _cmd_demo(args: argparse.Namespace) -> int:
    import torch

    import gpuvio

    device, device_note = _resolve_device(args.device, require="read_video")
    print(f"gpuvio {gpuvio.__version__} demo: torch {torch.__version__}, device {device_note}")
    with contextlib.ExitStack() as stack:
        if args.keep:
            root = Path(args.keep)
            root.mkdir(parents=True, exist_ok=True)
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpuvio-demo-")))
        with _timer() as t:
            media = _demo_media(root, small=args.small)
        print(f"\nGenerated sample media in {root} ({t[0]:.1f} s):")
        for name, path in media.items():
            print(f"  {name:<12} {_size(path.stat().st_size):>9}  {_describe_file(path)}")
        print()
        steps: list[tuple[str, Callable[[], str]]] = [
            *_video_steps(media, device),
            *_image_steps(media, device),
        ]
        failures = 0
        for title, step in steps:
            try:
                line = step()
            except Exception as exc:  # noqa: BLE001 -- report every step, then fail at the end
                failures += 1
                line = f"FAILED: {type(exc).__name__}: {exc}"
            print(f"{title}\n    {line}")
        if args.keep:
            print(f"\nThe media stay in {root}.")
    if failures:
        print(f"\n{failures} step(s) failed.", file=sys.stderr)
        return 1
    print("\nAll steps succeeded. Next: 'gpuvio info', 'gpuvio probe FILE', 'gpuvio bench --quick'.")
    return 0


def _video_steps(media: dict[str, Path], device: Any) -> list[tuple[str, Callable[[], str]]]:
    import gpuvio

    clip, avi = media["clip.mp4"], media["clip.avi"]

    def read_all() -> str:
        with _timer() as t:
            v, a, info = gpuvio.read_video(clip, pts_unit="sec", device=device)
            _sync(device)
        return (f"vframes {_shape(v)} on {v.device}, aframes {_shape(a)}, info {info}; "
                f"{t[0] * 1000:.0f} ms ({v.shape[0] / t[0]:.0f} frames/s); "
                f"backend {_served_by('read_video', device)}")

    def read_range() -> str:
        v, _, _ = gpuvio.read_video(clip, 0.5, 1.0, pts_unit="sec", device=device)
        return f"vframes {_shape(v)}: the frames shown from 0.5 s to 1.0 s, both ends included"

    def read_avi() -> str:
        with _timer() as t:
            v, a, info = gpuvio.read_video(avi, pts_unit="sec", device=device)
            _sync(device)
        return (f"MPEG-4 Part 2 in AVI: vframes {_shape(v)}, no audio -> aframes {_shape(a)}, "
                f"info {info}; {t[0] * 1000:.0f} ms; backend {_served_by('read_video', device)}")

    def timestamps() -> str:
        pts, fps = gpuvio.read_video_timestamps(clip, pts_unit="sec")
        return (f"{len(pts)} timestamps (Fraction seconds): {pts[0]}, {pts[1]}, ... {pts[-1]}; "
                f"video_fps {fps}; backend {_served_by('read_video_timestamps', 'cpu')}")

    def reader_seek() -> str:
        with gpuvio.VideoReader(clip, device=device) as reader:
            meta = reader.get_metadata()
            at = round(meta["video"]["duration"][0] / 2, 2)
            with _timer() as t:
                frames = [next(reader.seek(at))]
                frames += [next(reader) for _ in range(4)]
                _sync(device)
            pts = ", ".join(f"{f['pts']:.3f}" for f in frames)
            fallback = f" (fell back: {reader.fallback_reason})" if reader.fallback_reason else ""
            return (f"metadata {meta}; {len(reader)} frames; seek({at}) then 5 frames: data "
                    f"{_shape(frames[0]['data'])}, pts {pts} s; {t[0] * 1000:.0f} ms; "
                    f"backend {reader.backend}{fallback}")

    def reader_batch() -> str:
        with gpuvio.VideoReader(clip, device=device) as reader:
            n = len(reader)
            indices = [0, n // 3, n // 2, n - 1, 1]
            with _timer() as t:
                batch = reader.get_frames_at(indices)
                _sync(device)
            return (f"indices {indices} -> {_shape(batch)} on {batch.device}; "
                    f"{t[0] * 1000:.0f} ms; backend {reader.backend}")

    def audio_reader() -> str:
        with gpuvio.VideoReader(clip, stream="audio") as reader:
            first = next(reader)
            return (f"first audio frame: data {_shape(first['data'])} (samples, channels), "
                    f"pts {first['pts']:.3f} s")

    return [
        ("read_video(clip.mp4, pts_unit='sec')", read_all),
        ("read_video(clip.mp4, 0.5, 1.0, pts_unit='sec')", read_range),
        ("read_video(clip.avi, pts_unit='sec')", read_avi),
        ("read_video_timestamps(clip.mp4, pts_unit='sec')", timestamps),
        ("VideoReader(clip.mp4).seek(middle), then next() x4", reader_seek),
        ("VideoReader(clip.mp4).get_frames_at([...])", reader_batch),
        ("VideoReader(clip.mp4, stream='audio')", audio_reader),
    ]


def _image_steps(media: dict[str, Path], device: Any) -> list[tuple[str, Callable[[], str]]]:
    import torch

    import gpuvio

    jpg, png = media["photo.jpg"], media["graphic.png"]

    def decode_jpeg() -> str:
        data = gpuvio.read_file(jpg)
        with _timer() as t:
            img = gpuvio.decode_image(data, device=device)
            _sync(device)
        return (f"{_size(data.numel())} of JPEG -> {_shape(img)} on {img.device}; "
                f"{t[0] * 1000:.1f} ms; backend {_served_by('decode_image', device)}")

    def decode_png() -> str:
        img = gpuvio.read_image(png, mode=gpuvio.ImageReadMode.GRAY, device=device)
        return f"mode=GRAY -> {_shape(img)} on {img.device}"

    def roundtrip_jpeg() -> str:
        img = gpuvio.decode_image(gpuvio.read_file(png), device=device)
        with _timer() as t:
            encoded = gpuvio.encode_jpeg(img, quality=90)
            _sync(device)
        back = gpuvio.decode_image(encoded.cpu()).float()
        mse = float(((back - img.cpu().float()) ** 2).mean())
        psnr = 10 * math.log10(255**2 / mse) if mse > 0 else float("inf")
        op_device = "auto" if img.device.type == "cuda" else "cpu"
        return (f"{_shape(img)} -> {_size(encoded.numel())} of JPEG in {t[0] * 1000:.1f} ms; "
                f"decoded back: PSNR {psnr:.1f} dB; backend {_served_by('encode_jpeg', op_device)}")

    def roundtrip_png() -> str:
        img = gpuvio.decode_image(gpuvio.read_file(png)).cpu()
        with _timer() as t:
            encoded = gpuvio.encode_png(img, compression_level=6)
        same = torch.equal(gpuvio.decode_image(encoded), img)
        return (f"{_shape(img)} -> {_size(encoded.numel())} of PNG in {t[0] * 1000:.1f} ms; "
                f"lossless round trip: {'identical' if same else 'DIFFERENT'}; "
                f"backend {_served_by('encode_png', 'cpu')}")

    return [
        ("decode_image(read_file('photo.jpg'))", decode_jpeg),
        ("read_image('graphic.png', mode=ImageReadMode.GRAY)", decode_png),
        ("encode_jpeg(image, quality=90)", roundtrip_jpeg),
        ("encode_png(image)", roundtrip_png),
    ]


# --------------------------------------------------------------------------- probe

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
            layers = getattr(im, "layer", None)
            if layers and len(layers) == 3:
                sampling = {(2, 2): "4:2:0", (2, 1): "4:2:2", (1, 1): "4:4:4"}
                info["chroma_subsampling"] = sampling.get(tuple(layers[0][1:3]), "other")
            info["progressive"] = bool(im.info.get("progressive") or im.info.get("progression"))
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

    from ._formats import sniff_image_format

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
    print(f"{info['file']}: {info['format']}, {_size(info['size_bytes'])}")
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


def _cmd_probe(args: argparse.Namespace) -> int:
    info = probe_file(args.file)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_probe(info)
    return 0


# --------------------------------------------------------------------------- decode

def _cmd_decode(args: argparse.Namespace) -> int:
    import torch

    import gpuvio

    info = probe_file(args.file)
    device, device_note = _resolve_device(args.device)
    out = Path(args.out) if args.out else None
    to_dir = out is not None and out.suffix.lower() != ".pt"
    if args.start is not None and args.end is not None and args.end < args.start:
        raise CliError(f"--end ({args.end}) must not be before --start ({args.start})", code=2)
    if info["kind"] == "image":
        if args.start is not None or args.end is not None:
            raise CliError("--start/--end apply to videos; this file is an image", code=2)
        with _timer() as t:
            image = gpuvio.read_image(args.file, mode=args.mode, device=device)
            _sync(device)
        print(f"decoded {args.file}: {_shape(image)} on {image.device} in {t[0] * 1000:.1f} ms "
              f"(device {device_note}, backend {_served_by('decode_image', device)})")
        if out is not None and to_dir:
            frames = image.cpu() if image.dim() == 4 else image.cpu()[None]  # an animated GIF has N frames
            if image.dtype != torch.uint8 or frames.shape[1] not in (1, 3):
                raise CliError(f"{_shape(image)} cannot be written as PNG files (encode_png takes uint8 "
                               f"with 1 or 3 channels); use --out FILE.pt", code=2)
            out.mkdir(parents=True, exist_ok=True)
            stem = Path(args.file).stem
            names = [f"{stem}.png"] if len(frames) == 1 else [f"{stem}_{i:04d}.png" for i in range(len(frames))]
            for frame, name in zip(frames, names):
                gpuvio.write_png(frame, str(out / name))
            print(f"wrote {len(names)} PNG file(s) to {out}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}")
        elif out is not None:
            torch.save(image.cpu(), out)
            print(f"wrote {out}: torch.load() gives the {_shape(image)} tensor")
        return 0
    if args.mode != "UNCHANGED":
        raise CliError("--mode applies to images; videos always decode to RGB", code=2)
    if not any(s["type"] == "video" for s in info["streams"]):
        raise CliError(f"{args.file}: has no video stream")
    if to_dir:
        return _decode_video_to_dir(args, out, device, device_note)  # type: ignore[arg-type]
    start = 0.0 if args.start is None else args.start
    end = args.end
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _timer() as t:
            vframes, aframes, vinfo = gpuvio.read_video(args.file, start, end, pts_unit="sec",
                                                        device=device)
            _sync(device)
    problems = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    if vframes.shape[0] == 0:
        detail = f": {problems[0]}" if problems else ""
        raise CliError(f"{args.file}: no frames decoded between {start} s and {end} s{detail}")
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    print(f"decoded {args.file} [{start} s .. {'end' if end is None else f'{end} s'}]: "
          f"vframes {_shape(vframes)} on {vframes.device}, aframes {_shape(aframes)}, info {vinfo} "
          f"in {t[0]:.2f} s ({vframes.shape[0] / t[0]:.0f} frames/s; device {device_note}, "
          f"backend {_served_by('read_video', device)})")
    if out is not None:
        torch.save({"vframes": vframes.cpu(), "aframes": aframes, "info": vinfo}, out)
        print(f"wrote {out}: torch.load() gives a dict with 'vframes' (T, H, W, C), "
              f"'aframes' (K, L) and 'info'")
    return 0


def _decode_video_to_dir(args: argparse.Namespace, out: Path, device: Any, device_note: str) -> int:
    """Stream frames to numbered PNGs without holding the whole clip in memory."""
    import gpuvio

    out.mkdir(parents=True, exist_ok=True)
    start = 0.0 if args.start is None else args.start
    end = math.inf if args.end is None else args.end
    written = 0
    bar = _progress(desc="frames", unit="frame")
    with _timer() as t, gpuvio.VideoReader(args.file, device=device) as reader:
        for frame in reader.seek(start):
            if frame["pts"] > end:
                break
            gpuvio.write_png(frame["data"].cpu(), str(out / f"frame_{written:06d}.png"),
                             compression_level=1)
            written += 1
            bar.update(1)
        backend = reader.backend
    bar.close()
    if written == 0:
        raise CliError(f"{args.file}: no frames between {start} s and {end} s")
    print(f"wrote {written} frames to {out}/frame_NNNNNN.png in {t[0]:.2f} s "
          f"(device {device_note}, backend {backend})")
    return 0


class _PlainProgress:
    """What :func:`_progress` returns without tqdm: counts silently, prints nothing per step."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(**kwargs: Any) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainProgress()
    return tqdm(file=sys.stderr, leave=False, disable=not sys.stderr.isatty(), **kwargs)


# --------------------------------------------------------------------------- info

_PACKAGES = [
    ("gpuvio", "gpuvio"), ("torch", "torch"), ("av (PyAV)", "av"), ("Pillow", "pillow"),
    ("numpy", "numpy"), ("pillow-heif", "pillow-heif"), ("PyNvVideoCodec", "PyNvVideoCodec"),
    ("nvImageCodec", "nvidia-nvimgcodec-cu13|nvidia-nvimgcodec-cu12"),
    ("DALI", "nvidia-dali-cuda130|nvidia-dali-cuda120|nvidia-dali-cuda110"),
    ("cupy", "cupy-cuda13x|cupy-cuda12x"), ("torchvision", "torchvision"),
    ("torchcodec", "torchcodec"), ("tqdm", "tqdm"), ("matplotlib", "matplotlib"),
]


def _dist_version(names: str) -> str | None:
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


def nvcuvid_status() -> str | None:
    """None when the NVDEC driver library ``libnvcuvid`` loads, else why not.

    It ships with the NVIDIA driver; containers get it only with the ``video`` driver capability.
    """
    import ctypes

    errors = []
    for name in ("libnvcuvid.so.1", "libnvcuvid.so", "nvcuvid.dll"):
        try:
            ctypes.CDLL(name)
            return None
        except OSError as exc:
            errors.append(str(exc))
    return "; ".join(errors[:1]) or "not found"


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
                     for label, dist in _PACKAGES},
        "torch_cuda": torch.version.cuda,
        "ffmpeg": getattr(av, "ffmpeg_version_info", None),
        "libjpeg_turbo": features.version("libjpeg_turbo") if features.check_feature("libjpeg_turbo")
        else None,
        "pillow_avif": features.version("avif") if features.check("avif") else None,
        "gpus": _nvidia_smi() or _torch_gpus(),
    }


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


def _cmd_info(args: argparse.Namespace) -> int:
    import gpuvio

    from ._dispatch import cuda_unavailable_reason

    sysinfo = system_info()
    cuda_reason = cuda_unavailable_reason()
    nvcuvid = nvcuvid_status() if sysinfo["gpus"] or cuda_reason is None else "no NVIDIA driver"
    backends = [{"name": b.name, "device": b.device_type, "usable": b.usable, "reason": b.reason,
                 "operations": sorted(b.operations), "description": b.description}
                for b in gpuvio.backends()]
    if args.json:
        print(json.dumps({**sysinfo, "cuda_usable": cuda_reason is None, "cuda_reason": cuda_reason,
                          "libnvcuvid": nvcuvid is None, "libnvcuvid_reason": nvcuvid,
                          "backends": backends}, indent=2))
        return 0
    print(f"gpuvio {sysinfo['gpuvio']} on Python {sysinfo['python']}, {sysinfo['platform']}")
    print(f"CPU: {sysinfo['cpu']}, {sysinfo['cpu_cores']} cores "
          f"({sysinfo['cpu_affinity']} usable by this process, torch uses {sysinfo['torch_threads']})")
    print("\nPackages:")
    for label, ver in sysinfo["packages"].items():
        extra = ""
        if label == "torch" and ver:
            extra = f" (CUDA {sysinfo['torch_cuda']})" if sysinfo["torch_cuda"] else " (CPU-only build)"
        if label == "av (PyAV)" and ver:
            extra = f" (FFmpeg {sysinfo['ffmpeg']})"
        if label == "Pillow" and ver:
            libs = [f"libjpeg-turbo {sysinfo['libjpeg_turbo']}" if sysinfo["libjpeg_turbo"] else None,
                    f"libavif {sysinfo['pillow_avif']}" if sysinfo.get("pillow_avif") else "no AVIF"]
            extra = f" ({', '.join(lib for lib in libs if lib)})"
        if label == "pillow-heif" and not ver:
            extra = " (HEIC decoding: pip install 'gpuvio[heic]')"
        print(f"  {label:<16} {ver or 'not installed'}{extra}")
    print("\nDevices:")
    print("  cpu              usable")
    if sysinfo["gpus"]:
        for gpu in sysinfo["gpus"]:
            print(f"  cuda:{gpu['index']:<11} {gpu['name']}, {gpu['memory']}, compute {gpu['compute_cap']}, "
                  f"driver {gpu['driver']}")
    state = "usable" if cuda_reason is None else f"not usable: {cuda_reason}"
    print(f"  CUDA from torch  {state}")
    print(f"  libnvcuvid       {'loads' if nvcuvid is None else f'not loadable: {nvcuvid}'}")
    print("\nBackends (in order of preference for a device):")
    for b in backends:
        state = "usable" if b["usable"] else f"not usable: {b['reason']}"
        print(f"  {b['name']:<11} {b['device']:<5} {state}")
        print(f"              {b['description']}; serves {', '.join(b['operations'])}")
    return 0


# --------------------------------------------------------------------------- bench

def _cmd_bench(args: argparse.Namespace) -> int:
    from ._bench import run_from_cli

    return run_from_cli(args)


# --------------------------------------------------------------------------- parser

class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of descriptions and examples; defaults are written in each help."""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``gpuvio`` argument parser (exposed for the tests and for documentation tools)."""
    parser = argparse.ArgumentParser(
        prog="gpuvio",
        formatter_class=_Formatter,
        description=(
            "gpuvio: torchvision.io's API (read_video, VideoReader, decode_image, encode_jpeg...)\n"
            "decoding on NVIDIA GPUs (NVDEC, nvJPEG) when asked, with a PyAV/Pillow CPU twin.\n\n"
            "Start with 'gpuvio demo': it generates small sample clips and images and decodes them."),
        epilog=(
            "examples:\n"
            "  gpuvio demo                         decode generated samples, print what happened\n"
            "  gpuvio info                         versions, GPUs, which backends can run here\n"
            "  gpuvio probe clip.mp4               streams, codecs, colour tags, frame counts\n"
            "  gpuvio decode clip.mp4 --start 2 --end 3 --out frames.pt\n"
            "  gpuvio bench --quick --json out.json\n\n"
            "exit status: 0 success, 1 the work failed (unreadable file, missing backend), 2 bad arguments"),
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"gpuvio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser(
        "demo", formatter_class=_Formatter,
        help="generate sample media, decode it with every API, print what happened",
        description=(
            "Generate small sample media (an H.264 + AAC clip, an MPEG-4 AVI, a JPEG, a PNG) in a\n"
            "temporary folder, then run read_video, read_video_timestamps, VideoReader (seek,\n"
            "get_frames_at, audio), decode_image, encode_jpeg and encode_png on them, printing\n"
            "shapes, dtypes, timings and which backend served each call. Nothing is downloaded."))
    demo.add_argument("--device", default="auto", help=f"where to decode: {_DEVICE_HELP}; default auto")
    demo.add_argument("--small", action="store_true", help="use tiny media (320x180, 1 s) for a quicker run")
    demo.add_argument("--keep", metavar="DIR", help="write the media to DIR and keep them, to try other commands on")
    demo.set_defaults(func=_cmd_demo)

    info = sub.add_parser(
        "info", formatter_class=_Formatter,
        help="versions, devices and every backend with whether it can run here",
        description=("Print the versions of gpuvio and the libraries it can use, the CPU and GPUs, whether\n"
                     "libnvcuvid (NVDEC's driver library) loads, and each backend: usable, or why not."))
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=_cmd_info)

    probe = sub.add_parser(
        "probe", formatter_class=_Formatter,
        help="describe a video or image file: streams, codec, size, colour tags, fps, frames",
        description=("Describe FILE without decoding it: container, duration and bit rate; per stream the\n"
                     "codec, resolution, pixel format, colour tags (space, primaries, transfer, range), fps,\n"
                     "frame count, and the audio layout. Images: format, size, mode, subsampling."))
    probe.add_argument("file", metavar="FILE", help="a video (mp4, mkv, avi, webm...) or image (jpeg, png, gif, webp, avif, heic)")
    probe.add_argument("--json", action="store_true", help="print JSON instead of a table")
    probe.set_defaults(func=_cmd_probe)

    decode = sub.add_parser(
        "decode", formatter_class=_Formatter,
        help="decode a video or image and optionally save the frames",
        description=(
            "Decode FILE with read_video (videos; times in seconds) or read_image (images) and print\n"
            "what was decoded. --out frames.pt saves with torch.save: for a video a dict with\n"
            "'vframes' Tensor[T, H, W, 3] uint8, 'aframes' Tensor[K, L] float32 and 'info'; for an\n"
            "image the Tensor[C, H, W]. --out DIR writes PNG files instead (a video is streamed\n"
            "frame by frame through VideoReader, so long clips do not have to fit in memory)."),
        epilog="example:\n  gpuvio decode clip.mp4 --device auto --start 1.5 --end 2 --out frames.pt")
    decode.add_argument("file", metavar="FILE", help="the video or image to decode")
    decode.add_argument("--device", default="cpu", help=f"where to decode: {_DEVICE_HELP}; default cpu")
    decode.add_argument("--start", type=_positive_float, metavar="SEC",
                        help="first time to decode, in seconds (default: the beginning)")
    decode.add_argument("--end", type=_positive_float, metavar="SEC",
                        help="last time to decode, in seconds, inclusive (default: the end)")
    decode.add_argument("--mode", default="UNCHANGED",
                        choices=["UNCHANGED", "GRAY", "GRAY_ALPHA", "RGB", "RGB_ALPHA"],
                        help="images only: the channels to decode to (ImageReadMode); default UNCHANGED")
    decode.add_argument("--out", metavar="frames.pt|DIR",
                        help="save the result: a path ending in .pt, or a folder for PNG files")
    decode.set_defaults(func=_cmd_decode)

    from ._bench import add_bench_arguments

    bench = sub.add_parser(
        "bench", formatter_class=_Formatter,
        help="measure gpuvio against PyAV, torchvision, torchcodec, Pillow... side by side",
        description=(
            "Benchmark gpuvio and every installed peer doing the same work in this process: raw PyAV,\n"
            "torchvision 0.8's read_video algorithm, torchvision.io image codecs, torchcodec, Pillow,\n"
            "and the raw NVIDIA libraries on a GPU. With no --media it generates its default media\n"
            "(a 10 s 720p H.264 clip at ~4.5 Mbit/s, a 1080p JPEG...) once into a cache folder.\n"
            "Each measurement is warmed up, then repeated with the peers interleaved; the median is\n"
            "reported as throughput and as gpuvio's speed-up over each peer (above 1: gpuvio is\n"
            "faster). Timings from a busy machine are only indicative: the run warns when it is."),
        epilog=("examples:\n"
                "  gpuvio bench --quick                      a smoke run (a minute or two on 2 cores)\n"
                "  gpuvio bench --json results.json --plot results.png\n"
                "  gpuvio bench --device cuda --media ~/clips"))
    add_bench_arguments(bench)
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gpuvio`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from ._errors import GpuvioError

    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"gpuvio {args.command}: error: {exc}", file=sys.stderr)
        return exc.code
    except (GpuvioError, OSError, RuntimeError, ValueError, TypeError) as exc:
        print(f"gpuvio {args.command}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"gpuvio {args.command}: interrupted", file=sys.stderr)
        return 130
