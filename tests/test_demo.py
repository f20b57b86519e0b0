"""``python -m graceful_grpc demo``: plain grpc.aio loses reports, graceful_grpc loses none."""

from __future__ import annotations

import json
import subprocess
import sys


def test_demo_shows_loss_and_fix() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "graceful_grpc", "demo", "--jobs", "6", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    plain, graceful = json.loads(out.stdout)
    assert plain["label"].startswith("grpc.aio close(grace=")
    assert plain["lost"] > 0
    assert plain["errors"]
    assert graceful["delivered"] == 6
    assert graceful["lost"] == 0
    assert graceful["errors"] == {}


def test_demo_rejects_bad_options() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "graceful_grpc", "demo", "--jobs", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "--jobs" in out.stderr
