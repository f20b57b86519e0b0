"""MkDocs hook: publishes BENCHMARKS.md and benchmarks/results/ on the site, where they are.

BENCHMARKS.md stays the record (it is read in the repository too) and benchmarks/results/ holds
what `make bench` and the other benchmark commands wrote: the plots and the raw outputs it links
to. Publishing both at the same paths as in the repository keeps every link in BENCHMARKS.md
working on the site and in the repository, and no copy can go stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, "BENCHMARKS.md", abs_src_path=str(ROOT / "BENCHMARKS.md")))
    for result in sorted((ROOT / "benchmarks" / "results").iterdir()):
        if result.is_file():
            uri = f"benchmarks/results/{result.name}"
            files.append(File.generated(config, uri, abs_src_path=str(result)))
    return files
