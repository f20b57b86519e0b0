"""``python -m graceful_grpc demo``: plain grpc.aio loses reports, graceful_grpc loses none."""

from __future__ import annotations

import json
import subprocess
import sys


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "graceful_grpc", "demo", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_demo_shows_loss_and_fix() -> None:
    out = run_demo("--jobs", "6", "--json")
    assert out.returncode == 0, out.stderr
    plain, graceful = json.loads(out.stdout)
    assert plain["label"].startswith("grpc.aio close(grace=")
    assert plain["lost"] > 0
    assert plain["errors"]
    assert graceful["delivered"] == 6
    assert graceful["lost"] == 0
    assert graceful["errors"] == {}


def test_demo_rejects_bad_options() -> None:
    out = run_demo("--jobs", "0")
    assert out.returncode == 2
    assert "--jobs" in out.stderr


def test_demo_metrics_show_the_graceful_run() -> None:
    out = run_demo("--jobs", "6", "--json", "--metrics")
    assert out.returncode == 0, out.stderr
    plain, graceful = json.loads(out.stdout)
    assert "metrics" not in plain
    rows = {(r["when"], r["name"]): r for r in graceful["metrics"]}
    assert rows["at SIGTERM", "graceful_grpc.client.holds"]["value"] >= 1  # jobs under way
    assert rows["after close", "graceful_grpc.client.calls.in_flight"]["value"] == 0
    assert rows["after close", "graceful_grpc.client.holds"]["value"] == 0
    drain = rows["after close", "graceful_grpc.client.drain.duration"]
    assert drain["attributes"] == {"graceful_grpc.drain.outcome": "drained"}
    assert drain["value"]["count"] == 1 and drain["value"]["sum"] > 0
    completed = rows["after close", "graceful_grpc.client.drain.calls"]
    assert completed["attributes"] == {"graceful_grpc.drain.result": "completed"}
    assert completed["value"] >= 6  # at least every report, sent during the drain
    assert rows["after close", "graceful_grpc.client.drain.abandoned_holds"]["value"] == 0


def test_demo_metrics_table() -> None:
    out = run_demo("--jobs", "2", "--metrics")
    assert out.returncode == 0, out.stderr
    assert "graceful_grpc metrics (OpenTelemetry, in-memory reader)" in out.stdout
    assert "graceful_grpc.drain.outcome=drained" in out.stdout


def test_demo_metrics_without_the_sdk_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['opentelemetry.sdk'] = None\n"
        "from graceful_grpc.demo import main\n"
        "sys.exit(main(['--metrics']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "opentelemetry-sdk" in out.stderr
    assert out.stdout == ""  # refused before running anything
