"""``gpuvio bench``: the command-line face of the benchmark in :mod:`gpuvio._bench`."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import Formatter

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Add the ``bench`` command to the subparsers ``sub`` (its options live in gpuvio._bench)."""
    from .._bench import add_bench_arguments

    bench = sub.add_parser(
        "bench", formatter_class=Formatter,
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
    bench.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``gpuvio bench``; the benchmark's :class:`~gpuvio._bench.BenchError` reaches ``main``."""
    from .._bench import run_from_cli

    return run_from_cli(args)
