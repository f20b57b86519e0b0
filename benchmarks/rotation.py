"""``python -m benchmarks.rotation``: what rotating the connection costs the calls around it.

Against an echo server in its own process, with 8 concurrent callers making unary calls:

- latency of unary calls (p50, p99) while the channel rotates every 100 ms, against the same
  channel not rotating, in interleaved rounds (the ratio of each round's p99s, median of rounds);
- the time from ``rotate()`` to the completion of the first call on the new connection (which
  includes the new TCP and HTTP/2 handshakes).

Per-call cost when rotation is unused is an instruction count: see ``benchmarks.callgrind``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from graceful_grpc import aio
from graceful_grpc.testing import EchoServerProcess, echo_pb2, echo_pb2_grpc

from .harness.stats import percentile

__all__ = ("main",)

CALLERS = 8


async def _latencies(target: str, seconds: float, rotate_every: float | None) -> list[float]:
    channel = aio.insecure_channel(target)
    stub = echo_pb2_grpc.EchoStub(channel)
    request = echo_pb2.EchoRequest(message="x")
    for _ in range(50):  # warm up: the connection, grpc's code paths
        await stub.Unary(request)
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def caller() -> None:
        while (started := time.perf_counter()) < stop_at:
            await stub.Unary(request)
            latencies.append(time.perf_counter() - started)

    async def rotator(every: float) -> None:
        drains: set[asyncio.Task[object]] = set()
        while time.perf_counter() < stop_at:
            await asyncio.sleep(every)
            drain = asyncio.ensure_future(channel.rotate(grace=5))
            drains.add(drain)
            drain.add_done_callback(drains.discard)
        await asyncio.gather(*drains)

    jobs = [caller() for _ in range(CALLERS)]
    if rotate_every is not None:
        jobs.append(rotator(rotate_every))
    await asyncio.gather(*jobs)
    if rotate_every is not None:
        assert channel.rotations >= seconds / rotate_every / 2, channel.rotations
    await channel.close()
    return latencies


async def _to_first_call(target: str, rotations: int) -> list[float]:
    channel = aio.insecure_channel(target)
    stub = echo_pb2_grpc.EchoStub(channel)
    request = echo_pb2.EchoRequest(message="x")
    await stub.Unary(request)
    times = []
    for _ in range(rotations):
        started = time.perf_counter()
        drain = asyncio.ensure_future(channel.rotate())
        await asyncio.sleep(0)  # rotate() has run to its first suspension
        await stub.Unary(request)
        times.append(time.perf_counter() - started)
        await drain
    await channel.close()
    return times


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


async def _run(rounds: int, seconds: float, rotations: int) -> None:
    with EchoServerProcess(cpu=0 if (os.cpu_count() or 1) > 1 else None) as server:
        p99_ratios, p50_ratios = [], []
        for index in range(rounds):
            order = [None, 0.1] if index % 2 == 0 else [0.1, None]
            results = {}
            for every in order:
                results[every] = await _latencies(server.target, seconds, every)
            still, rotating = sorted(results[None]), sorted(results[0.1])
            p50_ratios.append(percentile(rotating, 50) / percentile(still, 50))
            p99_ratios.append(percentile(rotating, 99) / percentile(still, 99))
            print(
                f"round {index + 1}: {len(still)} calls still p50 {_ms(percentile(still, 50))} "
                f"p99 {_ms(percentile(still, 99))}; {len(rotating)} calls rotating every 100 ms "
                f"p50 {_ms(percentile(rotating, 50))} p99 {_ms(percentile(rotating, 99))}"
            )
        print(
            f"rotating every 100 ms vs none, median of {rounds} rounds: "
            f"p50 x{statistics.median(p50_ratios):.3f}, p99 x{statistics.median(p99_ratios):.3f}"
        )
        times = sorted(await _to_first_call(server.target, rotations))
        print(
            f"rotate() to the first call completed on the new connection, {rotations} rotations: "
            f"p50 {_ms(percentile(times, 50))}, p99 {_ms(percentile(times, 99))}, "
            f"max {_ms(times[-1])}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rotation", description=__doc__)
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds (default 6)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per mode and round")
    parser.add_argument("--rotations", type=int, default=100, help="for rotate-to-first-call")
    args = parser.parse_args(argv)
    asyncio.run(_run(args.rounds, args.seconds, args.rotations))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
