"""GracefulServer under hostile conditions: uvloop, a failing or hanging health servicer, an
interceptor that answers by itself."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health

from .server_app import BOUND, METHOD, Gated, drain_one, finish, serving, start, status_of, wait


def test_drain_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        servicer, health_servicer = Gated(), health.aio.HealthServicer()
        stream = METHOD["unary_stream"]
        options: dict[str, Any] = {"health": health_servicer, "cancel_on_drain": [stream]}
        async with serving(servicer, **options) as (server, channel, _target):
            work = start(channel, "unary_unary", "gate-work")
            watch = start(channel, "unary_stream", "forever")
            abort = start(channel, "stream_stream", "abort")
            await wait(servicer.event(servicer.started, "gate-work"))
            await wait(servicer.event(servicer.started, "forever"))
            assert await status_of(abort, "stream_stream") == grpc.StatusCode.INVALID_ARGUMENT
            stopping = asyncio.ensure_future(server.stop(BOUND))
            assert await status_of(watch, "unary_stream") == grpc.StatusCode.UNAVAILABLE
            servicer.event(servicer.gates, "gate-work").set()
            servicer.event(servicer.gates, "abort").set()
            assert await finish(work, "unary_unary") == ["gate-work"]
            report = await asyncio.wait_for(stopping, BOUND)
            assert report.drained and report.completed == 2 and len(report.interrupted) == 1

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())


class _BrokenHealth:
    def __init__(self, hang: bool) -> None:
        self._hang = hang

    async def enter_graceful_shutdown(self) -> None:
        if self._hang:
            await asyncio.Event().wait()
        raise RuntimeError("health servicer broke")


@pytest.mark.parametrize("hang", [False, True])
async def test_a_failing_or_hanging_health_servicer_cannot_stop_the_drain(
    hang: bool, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving(health=_BrokenHealth(hang)) as (server, channel, _target):
        assert await finish(start(channel, "unary_unary", "m"), "unary_unary") == ["m"]
        began = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="graceful_grpc"):
            report = await asyncio.wait_for(server.stop(0.2 if hang else BOUND), BOUND)
        assert time.monotonic() - began < 1.0 and report.drained
        logged = " ".join(record.getMessage() for record in caplog.records)
        assert ("still entering shutdown" if hang else "enter_graceful_shutdown() failed") in logged


class _Recording:
    def __init__(self, coroutine: bool) -> None:
        self.coroutine = coroutine
        self.told = False

    def enter_graceful_shutdown(self) -> Any:
        if not self.coroutine:
            self.told = True
            return None

        async def tell() -> None:
            self.told = True

        return tell()


@pytest.mark.parametrize("coroutine", [False, True])
async def test_stop_zero_still_says_not_serving(coroutine: bool) -> None:
    recording = _Recording(coroutine)
    async with serving(health=recording) as (server, _channel, _target):
        report = await asyncio.wait_for(server.stop(0), BOUND)
        assert report.drained and recording.told


async def test_handlers_an_interceptor_makes_itself_are_tracked_too() -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def own(request: bytes, context: Any) -> bytes:
        entered.set()
        await release.wait()
        return b"own"

    class Answering(grpc.aio.ServerInterceptor):
        async def intercept_service(
            self, continuation: Callable[[Any], Awaitable[Any]], details: Any
        ) -> Any:
            if details.method == "/test.Own/Method":
                return grpc.unary_unary_rpc_method_handler(own)  # type: ignore[no-untyped-call]
            return await continuation(details)

    async with serving(interceptors=[Answering()]) as (server, channel, _target):
        call: Any = channel.unary_unary("/test.Own/Method")
        answer, report = await drain_one(server, call(b""), entered, release)
        assert answer == b"own" and report.drained and report.completed == 1


async def test_an_interceptor_that_changes_a_methods_handler_gets_each_one_tracked() -> None:
    # The wrapped handler of a method is reused only while the handler found for it is the same
    # object: an interceptor that picks another handler per call gets that one, tracked.
    entered, release = asyncio.Event(), asyncio.Event()

    async def first(request: bytes, context: Any) -> bytes:
        return b"first"

    async def second(request: bytes, context: Any) -> bytes:
        entered.set()
        await release.wait()
        return b"second"

    made = {
        behaviour: grpc.unary_unary_rpc_method_handler(behaviour)  # type: ignore[no-untyped-call]
        for behaviour in (first, second)
    }
    handlers = iter([made[first], made[first], made[second]])  # the second call: the same one

    class Switching(grpc.aio.ServerInterceptor):
        async def intercept_service(
            self, continuation: Callable[[Any], Awaitable[Any]], details: Any
        ) -> Any:
            if details.method == "/test.Own/Method":
                return next(handlers)
            return await continuation(details)

    async with serving(interceptors=[Switching()]) as (server, channel, _target):
        call: Any = channel.unary_unary("/test.Own/Method")
        assert await asyncio.wait_for(call(b""), BOUND) == b"first"
        assert await asyncio.wait_for(call(b""), BOUND) == b"first"
        answer, report = await drain_one(server, call(b""), entered, release)
        assert answer == b"second" and report.drained and report.completed == 1
