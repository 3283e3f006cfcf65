"""The ``gpuvio`` command line: demo, info, probe, decode and bench.

Run ``gpuvio --help`` (or ``python -m gpuvio --help``) for the overview and
``gpuvio COMMAND --help`` for each command. Every command exits 0 on success, 1 when the work
fails (unreadable file, decoding error, missing backend) and 2 on bad arguments.

Each command is one module (``_demo``, ``_info``, ``_probe``, ``_decode``, ``_bench``) with an
``add_parser(sub)`` that declares its options and a ``run(args)`` that does the work; what they
share is in ``_common``. The environment report is library code, in :mod:`gpuvio._env`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import _bench, _decode, _demo, _info, _probe
from ._common import CliError, Formatter
from ._probe import probe_file

__all__ = ["CliError", "build_parser", "main", "probe_file"]


def build_parser() -> argparse.ArgumentParser:
    """The ``gpuvio`` argument parser (exposed for the tests and for documentation tools)."""
    parser = argparse.ArgumentParser(
        prog="gpuvio",
        formatter_class=Formatter,
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
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"gpuvio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # the order of --help's command list
    for command in (_demo, _info, _probe, _decode, _bench):
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gpuvio`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from .._bench import BenchError
    from .._errors import GpuvioError

    try:
        return int(args.func(args) or 0)
    except (CliError, BenchError) as exc:
        # expected failures: one line, and the exit status the raiser chose
        print(f"gpuvio {args.command}: error: {exc}", file=sys.stderr)
        return exc.code
    except (GpuvioError, OSError, RuntimeError, ValueError, TypeError) as exc:
        print(f"gpuvio {args.command}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"gpuvio {args.command}: interrupted", file=sys.stderr)
        return 130
