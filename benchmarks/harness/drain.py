"""Drain benchmarks: how soon close() returns after the last call, and closing 10,000 streams."""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from typing import Any

import grpc

from graceful_grpc import aio
from graceful_grpc.testing import EchoServer, EchoServerProcess, echo_pb2, echo_pb2_grpc

from .stats import percentile

__all__ = ("close_latency", "mass_cancel")


async def _close_latency(drains: int) -> list[float]:
    latencies = []
    async with EchoServer() as server:
        for index in range(drains):
            gate = f"drain-{index}"
            channel = aio.insecure_channel(server.target)
            stub = echo_pb2_grpc.EchoStub(channel)
            call = stub.Unary(echo_pb2.EchoRequest(behaviour=echo_pb2.Behaviour(gate=gate)))
            await server.wait_arrivals(gate)
            finished: list[float] = []

            def record(_call: object, out: list[float] = finished) -> None:
                out.append(time.perf_counter())

            call.add_done_callback(record)
            closing = asyncio.create_task(channel.close())
            await asyncio.sleep(0)  # the drain has started
            server.open_gate(gate)
            await closing
            latencies.append(time.perf_counter() - finished[0])
    return latencies


def close_latency(drains: int) -> dict[str, Any]:
    """Time from the last in-flight call's completion to close() returning."""
    latencies = asyncio.run(_close_latency(drains))
    return {
        "drains": drains,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "max_ms": max(latencies) * 1e3,
    }


def _stream_request() -> echo_pb2.EchoRequest:
    return echo_pb2.EchoRequest(behaviour=echo_pb2.Behaviour(delay_ms=120_000))


async def _start_streams(channel: grpc.aio.Channel, streams: int) -> list[Any]:
    stub = echo_pb2_grpc.EchoStub(channel)
    request = _stream_request()
    return [stub.ServerStream(request) for _ in range(streams)]


async def _traced_bytes(make_channel: Any, target: str, streams: int) -> int:
    channel = make_channel(target)
    await channel.channel_ready()
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    calls = await _start_streams(channel, streams)
    await asyncio.sleep(0)
    allocated = tracemalloc.get_traced_memory()[0] - before
    if isinstance(channel, aio.GracefulChannel):
        await channel.close(grace=0)
    else:
        await channel.close(None)
    del calls
    return allocated


async def _memory(target: str, streams: int, make_channel: Any) -> int:
    tracemalloc.start()
    try:
        return await _traced_bytes(make_channel, target, streams)
    finally:
        tracemalloc.stop()


async def _close_all(target: str, streams: int) -> dict[str, Any]:
    channel = aio.insecure_channel(target)
    calls = await _start_streams(channel, streams)
    await asyncio.gather(*(call.wait_for_connection() for call in calls))
    in_flight = channel.in_flight
    started = time.perf_counter()
    report = await channel.close(grace=0)
    seconds = time.perf_counter() - started
    return {
        "streams": streams,
        "in_flight_before": in_flight,
        "cancelled": len(report.cancelled),
        "in_flight_after": channel.in_flight,
        "close_seconds": seconds,
    }


def mass_cancel(streams: int, server_cpu: int | None) -> dict[str, Any]:
    """close(grace=0) with ``streams`` server streams in flight; tracked-call memory overhead.

    Each pass gets a fresh server process, so no pass inherits another's abandoned handlers.
    """
    traced: dict[str, int] = {}
    for name, make_channel in (
        ("raw", grpc.aio.insecure_channel),
        ("graceful", aio.insecure_channel),
    ):
        with EchoServerProcess(cpu=server_cpu) as server:
            traced[name] = asyncio.run(_memory(server.target, streams, make_channel))
    with EchoServerProcess(cpu=server_cpu) as server:
        result = asyncio.run(_close_all(server.target, streams))
    result["raw_bytes_per_call"] = traced["raw"] / streams
    result["added_bytes_per_call"] = (traced["graceful"] - traced["raw"]) / streams
    return result
