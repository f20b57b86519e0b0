"""End-to-end client CPU against the Echo server in its own process, modes interleaved per round."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from typing import Any

import grpc

from graceful_grpc import aio
from graceful_grpc.testing import EchoServerProcess, echo_pb2, echo_pb2_grpc

from .stats import iqr, median, ratios

__all__ = ("MODES", "pin_note", "run_e2e")


class _NoOpUnary(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(details, request)


class _NoOpBidi(grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(details, requests)


MODES: dict[str, Callable[[str], grpc.aio.Channel]] = {
    "raw": grpc.aio.insecure_channel,
    "interceptor": lambda t: grpc.aio.insecure_channel(t, interceptors=[_NoOpUnary(), _NoOpBidi()]),
    "tracker": lambda t: grpc.aio.insecure_channel(
        t, interceptors=aio.InFlightTracker().interceptors
    ),
    "graceful": aio.insecure_channel,
}


async def _unary_cpu(channel: grpc.aio.Channel, calls: int) -> tuple[float, float]:
    stub = echo_pb2_grpc.EchoStub(channel)
    request = echo_pb2.EchoRequest(message="x")
    for _ in range(20):
        await stub.Unary(request)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        await stub.Unary(request)
    return (time.process_time() - cpu) / calls, (time.perf_counter() - wall) / calls


async def _bidi_cpu(channel: grpc.aio.Channel, messages: int) -> tuple[float, float]:
    stub = echo_pb2_grpc.EchoStub(channel)
    request = echo_pb2.EchoRequest(message="x")
    stream = stub.BidiStream()
    for _ in range(20):
        await stream.write(request)
        await stream.read()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(messages):
        await stream.write(request)
        await stream.read()
    result = (time.process_time() - cpu) / messages, (time.perf_counter() - wall) / messages
    await stream.done_writing()
    await stream.code()
    return result


WORKLOADS = {"unary": _unary_cpu, "bidi": _bidi_cpu}


def pin_note() -> tuple[int | None, int | None, str]:
    """CPUs for server and client, and a sentence saying what was done."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) >= 2:
        return cpus[0], cpus[1], f"server pinned to CPU {cpus[0]}, client to CPU {cpus[1]}"
    return None, None, "fewer than 2 CPUs: server and client not pinned"


async def _round(target: str, workload: str, modes: list[str], n: int) -> dict[str, float]:
    result = {}
    order = list(modes)
    random.shuffle(order)
    for mode in order:
        channel = MODES[mode](target)
        try:
            cpu, _wall = await WORKLOADS[workload](channel, n)
        finally:
            await channel.close()
        result[mode] = cpu
    return result


def run_e2e(rounds: int, n: int, modes: list[str], workloads: list[str]) -> dict[str, Any]:
    """Runs ``rounds`` interleaved rounds; returns per-mode medians and ratios to raw."""
    server_cpu, client_cpu, note = pin_note()
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    out: dict[str, Any] = {"pinning": note, "rounds": rounds, "calls_per_round": n}
    with EchoServerProcess(cpu=server_cpu) as server:
        for workload in workloads:
            per_mode: dict[str, list[float]] = {mode: [] for mode in modes}
            for _ in range(rounds):
                for mode, cpu in asyncio.run(_round(server.target, workload, modes, n)).items():
                    per_mode[mode].append(cpu)
            out[workload] = {
                mode: {
                    "cpu_us_median": median(v) * 1e6,
                    "ratio_to_raw_median": median(ratios(v, per_mode["raw"])),
                    "ratio_to_raw_iqr": iqr(ratios(v, per_mode["raw"])),
                }
                for mode, v in per_mode.items()
            }
    return out
