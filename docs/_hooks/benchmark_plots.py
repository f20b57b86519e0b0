"""MkDocs hook: publishes benchmarks/results/*.png (the plots BENCHMARKS.md shows) under plots/.

The plots stay where `make bench` writes them, so the site always shows the committed ones and
no copy can go stale; the benchmarks page refers to them as ``plots/<name>.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def on_files(files: Files, config: Any) -> Files:
    for plot in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"plots/{plot.name}", abs_src_path=str(plot)))
    return files
