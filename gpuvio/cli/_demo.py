"""``gpuvio demo``: generate sample media, run every API on it, print what happened."""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._bench._timing import timer
from ._common import DEVICE_HELP, Formatter, resolve_device, served_by, shape, size
from ._probe import probe_file

__all__ = ["add_parser", "run"]

Step = tuple[str, Callable[[], str]]


def add_parser(sub: Any) -> None:
    """Add the ``demo`` command to the subparsers ``sub``."""
    demo = sub.add_parser(
        "demo", formatter_class=Formatter,
        help="generate sample media, decode it with every API, print what happened",
        description=(
            "Generate small sample media (an H.264 + AAC clip, an MPEG-4 AVI, a JPEG, a PNG) in a\n"
            "temporary folder, then run read_video, read_video_timestamps, VideoReader (seek,\n"
            "get_frames_at, audio), decode_image, encode_jpeg and encode_png on them, printing\n"
            "shapes, dtypes, timings and which backend served each call. Nothing is downloaded."))
    demo.add_argument("--device", default="auto", help=f"where to decode: {DEVICE_HELP}; default auto")
    demo.add_argument("--small", action="store_true", help="use tiny media (320x180, 1 s) for a quicker run")
    demo.add_argument("--keep", metavar="DIR", help="write the media to DIR and keep them, to try other commands on")
    demo.set_defaults(func=run)


def _demo_media(root: Path, *, small: bool) -> dict[str, Path]:
    from .._samples import make_sample_image, make_sample_video

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


def run(args: argparse.Namespace) -> int:
    """``gpuvio demo``: every step is run and reported; exit status 1 if any failed."""
    import torch

    import gpuvio

    device, device_note = resolve_device(args.device, require="read_video")
    print(f"gpuvio {gpuvio.__version__} demo: torch {torch.__version__}, device {device_note}")
    with contextlib.ExitStack() as stack:
        if args.keep:
            root = Path(args.keep)
            root.mkdir(parents=True, exist_ok=True)
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpuvio-demo-")))
        with timer() as t:
            media = _demo_media(root, small=args.small)
        print(f"\nGenerated sample media in {root} ({t[0]:.1f} s):")
        for name, path in media.items():
            print(f"  {name:<12} {size(path.stat().st_size):>9}  {_describe_file(path)}")
        print()
        steps = [*_video_steps(media, device), *_image_steps(media, device)]
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


def _video_steps(media: dict[str, Path], device: Any) -> list[Step]:
    import gpuvio

    clip, avi = media["clip.mp4"], media["clip.avi"]

    def read_all() -> str:
        with timer(device) as t:
            v, a, info = gpuvio.read_video(clip, pts_unit="sec", device=device)
        return (f"vframes {shape(v)} on {v.device}, aframes {shape(a)}, info {info}; "
                f"{t[0] * 1000:.0f} ms ({v.shape[0] / t[0]:.0f} frames/s); "
                f"backend {served_by('read_video', device)}")

    def read_range() -> str:
        v, _, _ = gpuvio.read_video(clip, 0.5, 1.0, pts_unit="sec", device=device)
        return f"vframes {shape(v)}: the frames shown from 0.5 s to 1.0 s, both ends included"

    def read_avi() -> str:
        with timer(device) as t:
            v, a, info = gpuvio.read_video(avi, pts_unit="sec", device=device)
        return (f"MPEG-4 Part 2 in AVI: vframes {shape(v)}, no audio -> aframes {shape(a)}, "
                f"info {info}; {t[0] * 1000:.0f} ms; backend {served_by('read_video', device)}")

    def read_resized() -> str:
        from gpuvio.transforms import CenterCrop, Resize, apply

        steps = [Resize(128), CenterCrop(112)]
        with timer(device) as t:
            v, _, _ = gpuvio.read_video(clip, pts_unit="sec", device=device, transforms=steps)
        full, _, _ = gpuvio.read_video(clip, pts_unit="sec", device=device)
        diff = (v.float() - apply(full, steps, layout="HWC").float()).abs().mean().item()
        return (f"vframes {shape(v)}, resized and cropped while decoding; {t[0] * 1000:.0f} ms; "
                f"mean |diff| {diff:.3f} from torchvision's resize and crop of the full frames (bound 0.5)")

    def timestamps() -> str:
        # the timestamps come from demuxing alone: no decoder, so no backend is involved
        pts, fps = gpuvio.read_video_timestamps(clip, pts_unit="sec")
        return (f"{len(pts)} timestamps (Fraction seconds): {pts[0]}, {pts[1]}, ... {pts[-1]}; "
                f"video_fps {fps}; demuxed only, no backend decodes")

    def reader_seek() -> str:
        with gpuvio.VideoReader(clip, device=device) as reader:
            meta = reader.get_metadata()
            at = round(meta["video"]["duration"][0] / 2, 2)
            with timer(device) as t:
                frames = [next(reader.seek(at))]
                frames += [next(reader) for _ in range(4)]
            pts = ", ".join(f"{f['pts']:.3f}" for f in frames)
            fallback = f" (fell back: {reader.fallback_reason})" if reader.fallback_reason else ""
            return (f"metadata {meta}; {len(reader)} frames; seek({at}) then 5 frames: data "
                    f"{shape(frames[0]['data'])}, pts {pts} s; {t[0] * 1000:.0f} ms; "
                    f"backend {reader.backend}{fallback}")

    def reader_batch() -> str:
        with gpuvio.VideoReader(clip, device=device) as reader:
            n = len(reader)
            indices = [0, n // 3, n // 2, n - 1, 1]
            with timer(device) as t:
                batch = reader.get_frames_at(indices)
            return (f"indices {indices} -> {shape(batch)} on {batch.device}; "
                    f"{t[0] * 1000:.0f} ms; backend {reader.backend}")

    def audio_reader() -> str:
        with gpuvio.VideoReader(clip, stream="audio") as reader:
            first = next(reader)
            return (f"first audio frame: data {shape(first['data'])} (samples, channels), "
                    f"pts {first['pts']:.3f} s")

    return [
        ("read_video(clip.mp4, pts_unit='sec')", read_all),
        ("read_video(clip.mp4, 0.5, 1.0, pts_unit='sec')", read_range),
        ("read_video(clip.avi, pts_unit='sec')", read_avi),
        ("read_video(clip.mp4, transforms=[Resize(128), CenterCrop(112)])", read_resized),
        ("read_video_timestamps(clip.mp4, pts_unit='sec')", timestamps),
        ("VideoReader(clip.mp4).seek(middle), then next() x4", reader_seek),
        ("VideoReader(clip.mp4).get_frames_at([...])", reader_batch),
        ("VideoReader(clip.mp4, stream='audio')", audio_reader),
    ]


def _image_steps(media: dict[str, Path], device: Any) -> list[Step]:
    import torch

    import gpuvio

    jpg, png = media["photo.jpg"], media["graphic.png"]

    def decode_jpeg() -> str:
        data = gpuvio.read_file(jpg)
        with timer(device) as t:
            img = gpuvio.decode_image(data, device=device)
        return (f"{size(data.numel())} of JPEG -> {shape(img)} on {img.device}; "
                f"{t[0] * 1000:.1f} ms; backend {served_by('decode_image', device)}")

    def decode_resized() -> str:
        from gpuvio.transforms import RandomCrop, Resize

        img = gpuvio.decode_image(gpuvio.read_file(jpg), device=device,
                                  transforms=[Resize(160), RandomCrop(128, seed=0)])
        return f"-> {shape(img)} on {img.device}: shorter side to 160, then a 128x128 window (seed 0)"

    def decode_png() -> str:
        img = gpuvio.read_image(png, mode=gpuvio.ImageReadMode.GRAY, device=device)
        return f"mode=GRAY -> {shape(img)} on {img.device}"

    def roundtrip_jpeg() -> str:
        img = gpuvio.decode_image(gpuvio.read_file(png), device=device)
        with timer(device) as t:
            encoded = gpuvio.encode_jpeg(img, quality=90)
        back = gpuvio.decode_image(encoded.cpu()).float()
        mse = float(((back - img.cpu().float()) ** 2).mean())
        psnr = 10 * math.log10(255**2 / mse) if mse > 0 else float("inf")
        op_device = "auto" if img.device.type == "cuda" else "cpu"
        return (f"{shape(img)} -> {size(encoded.numel())} of JPEG in {t[0] * 1000:.1f} ms; "
                f"decoded back: PSNR {psnr:.1f} dB; backend {served_by('encode_jpeg', op_device)}")

    def roundtrip_png() -> str:
        img = gpuvio.decode_image(gpuvio.read_file(png)).cpu()
        with timer() as t:
            encoded = gpuvio.encode_png(img, compression_level=6)
        same = torch.equal(gpuvio.decode_image(encoded), img)
        return (f"{shape(img)} -> {size(encoded.numel())} of PNG in {t[0] * 1000:.1f} ms; "
                f"lossless round trip: {'identical' if same else 'DIFFERENT'}; "
                f"backend {served_by('encode_png', 'cpu')}")

    return [
        ("decode_image(read_file('photo.jpg'))", decode_jpeg),
        ("decode_image(photo.jpg, transforms=[Resize(160), RandomCrop(128, seed=0)])", decode_resized),
        ("read_image('graphic.png', mode=ImageReadMode.GRAY)", decode_png),
        ("encode_jpeg(image, quality=90)", roundtrip_jpeg),
        ("encode_png(image)", roundtrip_png),
    ]
