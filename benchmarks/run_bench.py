"""Run the gpuvio benchmark from a source checkout: ``python benchmarks/run_bench.py [options]``.

The same as ``gpuvio bench [options]`` (see ``--help``); this script only puts the checkout on
``sys.path`` first, so it also works in an environment where gpuvio is not installed, e.g. one
that has torchvision and torchcodec for the peers.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpuvio.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", *sys.argv[1:]]))
