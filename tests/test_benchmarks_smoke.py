"""The benchmark harness in its smallest configuration, so it cannot rot."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from benchmarks import callgrind, callgrind_server
from graceful_grpc.testing import EchoServerProcess

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(360)  # the harness itself bounds each of its runs; a loaded machine is slow
def test_benchmarks_smoke(tmp_path: Path) -> None:
    out_json = tmp_path / "bench.json"
    plot = tmp_path / "ratios.png"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--smoke",
            "--json",
            str(out_json),
            "--plot",
            str(plot),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    for heading in ("unary (unit: call)", "bidi (unit: message)", "microbenchmarks", "targets"):
        assert heading in out.stdout
    results = json.loads(out_json.read_text())
    for workload in ("unary", "unary-64", "stream-100", "bidi"):
        modes = results["e2e"][workload]
        assert {"raw", "interceptor", "tracker", "graceful-c", "graceful-py"} <= set(modes)
        assert modes["raw"]["cpu_us"]["ratio_median"] == 1.0
        assert all(
            m["cpu_us"]["median"] > 0 and m["throughput"]["median"] > 0 for m in modes.values()
        )
    assert results["e2e"]["counters"].get("py") == "python"  # graceful-py really ran pure Python
    assert all(
        t["final_value"] == 0 and t["errors"] == 0 for t in results["counter_threads"].values()
    )
    mass = results["mass_cancel"]
    assert mass["cancelled"] == mass["streams"] and mass["in_flight_after"] == 0
    assert len(results["targets"]) == 10
    if "skipped" not in results["plot"]:
        assert plot.stat().st_size > 0


@pytest.mark.timeout(300)
def test_callgrind_client_runs_every_mode_and_workload() -> None:
    # The client each callgrind run executes, without valgrind (which CI need not have); the
    # clients run at once: each is a process start, slow on a loaded machine.
    with EchoServerProcess() as server:
        children = {
            (mode, workload): subprocess.Popen(
                [
                    *(sys.executable, "-m", "benchmarks.callgrind"),
                    *("--child", mode, workload, "3", server.target),
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for mode, workload in itertools.product(callgrind.MODES, callgrind.WORKLOADS)
        }
        try:
            for key, child in children.items():
                _, stderr = child.communicate(timeout=240)
                assert child.returncode == 0, (key, stderr)
        finally:
            for child in children.values():
                child.kill()
                child.wait(timeout=10)


@pytest.mark.timeout(300)
def test_callgrind_server_harness_runs_every_mode_and_workload(tmp_path: Path) -> None:
    # The harness's own run of a server and its client, without valgrind (which CI need not
    # have); each run is bounded by the harness (it kills both processes and raises).
    runs = list(itertools.product(callgrind_server.MODES, callgrind.WORKLOADS))
    with ThreadPoolExecutor(4) as pool:
        counts = list(
            pool.map(
                lambda run: callgrind_server.serve_and_call(
                    run[0], run[1], 3, tmp_path, callgrind=False
                ),
                runs,
            )
        )
    assert counts == [0] * len(runs)


def test_rotation_benchmark_smoke() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.rotation", "--rounds", "1", "--seconds", "0.3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "rotating every 100 ms vs none" in out.stdout
    assert "rotate() to the first call completed on the new connection, 100" in out.stdout
