"""``python -m benchmarks.callgrind``: instructions per unary call (or bidi message), by callgrind.

Instruction counts do not depend on the machine's load, so they show a cost of well under 1%
where CPU time on a shared 2-core machine cannot. Each client mode runs in its own process under
``valgrind --tool=callgrind`` twice, making N1 and then N2 sequential unary calls (after the same
warm-up) to an echo server in another process (not under valgrind); (I(N2) - I(N1)) / (N2 - N1)
is the cost of one call, start-up and shutdown cancelling out. ``--workload bidi`` counts one
ping-pong message (a write and a read) on one bidi stream instead; ``--workload both`` does both
in one run. Modes: raw grpc.aio; raw grpc.aio with a no-op interceptor per call kind (what users
hand-roll); the graceful channel on its direct call path; the graceful channel on its fallback
path (``GRACEFUL_GRPC_NO_DIRECT_CALLS=1``, what a grpcio with unverified internals gets); and the
graceful channel instrumented with ``graceful_grpc.contrib.opentelemetry`` on an SDK
MeterProvider with an in-memory reader attached (collected once, after the calls).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import itertools
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

__all__ = (
    "WARMUP",
    "WORKLOADS",
    "add_run_arguments",
    "checked_run",
    "client",
    "instruction_total",
    "machine",
    "main",
)

MODES = ("raw", "raw+interceptor", "graceful", "graceful-fallback", "graceful+otel")
WORKLOADS = ("unary", "bidi")
WARMUP = 200
_FALLBACK_ENV = {"GRACEFUL_GRPC_NO_DIRECT_CALLS": "1"}
_RUN_NUMBERS = itertools.count()  # one output file per run, also with --jobs


def _channel(mode: str, target: str) -> tuple[grpc.aio.Channel, Callable[[], object]]:
    """The mode's channel, and what to do after the calls (collect metrics, for the otel mode)."""
    if mode == "raw":
        return grpc.aio.insecure_channel(target), lambda: None
    if mode == "raw+interceptor":
        from .harness.modes import interceptor_channel

        return interceptor_channel(target), lambda: None
    from graceful_grpc import aio

    channel = aio.insecure_channel(target)
    if mode in ("graceful", "graceful-fallback"):
        return channel, lambda: None
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from graceful_grpc.contrib.opentelemetry import instrument

    reader = InMemoryMetricReader()
    instrument(channel, meter_provider=MeterProvider(metric_readers=[reader]))
    return channel, reader.get_metrics_data


async def client(mode: str, workload: str, units: int, target: str) -> None:
    """``WARMUP + units`` unary calls (or bidi ping-pongs) to the Echo server at ``target``."""
    from graceful_grpc.testing import echo_pb2, echo_pb2_grpc

    channel, after = _channel(mode, target)
    stub = echo_pb2_grpc.EchoStub(channel)
    request = echo_pb2.EchoRequest(message="x")
    if workload == "unary":
        for _ in range(WARMUP + units):
            await stub.Unary(request)
    else:
        stream = stub.BidiStream()
        for _ in range(WARMUP + units):
            await stream.write(request)
            await stream.read()
        await stream.done_writing()
        await stream.code()
    after()
    await channel.close()


def _instructions(mode: str, workload: str, units: int, target: str, workdir: Path) -> int:
    """Runs one client under callgrind; returns the instructions it executed."""
    out = workdir / f"callgrind.{mode}.{workload}.{units}.{next(_RUN_NUMBERS)}"
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "benchmarks.callgrind",
        "--child",
        mode,
        workload,
        str(units),
        target,
    ]
    env = {**os.environ, **(_FALLBACK_ENV if mode == "graceful-fallback" else {})}
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return instruction_total(out)


def instruction_total(out: Path) -> int:
    """The instructions a callgrind output file counts."""
    match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no instruction total in {out}")
    return int(match.group(1))


def _per_unit(
    workload: str, n1: int, n2: int, repeat: int, target: str, workdir: Path, jobs: int
) -> dict[str, float]:
    """Median instructions per unit of ``workload`` for every mode (runs interleaved)."""

    def count(mode: str) -> float:
        low = _instructions(mode, workload, n1, target, workdir)
        high = _instructions(mode, workload, n2, target, workdir)
        return (high - low) / (n2 - n1)

    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    order = [mode for _ in range(repeat) for mode in MODES]  # interleaved: drift hits every mode
    with ThreadPoolExecutor(jobs) as pool:
        for mode, per in zip(order, pool.map(count, order), strict=True):
            samples[mode].append(per)
    unit = "unary call" if workload == "unary" else "bidi message"
    per_unit = {mode: statistics.median(runs) for mode, runs in samples.items()}
    for mode, runs in samples.items():
        spread = ", ".join(f"{s:,.0f}" for s in runs)
        print(f"  {mode:<18} {per_unit[mode]:>10,.0f} instructions/{unit}  (runs: {spread})")
    raw = per_unit["raw"]
    for mode in MODES[1:]:
        print(f"  {mode + ' vs raw:':<34} x{per_unit[mode] / raw:.4f}")
    otel = per_unit["graceful+otel"] / per_unit["graceful"]
    print(f"  {'graceful+otel vs graceful:':<34} x{otel:.4f}")
    return per_unit


def add_run_arguments(
    parser: argparse.ArgumentParser, *, calls: tuple[int, int], repeat: int, run: str
) -> None:
    """The options of a callgrind run: ``--calls N1 N2``, ``--repeat``, ``--jobs`` (``run``: what
    one callgrind run is, for the help) and ``--workload``."""
    parser.add_argument("--calls", type=int, nargs=2, default=calls, metavar=("N1", "N2"))
    parser.add_argument("--repeat", type=int, default=repeat, help="runs per mode and N (median)")
    parser.add_argument(
        "--jobs", type=int, default=1, help=f"callgrind runs at once (each is {run})"
    )
    parser.add_argument(
        "--workload",
        choices=(*WORKLOADS, "both"),
        default="unary",
        help="unary: N sequential unary calls; bidi: N ping-pong messages on one bidi stream",
    )


def checked_run(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[int, int, tuple[str, ...]]:
    """N1, N2 and the workloads of ``add_run_arguments``'s options, checked (a usage error
    otherwise, also when valgrind is missing)."""
    n1, n2 = args.calls
    if not 0 <= n1 < n2 or args.repeat < 1 or args.jobs < 1:
        parser.error("need 0 <= N1 < N2, --repeat >= 1 and --jobs >= 1")
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (Debian: apt-get install valgrind)")
    return n1, n2, WORKLOADS if args.workload == "both" else (args.workload,)


def machine() -> str:
    """The line that says where the counts were taken."""
    from graceful_grpc import COUNTER_IMPLEMENTATION

    return (
        f"machine: {platform.platform()}, Python {platform.python_version()}, "
        f"grpcio {importlib.metadata.version('grpcio')}, counter={COUNTER_IMPLEMENTATION}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.callgrind", description=__doc__)
    add_run_arguments(parser, calls=(500, 4500), repeat=5, run="one process")
    parser.add_argument(
        "--child", nargs=4, metavar=("MODE", "WORKLOAD", "UNITS", "TARGET"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        mode, workload, units, target = args.child
        asyncio.run(client(mode, workload, int(units), target))
        return 0
    n1, n2, workloads = checked_run(parser, args)
    from graceful_grpc.aio._grpc_internals import DIRECT_PATH_REASON
    from graceful_grpc.testing import EchoServerProcess

    print(machine())
    print(f"call path: {DIRECT_PATH_REASON}")
    with EchoServerProcess() as server, tempfile.TemporaryDirectory() as tmp:
        for workload in workloads:
            unit = "unary calls" if workload == "unary" else "bidi messages"
            print(f"{unit}: N1={n1}, N2={n2} (after {WARMUP} warm-up), {args.repeat} runs each")
            _per_unit(workload, n1, n2, args.repeat, server.target, Path(tmp), args.jobs)
    return 0


def _main() -> Any:
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    return main()


if __name__ == "__main__":
    sys.exit(_main())
