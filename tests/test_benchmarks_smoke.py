"""The benchmark harness in its smallest configuration, so it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_benchmarks_smoke(tmp_path: Path) -> None:
    out_json = tmp_path / "bench.json"
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--json", str(out_json)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "wrapper added CPU per call" in out.stdout
    results = json.loads(out_json.read_text())
    assert results["counter_threads"]["final_value"] == 0
    assert results["counter_threads"]["errors"] == 0
    for workload in ("unary", "bidi"):
        modes = results["e2e"][workload]
        assert set(modes) == {"raw", "interceptor", "tracker", "graceful"}
        assert modes["raw"]["ratio_to_raw_median"] == 1.0
        assert all(m["cpu_us_median"] > 0 for m in modes.values())
