"""End-to-end: every mode against the Echo server in its own process, interleaved per round.

The coordinator (this process) measures nothing itself. It keeps one client worker process per
process kind (default extensions; GRACEFUL_GRPC_NO_EXTENSIONS=1), both pinned to the client CPU,
and the server pinned to another; every round runs every mode once, in shuffled order.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graceful_grpc.testing import EchoServerProcess

from .modes import MODES
from .stats import iqr, median
from .workloads import Sample

__all__ = ("pin_note", "run_e2e")

ROOT = Path(__file__).resolve().parents[2]  # where `-m benchmarks.client_worker` is found


def pin_note() -> tuple[int | None, int | None, str]:
    """CPUs for server and client, and a sentence saying what was done."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) >= 2:
        return cpus[0], cpus[1], f"server pinned to CPU {cpus[0]}, clients to CPU {cpus[1]}"
    return None, None, "fewer than 2 CPUs: server and clients share them, not pinned"


class ClientWorker:
    """A ``benchmarks.client_worker`` process of one kind ("c" or "py")."""

    def __init__(self, kind: str, cpu: int | None) -> None:
        env = {k: v for k, v in os.environ.items() if k != "GRACEFUL_GRPC_NO_EXTENSIONS"}
        if kind == "py":
            env["GRACEFUL_GRPC_NO_EXTENSIONS"] = "1"
        if cpu is not None:
            env["BENCH_CLIENT_CPU"] = str(cpu)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.client_worker"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        hello = json.loads(self._readline())
        self.counter = hello["counter"]

    def _readline(self) -> str:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("benchmark client worker exited")
        return line

    def measure(self, mode: str, workload: str, units: int, target: str) -> Sample:
        assert self._process.stdin is not None
        command = {"mode": mode, "workload": workload, "units": units, "target": target}
        self._process.stdin.write(json.dumps(command) + "\n")
        self._process.stdin.flush()
        return Sample(**json.loads(self._readline()))

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=30)
        if self._process.stdout is not None:
            self._process.stdout.close()


@dataclass
class _Round:
    cpu_us: float
    throughput: float
    p50_ms: float
    p99_ms: float


def _figures(sample: Sample) -> _Round:
    latencies = sorted(sample.latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return _Round(
        cpu_us=sample.cpu / sample.units * 1e6,
        throughput=sample.units / sample.wall,
        p50_ms=statistics.median(latencies) * 1e3,
        p99_ms=p99 * 1e3,
    )


def _summary(rounds: list[_Round], baseline: list[_Round]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for figure in ("cpu_us", "throughput", "p50_ms", "p99_ms"):
        values = [getattr(r, figure) for r in rounds]
        ratios = [v / getattr(b, figure) for v, b in zip(values, [*baseline], strict=True)]
        out[figure] = {
            "median": median(values),
            "ratio_median": median(ratios),
            "ratio_iqr": iqr(ratios),
            "ratios": ratios,
        }
    return out


def run_e2e(
    rounds: int, units: dict[str, int], modes: list[str], workloads: list[str]
) -> dict[str, Any]:
    """Runs ``rounds`` interleaved rounds; per workload and mode, medians and ratios to baseline."""
    server_cpu, client_cpu, note = pin_note()
    kinds = sorted({MODES[mode].process for mode in modes})
    workers = {kind: ClientWorker(kind, client_cpu) for kind in kinds}
    if "py" in workers and workers["py"].counter != "python":
        raise RuntimeError("graceful-py worker did not get the pure-Python counter")
    per_round: dict[str, dict[str, list[_Round]]] = {w: {m: [] for m in modes} for w in workloads}
    try:
        with EchoServerProcess(cpu=server_cpu) as server:
            for _ in range(rounds):
                for workload in workloads:
                    order = list(modes)
                    random.shuffle(order)
                    for mode in order:
                        worker = workers[MODES[mode].process]
                        sample = worker.measure(mode, workload, units[workload], server.target)
                        per_round[workload][mode].append(_figures(sample))
    finally:
        for worker in workers.values():
            worker.close()
    results: dict[str, Any] = {
        "pinning": note,
        "rounds": rounds,
        "units": units,
        "counters": {kind: worker.counter for kind, worker in workers.items()},
    }
    for workload in workloads:
        results[workload] = {
            mode: _summary(per_round[workload][mode], per_round[workload][MODES[mode].baseline])
            for mode in modes
        }
    return results
