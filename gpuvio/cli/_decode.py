"""``gpuvio decode``: decode a video (a time range) or an image, and optionally save the result."""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path
from typing import Any

from .._bench._timing import timer
from ._common import DEVICE_HELP, CliError, Formatter, positive_float, progress, resolve_device, served_by, shape
from ._probe import probe_file

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Add the ``decode`` command to the subparsers ``sub``."""
    decode = sub.add_parser(
        "decode", formatter_class=Formatter,
        help="decode a video or image and optionally save the frames",
        description=(
            "Decode FILE with read_video (videos; times in seconds) or read_image (images) and print\n"
            "what was decoded. --out frames.pt saves with torch.save: for a video a dict with\n"
            "'vframes' Tensor[T, H, W, 3] uint8, 'aframes' Tensor[K, L] float32 and 'info'; for an\n"
            "image the Tensor[C, H, W]. --out DIR writes PNG files instead (a video is streamed\n"
            "frame by frame through VideoReader, so long clips do not have to fit in memory)."),
        epilog="example:\n  gpuvio decode clip.mp4 --device auto --start 1.5 --end 2 --out frames.pt")
    decode.add_argument("file", metavar="FILE", help="the video or image to decode")
    decode.add_argument("--device", default="cpu", help=f"where to decode: {DEVICE_HELP}; default cpu")
    decode.add_argument("--start", type=positive_float, metavar="SEC",
                        help="first time to decode, in seconds (default: the beginning)")
    decode.add_argument("--end", type=positive_float, metavar="SEC",
                        help="last time to decode, in seconds, inclusive (default: the end)")
    decode.add_argument("--mode", default="UNCHANGED",
                        choices=["UNCHANGED", "GRAY", "GRAY_ALPHA", "RGB", "RGB_ALPHA"],
                        help="images only: the channels to decode to (ImageReadMode); default UNCHANGED")
    decode.add_argument("--out", metavar="frames.pt|DIR",
                        help="save the result: a path ending in .pt, or a folder for PNG files")
    decode.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``gpuvio decode FILE``: decode a video range or an image, print it, optionally save it."""
    import torch

    import gpuvio

    info = probe_file(args.file)
    device, device_note = resolve_device(args.device)
    out = Path(args.out) if args.out else None
    to_dir = out is not None and out.suffix.lower() != ".pt"
    if args.start is not None and args.end is not None and args.end < args.start:
        raise CliError(f"--end ({args.end}) must not be before --start ({args.start})", code=2)
    if info["kind"] == "image":
        if args.start is not None or args.end is not None:
            raise CliError("--start/--end apply to videos; this file is an image", code=2)
        with timer(device) as t:
            image = gpuvio.read_image(args.file, mode=args.mode, device=device)
        print(f"decoded {args.file}: {shape(image)} on {image.device} in {t[0] * 1000:.1f} ms "
              f"(device {device_note}, backend {served_by('decode_image', device)})")
        if out is not None and to_dir:
            frames = image.cpu() if image.dim() == 4 else image.cpu()[None]  # an animated GIF has N frames
            if image.dtype != torch.uint8 or frames.shape[1] not in (1, 3):
                raise CliError(f"{shape(image)} cannot be written as PNG files (encode_png takes uint8 "
                               f"with 1 or 3 channels); use --out FILE.pt", code=2)
            out.mkdir(parents=True, exist_ok=True)
            stem = Path(args.file).stem
            names = [f"{stem}.png"] if len(frames) == 1 else [f"{stem}_{i:04d}.png" for i in range(len(frames))]
            for frame, name in zip(frames, names):
                gpuvio.write_png(frame, str(out / name))
            print(f"wrote {len(names)} PNG file(s) to {out}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}")
        elif out is not None:
            torch.save(image.cpu(), out)
            print(f"wrote {out}: torch.load() gives the {shape(image)} tensor")
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
        with timer(device) as t:
            vframes, aframes, vinfo = gpuvio.read_video(args.file, start, end, pts_unit="sec",
                                                        device=device)
    problems = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    if vframes.shape[0] == 0:
        detail = f": {problems[0]}" if problems else ""
        raise CliError(f"{args.file}: no frames decoded between {start} s and {end} s{detail}")
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    print(f"decoded {args.file} [{start} s .. {'end' if end is None else f'{end} s'}]: "
          f"vframes {shape(vframes)} on {vframes.device}, aframes {shape(aframes)}, info {vinfo} "
          f"in {t[0]:.2f} s ({vframes.shape[0] / t[0]:.0f} frames/s; device {device_note}, "
          f"backend {served_by('read_video', device)})")
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
    bar = progress(desc="frames", unit="frame")
    with timer() as t, gpuvio.VideoReader(args.file, device=device) as reader:
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
