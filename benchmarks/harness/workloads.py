"""The end-to-end workloads; each returns a Sample (units, wall and CPU time, latencies)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from graceful_grpc.testing import echo_pb2, echo_pb2_grpc

__all__ = ("WORKLOADS", "Sample")

_REQUEST = echo_pb2.EchoRequest(message="x")
WARMUP = 20


@dataclass
class Sample:
    """One measurement. ``units`` are calls, or messages for the streaming workloads."""

    units: int
    wall: float
    cpu: float
    latencies: list[float]


async def _timed(units: int, body: Callable[[list[float]], Awaitable[None]]) -> Sample:
    latencies: list[float] = []
    cpu, wall = time.process_time(), time.perf_counter()
    await body(latencies)
    return Sample(units, time.perf_counter() - wall, time.process_time() - cpu, latencies)


async def unary_sequential(channel: grpc.aio.Channel, n: int) -> Sample:
    stub = echo_pb2_grpc.EchoStub(channel)
    for _ in range(WARMUP):
        await stub.Unary(_REQUEST)

    async def body(latencies: list[float]) -> None:
        for _ in range(n):
            started = time.perf_counter()
            await stub.Unary(_REQUEST)
            latencies.append(time.perf_counter() - started)

    return await _timed(n, body)


async def unary_64_in_flight(channel: grpc.aio.Channel, n: int) -> Sample:
    stub = echo_pb2_grpc.EchoStub(channel)
    await asyncio.gather(*(stub.Unary(_REQUEST) for _ in range(64)))
    per_task = max(1, n // 64)

    async def one_lane(latencies: list[float]) -> None:
        for _ in range(per_task):
            started = time.perf_counter()
            await stub.Unary(_REQUEST)
            latencies.append(time.perf_counter() - started)

    async def body(latencies: list[float]) -> None:
        await asyncio.gather(*(one_lane(latencies) for _ in range(64)))

    return await _timed(per_task * 64, body)


async def server_stream_100(channel: grpc.aio.Channel, n: int) -> Sample:
    stub = echo_pb2_grpc.EchoStub(channel)
    request = echo_pb2.EchoRequest(message="x", behaviour=echo_pb2.Behaviour(count=100))
    streams = max(1, n // 100)
    async for _ in stub.ServerStream(request):
        pass

    async def body(latencies: list[float]) -> None:
        for _ in range(streams):
            started = time.perf_counter()
            async for _ in stub.ServerStream(request):
                pass
            latencies.append(time.perf_counter() - started)

    return await _timed(streams * 100, body)


async def bidi_ping_pong(channel: grpc.aio.Channel, n: int) -> Sample:
    stub = echo_pb2_grpc.EchoStub(channel)
    stream = stub.BidiStream()
    for _ in range(WARMUP):
        await stream.write(_REQUEST)
        await stream.read()

    async def body(latencies: list[float]) -> None:
        for _ in range(n):
            started = time.perf_counter()
            await stream.write(_REQUEST)
            await stream.read()
            latencies.append(time.perf_counter() - started)

    sample = await _timed(n, body)
    await stream.done_writing()
    await stream.code()
    return sample


WORKLOADS: dict[str, Callable[[grpc.aio.Channel, int], Awaitable[Sample]]] = {
    "unary": unary_sequential,
    "unary-64": unary_64_in_flight,
    "stream-100": server_stream_100,
    "bidi": bidi_ping_pong,
}
"""name -> workload; units: calls, calls, messages, messages."""
