"""instrument(server): a GracefulServer's handlers in flight and its drain, read back with the
SDK's in-memory reader."""

from __future__ import annotations

import asyncio
import gc

import grpc
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from graceful_grpc import aio
from graceful_grpc.contrib import opentelemetry as gotel

from .server_app import BOUND, METHOD, Gated, serving, start, status_of, wait
from .test_opentelemetry import collect

ECHO = "graceful_grpc.testing.v1.Echo"
BASE = {"rpc.system": "grpc", "deployment": "blue"}


async def test_server_in_flight_and_drain_are_reported() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    servicer = Gated()
    stream = METHOD["unary_stream"]
    async with serving(servicer, cancel_on_drain=[stream]) as (server, channel, _target):
        instrumentation = gotel.instrument(
            server, meter_provider=provider, attributes={"deployment": "blue"}
        )
        with pytest.raises(ValueError, match="already instrumented"):
            gotel.instrument(server, meter_provider=provider)
        done = start(channel, "unary_unary", "gate-done")
        cut = start(channel, "stream_unary", "gate-cut")
        watch = start(channel, "unary_stream", "forever")
        for message in ("gate-done", "gate-cut", "forever"):
            await wait(servicer.event(servicer.started, message))
        metrics = collect(reader)
        assert metrics.value("graceful_grpc.server.calls.in_flight", **BASE) == 3
        assert metrics.units["graceful_grpc.server.calls.in_flight"] == "{call}"
        stopping = asyncio.ensure_future(server.stop(0.3))
        await asyncio.wait_for(server.wait_draining(), BOUND)
        servicer.event(servicer.gates, "gate-done").set()
        assert await status_of(done, "unary_unary") == grpc.StatusCode.OK
        assert await status_of(watch, "unary_stream") == grpc.StatusCode.UNAVAILABLE
        report = await asyncio.wait_for(stopping, BOUND)
        assert await status_of(cut, "stream_unary") != grpc.StatusCode.OK
        assert not report.drained
        metrics = collect(reader)
        duration = metrics.value(
            "graceful_grpc.server.drain.duration",
            **BASE,
            **{"graceful_grpc.drain.outcome": "deadline"},
        )
        assert duration.count == 1 and duration.sum == pytest.approx(report.waited)
        calls = "graceful_grpc.server.drain.calls"
        assert metrics.value(calls, **BASE, **{"graceful_grpc.drain.result": "completed"}) == 1
        cancelled = {"graceful_grpc.drain.result": "cancelled", "rpc.service": ECHO}
        assert metrics.value(calls, **BASE, **cancelled, **{"rpc.method": "ClientStream"}) == 1
        interrupted = {"graceful_grpc.drain.result": "interrupted", "rpc.service": ECHO}
        assert metrics.value(calls, **BASE, **interrupted, **{"rpc.method": "ServerStream"}) == 1
        assert metrics.value("graceful_grpc.server.calls.in_flight", **BASE) == 0
        instrumentation.uninstrument()
        instrumentation.uninstrument()
        assert collect(reader).attribute_sets("graceful_grpc.server.calls.in_flight") == []


async def test_a_collected_server_is_no_longer_reported_and_plain_servers_are_refused() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    server = aio.server()
    gotel.instrument(server, meter_provider=provider)
    assert (
        collect(reader).value("graceful_grpc.server.calls.in_flight", **{"rpc.system": "grpc"}) == 0
    )
    del server
    gc.collect()
    assert collect(reader).attribute_sets("graceful_grpc.server.calls.in_flight") == []
    with pytest.raises(TypeError, match="GracefulServer"):
        gotel.instrument(grpc.aio.server(), meter_provider=provider)
