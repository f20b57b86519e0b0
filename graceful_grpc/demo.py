"""``python -m graceful_grpc demo``: the shutdown problem, and its fix, side by side.

``DESCRIPTION`` (the command's ``--help``) says what the scenario does. The demo needs only the
core install: its server uses grpc's generic handlers with bytes, not the protobuf stubs of
``graceful_grpc.testing``; ``--metrics`` alone needs opentelemetry-sdk.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import grpc

from . import aio
from ._demo_server import METHOD, DemoServer, encode_request

if TYPE_CHECKING:
    from ._demo_metrics import DemoMetrics

__all__ = ("DemoResult", "configure", "main", "run", "run_demo")


@dataclass
class DemoResult:
    """What one run of the scenario delivered."""

    label: str
    jobs: int
    delivered: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    close_seconds: float = 0.0

    @property
    def lost(self) -> int:
        return self.jobs - self.delivered


async def _scenario(
    label: str,
    jobs: int,
    make_channel: Callable[[str], grpc.aio.Channel],
    close: Callable[[Any], Awaitable[object]],
    job_context: Callable[[Any], Any],
) -> DemoResult:
    result = DemoResult(label=label, jobs=jobs)
    errors: collections.Counter[str] = collections.Counter()
    async with DemoServer() as server:
        channel = make_channel(server.target)
        # No (de)serialisers: bytes in and out.
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
        first_done = asyncio.Event()
        closed = asyncio.Event()

        async def job(index: int) -> None:
            try:
                async with job_context(channel):
                    await call(encode_request(f"work-{index}", delay_ms=100 + 10 * index))
                    first_done.set()
                    await asyncio.sleep(0.2)  # local work: no RPC in flight now
                    await call(encode_request(f"report-{index}"))
            except BaseException as exc:  # the demo's point: see what each approach raises
                errors[type(exc).__name__] += 1
                if not isinstance(exc, Exception):
                    raise

        async def on_sigterm() -> None:
            started = time.monotonic()
            await close(channel)
            result.close_seconds = time.monotonic() - started
            closed.set()

        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, lambda: loop.create_task(on_sigterm()))
        try:
            tasks = [asyncio.create_task(job(i)) for i in range(jobs)]
            await first_done.wait()
            os.kill(os.getpid(), signal.SIGTERM)  # mid-way: work is still under way
            await closed.wait()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
        result.delivered = sum(1 for m in server.delivered if m.startswith("report-"))
    result.errors = dict(errors)
    return result


class _NoHold:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


async def run_demo(
    jobs: int = 20, drain_timeout: float = 10.0, metrics: DemoMetrics | None = None
) -> list[DemoResult]:
    """Runs the scenario with plain grpc.aio, then with graceful_grpc.

    Args:
        jobs: Units of work.
        drain_timeout: The grace of grpc.aio's close, and graceful_grpc's drain deadline.
        metrics: If given, instruments the graceful channel and reads its metrics at SIGTERM
            and after the close.
    """

    def graceful_channel(target: str) -> aio.GracefulChannel:
        channel = aio.insecure_channel(target, drain_timeout=drain_timeout)
        return channel if metrics is None else metrics.instrumented(channel)

    async def graceful_close(channel: aio.GracefulChannel) -> object:
        if metrics is not None:
            metrics.read("at SIGTERM")
        report = await channel.close()
        if metrics is not None:
            metrics.read("after close")
        return report

    plain = await _scenario(
        f"grpc.aio close(grace={drain_timeout:g})",
        jobs,
        grpc.aio.insecure_channel,
        lambda channel: channel.close(grace=drain_timeout),
        lambda channel: _NoHold(),
    )
    graceful = await _scenario(
        "graceful_grpc",
        jobs,
        graceful_channel,
        graceful_close,
        lambda channel: channel.hold(),
    )
    return [plain, graceful]


def _table(results: list[DemoResult]) -> str:
    def errors(result: DemoResult) -> str:
        return ", ".join(f"{name} x{n}" for name, n in sorted(result.errors.items())) or "none"

    rows = [
        ("", [r.label for r in results]),
        ("reports delivered", [f"{r.delivered}/{r.jobs}" for r in results]),
        ("reports lost", [str(r.lost) for r in results]),
        ("errors seen", [errors(r) for r in results]),
        ("time to close", [f"{r.close_seconds:.3f} s" for r in results]),
    ]
    widths = [max(len(row[0]) for row in rows)] + [
        max(len(row[1][i]) for row in rows) for i in range(len(results))
    ]
    lines = []
    for name, cells in rows:
        parts = [name.ljust(widths[0])] + [
            c.ljust(w) for c, w in zip(cells, widths[1:], strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


SUMMARY = "plain grpc.aio vs graceful_grpc: the reports lost at SIGTERM"

DESCRIPTION = """\
The shutdown problem, and its fix, side by side.

N jobs each make a slow RPC, do local work with no RPC in flight, then send a
final "report" RPC to a local server (127.0.0.1, a free port). Mid-way the
process sends itself SIGTERM and the handler closes the channel. The scenario
runs once with plain grpc.aio close(grace=...) and once with graceful_grpc,
and counts the reports the server received.

Needs only the core install (grpcio). Exit status 0 if graceful_grpc delivered
every report, 1 if not, 2 for bad options."""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's paragraphs; option help says its own default."""


def configure(parser: argparse.ArgumentParser) -> None:
    """Gives ``parser`` the demo's description and options (for ``run``)."""
    parser.description = DESCRIPTION
    parser.formatter_class = _HelpFormatter
    parser.add_argument(
        "--jobs", type=int, default=20, metavar="N", help="units of work (default: %(default)s)"
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="grpc.aio's close() grace and graceful_grpc's drain deadline, in seconds "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON instead of a table (default: a table)"
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="also show the graceful run's OpenTelemetry metrics at SIGTERM and after the "
        "close; needs opentelemetry-sdk (default: off)",
    )


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Runs the demo with the options ``parser`` (set up by ``configure``) parsed into ``args``.

    Returns:
        0 if graceful_grpc delivered every report, else 1. Bad options exit with status 2
        (through ``parser.error``) before anything runs.
    """
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if not args.drain_timeout > 0:
        parser.error("--drain-timeout must be positive")
    metrics = _metrics_recorder(parser) if args.metrics else None
    results = asyncio.run(run_demo(args.jobs, args.drain_timeout, metrics))
    if args.json:
        out: list[dict[str, Any]] = [{**asdict(r), "lost": r.lost} for r in results]
        if metrics is not None:
            out[-1]["metrics"] = [row.as_dict() for row in metrics.rows]
        print(json.dumps(out, indent=2))
    else:
        print(f"{args.jobs} jobs: slow RPC, local work, then a report RPC; SIGTERM mid-way\n")
        print(_table(results))
        if metrics is not None:
            print(f"\ngraceful_grpc metrics (OpenTelemetry, in-memory reader)\n\n{metrics.table()}")
    return 0 if results[-1].lost == 0 else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m graceful_grpc demo [OPTIONS]``: parses ``argv``, runs the demo (see ``run``)."""
    parser = argparse.ArgumentParser(prog="python -m graceful_grpc demo")
    configure(parser)
    return run(parser, parser.parse_args(argv))


def _metrics_recorder(parser: argparse.ArgumentParser) -> DemoMetrics:
    """The recorder for ``--metrics``; exits with a clear message without opentelemetry-sdk."""
    from ._demo_metrics import DemoMetrics  # only now: the demo itself needs no OpenTelemetry

    try:
        return DemoMetrics()
    except ImportError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
