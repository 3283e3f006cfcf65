"""The benchmark behind ``gpuvio bench`` (private: the command line is the interface).

``_media.py`` generates and caches the default media, ``_peers.py`` holds the contenders (gpuvio
and every installed peer doing the same work), ``_runner.py`` times them interleaved and
``_report.py`` prints the table, writes the JSON record and draws the chart. ``_timing.py`` is
the one timing harness (also used by the command line's other timings and by ``benchmarks/``).
"""

from __future__ import annotations

import argparse
from typing import Any

from .._errors import GpuvioError

__all__ = ["BenchError", "add_bench_arguments", "run_from_cli"]


class BenchError(GpuvioError):
    """The benchmark cannot run as asked; ``code`` is the exit status (1: failed, 2: bad options).

    The command line prints the message on one line and exits with ``code``.
    """

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``gpuvio bench`` (kept here so the scripts in benchmarks/ share them)."""
    parser.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"],
                        help="decode with gpuvio on the CPU, the GPU, or the GPU when a GPU backend "
                             "can run here (default: auto)")
    parser.add_argument("--media", metavar="DIR",
                        help="benchmark the videos and images in DIR (mp4/mkv/avi/webm/mov, jpg/png) "
                             "instead of the generated default media")
    parser.add_argument("--quick", action="store_true",
                        help="smaller media and fewer repeats: a smoke run, not numbers to publish")
    parser.add_argument("--repeats", type=int, metavar="N",
                        help="timed runs per contender (default 7, 3 with --quick)")
    parser.add_argument("--only", metavar="NAME", action="append",
                        help="run only the workloads whose name contains NAME (repeatable), "
                             "e.g. --only read_video --only decode_image")
    parser.add_argument("--json", metavar="OUT", help="write the results and the system description as JSON")
    parser.add_argument("--plot", metavar="OUT.png", help="draw a bar chart of the ratios (needs matplotlib)")
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="where generated media are kept between runs (default: $GPUVIO_CACHE or "
                             "~/.cache/gpuvio/bench-media)")


def run_from_cli(args: Any) -> int:
    """Run ``gpuvio bench`` with parsed options; the exit status (raises :class:`BenchError`)."""
    from ._runner import run_from_cli as run

    return run(args)
