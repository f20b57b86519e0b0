"""The shutdown-order benchmark, short: a graceful server with ``holds=[channel]`` keeps the
downstream calls of every handler in flight when the channel is closed at SIGTERM, and waits for
handlers that abort() and then call downstream in their ``finally`` (grpc/grpc#37239).

Real processes and real SIGTERM; SIGTERM is sent once the clients have made their warm-up calls
(an event); the full run, with the baselines, is in BENCHMARKS.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)  # the run bounds itself (240 s); a loaded machine starts processes slowly
def test_graceful_server_with_holds_keeps_the_downstream_calls_of_its_handlers(
    tmp_path: Path,
) -> None:
    out = tmp_path / "orders.json"
    command = [
        sys.executable, "-m", "benchmarks.rolling_restart.orders",
        "--variant", "graceful", "--rounds", "2", "--warmup-calls", "50",
        "--unready-delay", "0", "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    results = {result["mistake"]: result for result in json.loads(out.read_text())}
    assert set(results) == {"close-at-sigterm", "abort-finally"}
    for result in results.values():
        assert result["rounds"] == 2 and result["downstream_ok"] > 0, result
    # Channel closed at SIGTERM: no downstream call refused, also none of a handler that started
    # after SIGTERM (the server's own handle keeps the connection open until its drain ends).
    close = results["close-at-sigterm"]
    assert close["downstream_refused"] == 0, close
    # abort() then a downstream call in finally: the server's stop waited for every one of them.
    audit = results["abort-finally"]
    assert audit["audits_ok"] > 0 and audit["audits_lost"] == 0, audit
    assert audit["downstream_refused"] == 0, audit
