"""``python -m benchmarks.rolling_restart.orders``: the downstream calls a shutdown in the wrong
order loses, and what ``holds=`` keeps.

The rolling restart's backends close their downstream channel after the server has stopped, and
their handlers end before grpc's stop returns, so no variant refuses a downstream call there.
Real services get the order wrong in two ways, each a *mistake* here:

- ``close-at-sigterm``: the downstream channel is closed when SIGTERM arrives, concurrently with
  the server's shutdown (independent shutdown hooks: ``asyncio.gather(stop_server(),
  channel.close())``); handlers in flight then call a closing channel;
- ``abort-finally``: the order is right (server, then channel), but some handlers ``abort()`` and
  then still call downstream in their ``finally`` (an audit record after 50 ms of cleanup);
  grpc's ``stop()`` returns once their status is sent, before those ``finally`` blocks end
  (grpc/grpc#37239), and the channel is closed under them.

One backend process at a time serves Echo ``Unary`` (20 ms of work, then a downstream call
through its channel) to 16 clients, each its own grpc.aio channel, calling in a loop (in
``abort-finally`` half of them send requests the handler aborts). Once the clients have made
``--warmup-calls`` calls the backend gets SIGTERM and shuts down the way its variant says, with the
mistake; it reports the downstream calls it made and the ones refused. Variants: *naive*
(grpc.aio.server; ``server.stop(grace)``), *best* (health NOT_SERVING, sleep the unready delay,
``server.stop(grace)``), *graceful-unheld* (``aio.server(unready_delay=..., health=...)``, no
``holds``) and *graceful* (the same with ``holds=[channel]``). Every variant makes the same
mistake with the same code; only the server and channel objects differ.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import argparse
import asyncio
import collections
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from graceful_grpc import aio
from graceful_grpc.testing import EchoServerProcess, echo_pb2, echo_pb2_grpc

__all__ = ("MISTAKES", "VARIANTS", "main")

MISTAKES = ("close-at-sigterm", "abort-finally")
VARIANTS = ("naive", "best", "graceful-unheld", "graceful")
CLIENTS = 16
WORK = 0.020  # seconds of work in each handler, before it calls downstream (or aborts)
CLEANUP = 0.050  # seconds an aborting handler's finally works before its downstream call
AUDIT = "audit"  # the request message the handler aborts (abort-finally)
BOUND = 30.0  # seconds any one step (a process start, a shutdown) may take


# -- the backend process ------------------------------------------------------------------------


class _Backend(echo_pb2_grpc.EchoServicer):
    def __init__(self, downstream: Any) -> None:
        self._stub = echo_pb2_grpc.EchoStub(downstream)
        self.downstream_ok = 0
        self.audits_started = 0
        self.audits_ok = 0
        self.refused: collections.Counter[str] = collections.Counter()
        self.refused_late = 0  # of those: handlers that started after SIGTERM
        self.sigterm = float("inf")

    async def _call_downstream(self, message: str, started: float) -> None:
        try:
            await self._stub.Unary(echo_pb2.EchoRequest(message=message), timeout=BOUND)
        except (
            Exception
        ) as error:  # AioRpcError, ChannelClosedError, UsageError "Channel is closed"
            code = error.code() if isinstance(error, grpc.aio.AioRpcError) else None
            self.refused[code.name if code is not None else type(error).__name__] += 1
            self.refused_late += started > self.sigterm
            raise
        self.downstream_ok += 1

    async def Unary(self, request: echo_pb2.EchoRequest, context: Any) -> echo_pb2.EchoResponse:
        started = time.monotonic()
        if request.message != AUDIT:
            await asyncio.sleep(WORK)
            await self._call_downstream(request.message, started)
            return echo_pb2.EchoResponse(message=request.message)
        try:
            await asyncio.sleep(WORK)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "rejected (and audited)")
        finally:
            self.audits_started += 1
            await asyncio.sleep(CLEANUP)
            await self._call_downstream(AUDIT, started)
            self.audits_ok += 1
        raise AssertionError("abort() returned")  # pragma: no cover


async def _serve(args: argparse.Namespace) -> dict[str, Any]:
    variant, mistake = args.backend
    health_servicer = health.aio.HealthServicer()
    downstream: Any
    server: Any
    if variant.startswith("graceful"):
        downstream = aio.insecure_channel(args.downstream, drain_timeout=args.grace)
        server = aio.server(
            drain_timeout=args.grace,
            unready_delay=args.unready_delay,
            health=health_servicer,
            holds=[downstream] if variant == "graceful" else [],
        )
    else:
        downstream = grpc.aio.insecure_channel(args.downstream)
        server = grpc.aio.server()
    backend = _Backend(downstream)  # type: ignore[abstract]  # three methods unused
    echo_pb2_grpc.add_EchoServicer_to_server(backend, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    terminated = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminated.set)
    print("LISTENING", port, flush=True)
    await terminated.wait()
    began = backend.sigterm = time.monotonic()

    async def stop_server() -> None:
        if variant == "best":
            await health_servicer.enter_graceful_shutdown()
            await asyncio.sleep(args.unready_delay)
        await server.stop(args.grace)  # graceful: the drain, unready delay included

    if mistake == "close-at-sigterm":
        await asyncio.gather(stop_server(), downstream.close())
    else:
        await stop_server()
        await downstream.close()
    return {
        "variant": variant,
        "mistake": mistake,
        "shutdown_s": time.monotonic() - began,
        "downstream_ok": backend.downstream_ok,
        "audits_ok": backend.audits_ok,
        # cut short: still in their finally when the shutdown was over and the process exited
        "audits_lost": backend.audits_started - backend.audits_ok,
        "refused": dict(backend.refused),
        "refused_late": backend.refused_late,
    }


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Result:
    mistake: str
    variant: str
    rounds: int = 0
    downstream_ok: int = 0
    audits_ok: int = 0
    audits_lost: int = 0
    refused: collections.Counter[str] = field(default_factory=collections.Counter)
    refused_late: int = 0
    refused_per_round: list[int] = field(default_factory=list)
    client_failed: collections.Counter[str] = field(default_factory=collections.Counter)
    shutdowns: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mistake": self.mistake,
            "variant": self.variant,
            "rounds": self.rounds,
            "downstream_ok": self.downstream_ok,
            "audits_ok": self.audits_ok,
            "audits_lost": self.audits_lost,
            "downstream_refused": sum(self.refused.values()),
            "refused": dict(self.refused),
            "refused_started_after_sigterm": self.refused_late,
            "refused_per_round": self.refused_per_round,
            "client_failed": dict(self.client_failed),
            "shutdowns_s": [round(t, 3) for t in self.shutdowns],
        }


class _Progress:
    """The clients' calls so far; ``warm`` is set once they reach ``needed``."""

    def __init__(self, needed: int) -> None:
        self.calls = 0
        self.needed = needed
        self.warm = asyncio.Event()

    def count(self) -> None:
        self.calls += 1
        if self.calls >= self.needed:
            self.warm.set()


async def _client(
    target: str, message: str, result: Result, progress: _Progress, stop: asyncio.Event
) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        request = echo_pb2.EchoRequest(message=message)
        while not stop.is_set():
            try:
                await stub.Unary(request, timeout=BOUND)
            except grpc.aio.AioRpcError as error:
                if message == AUDIT and error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    pass  # the answer an audited request gets
                elif error.code() == grpc.StatusCode.UNAVAILABLE and stop.is_set():
                    return
                else:
                    result.client_failed[error.code().name] += 1
                    await asyncio.sleep(0.005)  # the backend is going: do not spin
            progress.count()


async def _round(settings: argparse.Namespace, variant: str, mistake: str, result: Result) -> None:
    """One backend: started, loaded by the clients, SIGTERM once they have made
    ``warmup_calls`` calls, its report added to ``result``."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "benchmarks.rolling_restart.orders"),
        *("--backend", variant, mistake, "--downstream", settings.downstream),
        *("--unready-delay", str(settings.unready_delay), "--grace", str(settings.grace)),
        stdout=asyncio.subprocess.PIPE,
    )
    stop = asyncio.Event()
    clients: list[asyncio.Task[None]] = []
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), BOUND)
        if not line.startswith(b"LISTENING "):
            raise RuntimeError(f"backend {variant}: expected LISTENING, got {line!r}")
        target = f"127.0.0.1:{int(line.split()[1])}"
        progress = _Progress(settings.warmup_calls)
        messages = [AUDIT if mistake == "abort-finally" and i % 2 else "c" for i in range(CLIENTS)]
        clients = [
            asyncio.create_task(_client(target, message, result, progress, stop))
            for message in messages
        ]
        await asyncio.wait_for(progress.warm.wait(), BOUND)
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(process.communicate(), settings.grace + BOUND)
        result.shutdowns.append(time.monotonic() - began)
    finally:
        stop.set()
        if process.returncode is None:
            process.kill()
            await process.wait()
        if clients:
            await asyncio.wait_for(asyncio.gather(*clients, return_exceptions=True), BOUND)
    reports = [line for line in out.decode().splitlines() if line.startswith("REPORT ")]
    if not reports:
        raise RuntimeError(f"backend {variant} ({mistake}) sent no report")
    report = json.loads(reports[-1][len("REPORT ") :])
    result.rounds += 1
    result.downstream_ok += report["downstream_ok"]
    result.audits_ok += report["audits_ok"]
    result.audits_lost += report["audits_lost"]
    result.refused.update(report["refused"])
    result.refused_late += report["refused_late"]
    result.refused_per_round.append(sum(report["refused"].values()))


async def _run(settings: argparse.Namespace) -> list[Result]:
    results = []
    with EchoServerProcess() as downstream:
        settings.downstream = downstream.target
        for mistake in settings.mistake or MISTAKES:
            for variant in settings.variant or VARIANTS:
                result = Result(mistake, variant)
                for _ in range(settings.rounds):
                    await _round(settings, variant, mistake, result)
                print(describe(result), flush=True)
                results.append(result)
    return results


def describe(result: Result) -> str:
    refused = ", ".join(f"{name} {n}" for name, n in sorted(result.refused.items())) or "0"
    failed = ", ".join(f"{name} {n}" for name, n in sorted(result.client_failed.items())) or "0"
    shutdowns = ", ".join(f"{t:.2f}" for t in result.shutdowns)
    return (
        f"{result.mistake:<17} {result.variant:<16} downstream ok={result.downstream_ok:<5} "
        f"refused={sum(result.refused.values())} ({refused}; per round "
        f"{result.refused_per_round}; {result.refused_late} by handlers started after SIGTERM); "
        f"audits ok={result.audits_ok} lost={result.audits_lost}; client failures: {failed}; "
        f"shutdowns [s]: {shutdowns}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.rolling_restart.orders", description=__doc__
    )
    parser.add_argument("--mistake", choices=MISTAKES, action="append")
    parser.add_argument("--variant", choices=VARIANTS, action="append")
    parser.add_argument("--rounds", type=int, default=3, help="backend shutdowns per variant")
    parser.add_argument("--warmup-calls", type=int, default=100)
    parser.add_argument("--unready-delay", type=float, default=0.5)
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--backend", nargs=2, metavar=("VARIANT", "MISTAKE"), help=argparse.SUPPRESS
    )
    parser.add_argument("--downstream", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.backend:
        report = asyncio.run(_serve(args))
        print("REPORT", json.dumps(report), flush=True)
        os._exit(0)  # the report is out; skip interpreter teardown (grpc's threads)
    if args.rounds < 1 or args.warmup_calls < 1:
        parser.error("--rounds and --warmup-calls must be at least 1")
    results = asyncio.run(_run(args))
    if args.json:
        args.json.write_text(json.dumps([r.as_dict() for r in results], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
