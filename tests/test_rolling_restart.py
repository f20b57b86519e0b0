"""The rolling restart benchmark, short: graceful backends behind an L4 balancer and with
client-side round_robin lose no call, refuse no downstream call, and let their watchers go at once.

Real processes and real SIGTERM; the full run (and the baselines) is in BENCHMARKS.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNREADY_DELAY = 0.5
GRACE = 5.0


def test_graceful_rolling_restart_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "rolling.json"
    command = [
        sys.executable, "-m", "benchmarks.rolling_restart",
        "--scenario", "proxy", "--scenario", "round_robin", "--variant", "graceful",
        "--restarts", "2", "--settle", "0.5",
        "--unready-delay", str(UNREADY_DELAY), "--grace", str(GRACE),
        "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(out.read_text())
    assert [r["scenario"] for r in results] == ["proxy", "round_robin"]
    for result in results:
        assert result["calls_ok"] > 0
        # Behind the L4 balancer too: the clients' calls that would race grpc's GOAWAY are held
        # back until it has been sent (the server drain's GOAWAY settle, tests/test_server_goaway)
        assert result["failed"] == {}, result
        assert result["downstream_refused"] == 0, result
        assert len(result["shutdowns_s"]) == 2
        # well within the grace: nothing (not even a watcher) waited it out
        assert all(took < GRACE / 2 for took in result["shutdowns_s"]), result
        assert set(result["watcher_ends"]) <= {"UNAVAILABLE"}, result
        assert all(notice < GRACE / 2 for notice in result["watcher_notices_s"]), result
