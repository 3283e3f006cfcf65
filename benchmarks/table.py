"""Print a benchmark JSON record as a Markdown table: ``python benchmarks/table.py RECORD.json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpuvio._bench._report import markdown_table

if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python benchmarks/table.py RECORD.json", file=sys.stderr)
        raise SystemExit(2)
    print(markdown_table(json.loads(Path(sys.argv[1]).read_text())), end="")
