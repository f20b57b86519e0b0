"""``python -m benchmarks.callgrind_server``: the server's instructions per unary call (or bidi
message), by callgrind.

The server-side twin of ``python -m benchmarks.callgrind``. Each server mode runs in its own
process under ``valgrind --tool=callgrind`` twice, serving N1 and then N2 sequential unary calls
(after the same warm-up) from a raw grpc.aio client in another process (not under valgrind);
(I(N2) - I(N1)) / (N2 - N1) is the server's cost of one call, start-up and shutdown cancelling
out. ``--workload bidi`` counts one ping-pong message (a read and a write) on one bidi stream;
``--workload both`` does both. The client process is started (and has imported grpc) before the
server, and starts calling as soon as the server listens, so the server idles as little as
possible. The servicer is minimal (it answers with the request's message) so that the figures
are the server machinery's, not an application's.

Modes: raw ``grpc.aio.server()``; raw with a no-op ``grpc.aio.ServerInterceptor`` (the least a
hand-written tracking interceptor costs); ``graceful_grpc.aio.server()`` with its defaults; with
``holds=[channel]`` (a graceful channel the handlers never call); with ``cancel_on_drain`` naming
a method that is not called, and naming the one that is; and instrumented with
``graceful_grpc.contrib.opentelemetry.instrument(server)`` on an SDK MeterProvider with an
in-memory reader attached (collected once, after the calls).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import select
import statistics
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from .callgrind import WARMUP, add_run_arguments, checked_run, client, instruction_total, machine

__all__ = ("MODES", "main", "serve_and_call")

MODES = (
    "raw",
    "raw+interceptor",
    "graceful",
    "graceful+holds",
    "graceful+cancel-other",
    "graceful+cancel-called",
    "graceful+otel",
)
_SERVICE = "/graceful_grpc.testing.v1.Echo/"
_CALLED = {"unary": _SERVICE + "Unary", "bidi": _SERVICE + "BidiStream"}
_NOT_CALLED = _SERVICE + "ServerStream"
_RATIOS = (
    *((mode, "raw") for mode in MODES[1:]),
    ("graceful", "raw+interceptor"),
    *((mode, "graceful") for mode in MODES[3:]),
)
_READY = "LISTENING "
_START_BOUND = 600.0  # seconds a server under valgrind may take to listen (a loaded machine)
_RUN_BOUND = 1800.0  # seconds one run's calls may take under valgrind
_RUN_NUMBERS = itertools.count()


# -- the server process (under valgrind) ----------------------------------------------------------


class _NoOpInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        return await continuation(handler_call_details)


def _echo_servicer() -> Any:
    from graceful_grpc.testing import echo_pb2, echo_pb2_grpc

    class Echo(echo_pb2_grpc.EchoServicer):
        async def Unary(self, request: echo_pb2.EchoRequest, context: Any) -> Any:
            return echo_pb2.EchoResponse(message=request.message)

        async def BidiStream(
            self, request_iterator: AsyncIterator[echo_pb2.EchoRequest], context: Any
        ) -> AsyncIterator[echo_pb2.EchoResponse]:
            async for request in request_iterator:
                yield echo_pb2.EchoResponse(message=request.message)

    return Echo()  # type: ignore[abstract]  # two of the four methods are not called


def _server(mode: str, workload: str) -> tuple[grpc.aio.Server, Callable[[], Awaitable[object]]]:
    """The mode's server, and what to do after its stop (close a channel, collect metrics)."""
    if mode == "raw":
        return grpc.aio.server(), _nothing
    if mode == "raw+interceptor":
        return grpc.aio.server(interceptors=[_NoOpInterceptor()]), _nothing
    from graceful_grpc import aio

    if mode == "graceful":
        return aio.server(), _nothing
    if mode == "graceful+holds":
        channel = aio.insecure_channel("127.0.0.1:1")  # never called: only held
        return aio.server(holds=[channel]), channel.close
    if mode in ("graceful+cancel-other", "graceful+cancel-called"):
        method = _CALLED[workload] if mode == "graceful+cancel-called" else _NOT_CALLED
        return aio.server(cancel_on_drain=[method]), _nothing
    if mode != "graceful+otel":
        raise ValueError(f"unknown mode {mode!r}")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from graceful_grpc.contrib.opentelemetry import instrument

    server = aio.server()
    reader = InMemoryMetricReader()
    instrument(server, meter_provider=MeterProvider(metric_readers=[reader]))

    async def collect() -> None:
        reader.get_metrics_data()

    return server, collect


async def _nothing() -> None:
    pass


async def _stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()


async def _serve(mode: str, workload: str) -> None:
    """Serves until stdin is closed, then stops the server at once."""
    from graceful_grpc.testing import echo_pb2_grpc

    server, after = _server(mode, workload)
    echo_pb2_grpc.add_EchoServicer_to_server(_echo_servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"{_READY}127.0.0.1:{port}", flush=True)
    await _stdin_closed()
    await server.stop(0)
    await after()


async def _client_from_stdin(workload: str, units: int) -> None:
    """The client process: reads the target from stdin, then calls (raw grpc.aio)."""
    import graceful_grpc.testing  # noqa: F401 - loaded before the server listens

    target = await asyncio.to_thread(sys.stdin.readline)
    await client("raw", workload, units, target.strip())


# -- the harness ----------------------------------------------------------------------------------


def _first_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError(f"no output from {process.args!r} within {timeout:g}s")
    return process.stdout.readline()


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.callgrind_server", *args]


def serve_and_call(
    mode: str, workload: str, units: int, workdir: Path, *, callgrind: bool = True
) -> int:
    """Runs one server (under callgrind) for ``units`` calls from a client process; returns the
    instructions the server ran (0 without ``callgrind``: the smoke test's run)."""
    run = next(_RUN_NUMBERS)
    out = workdir / f"callgrind.{mode}.{workload}.{units}.{run}"
    log = workdir / f"server.{mode}.{workload}.{units}.{run}.log"
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] if callgrind else []
    caller = subprocess.Popen(
        _command("--client", workload, str(units)),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    with log.open("w") as stderr:
        server = subprocess.Popen(
            [*valgrind, *_command("--server", mode, workload)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        line = _first_line(server, _START_BOUND)
        if not line.startswith(_READY):
            raise RuntimeError(f"server {mode} did not start: {line!r}\n{log.read_text()[-2000:]}")
        _, errors = caller.communicate(line[len(_READY) :], timeout=_RUN_BOUND)
        if caller.returncode != 0:
            raise RuntimeError(f"client against {mode} failed:\n{errors[-2000:]}")
        assert server.stdin is not None
        server.stdin.close()
        if server.wait(timeout=_START_BOUND) != 0:
            raise RuntimeError(f"server {mode} failed:\n{log.read_text()[-2000:]}")
    finally:
        for process in (caller, server):
            if process.poll() is None:
                process.kill()
                process.wait()
        if server.stdout is not None:
            server.stdout.close()
        if caller.stderr is not None:
            caller.stderr.close()
    return instruction_total(out) if callgrind else 0


def _per_unit(
    workload: str,
    modes: tuple[str, ...],
    calls: tuple[int, int],
    repeat: int,
    workdir: Path,
    jobs: int,
) -> dict[str, float]:
    """Median server instructions per unit of ``workload`` for every mode (runs interleaved)."""

    n1, n2 = calls

    def count(mode: str) -> float:
        low = serve_and_call(mode, workload, n1, workdir)
        high = serve_and_call(mode, workload, n2, workdir)
        return (high - low) / (n2 - n1)

    samples: dict[str, list[float]] = {mode: [] for mode in modes}
    order = [mode for _ in range(repeat) for mode in modes]  # interleaved: drift hits every mode
    with ThreadPoolExecutor(jobs) as pool:
        for mode, per in zip(order, pool.map(count, order), strict=True):
            samples[mode].append(per)
    unit = "unary call" if workload == "unary" else "bidi message"
    per_unit = {mode: statistics.median(runs) for mode, runs in samples.items()}
    raw = per_unit.get("raw", 0.0)
    for mode, runs in samples.items():
        spread = ", ".join(f"{s:,.0f}" for s in runs)
        extra = per_unit[mode] - raw
        print(
            f"  {mode:<24} {per_unit[mode]:>10,.0f} instructions/{unit}  {extra:>+8,.0f} vs raw"
            f"  (runs: {spread})"
        )
    for mode, base in _RATIOS:
        if mode in per_unit and base in per_unit:
            print(f"  {f'{mode} vs {base}:':<42} x{per_unit[mode] / per_unit[base]:.4f}")
    return per_unit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.callgrind_server", description=__doc__
    )
    add_run_arguments(parser, calls=(300, 2300), repeat=3, run="two processes")
    parser.add_argument(
        "--mode", choices=MODES, action="append", help="only these modes (default: all)"
    )
    parser.add_argument(
        "--keep", type=Path, help="keep the callgrind output files here (for callgrind_annotate)"
    )
    parser.add_argument("--server", nargs=2, metavar=("MODE", "WORKLOAD"), help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=2, metavar=("WORKLOAD", "UNITS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.server:
        asyncio.run(_serve(*args.server))
        return 0
    if args.client:
        workload, units = args.client
        asyncio.run(_client_from_stdin(workload, int(units)))
        return 0
    n1, n2, workloads = checked_run(parser, args)
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for workload in workloads:
            unit = "unary calls" if workload == "unary" else "bidi messages"
            print(
                f"server instructions, {unit}: N1={n1}, N2={n2} (after {WARMUP} warm-up), "
                f"{args.repeat} runs each",
                flush=True,
            )
            modes = tuple(args.mode or MODES)
            _per_unit(workload, modes, (n1, n2), args.repeat, workdir, args.jobs)
    return 0


def _main() -> Any:
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    return main()


if __name__ == "__main__":
    sys.exit(_main())
