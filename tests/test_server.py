"""aio.server(): a real grpc.aio server whose stop() drains handlers, health first, one deadline."""

from __future__ import annotations

import asyncio
import gc
import math
import time
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from graceful_grpc import ChannelState, DrainReport, ShutdownSequence, aio
from graceful_grpc.testing import echo_pb2, echo_pb2_grpc

from .server_app import (
    BOUND,
    KINDS,
    METHOD,
    Gated,
    drain_one,
    finish,
    generic_handler,
    serving,
    start,
    status_of,
    wait,
)

WATCH = "/grpc.health.v1.Health/Watch"
STREAM = METHOD["unary_stream"]
# What a client sees of a call its server cancelled at its deadline (grpc's cancel_all_calls,
# then the connection's GOAWAY: either may reach the client first).
CUT = {grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE}


# -- a real grpc.aio.Server -------------------------------------------------------------------


async def test_is_a_grpc_aio_server_with_generated_registration_ports_and_interceptors() -> None:
    seen: list[str] = []

    class Recording(grpc.aio.ServerInterceptor):
        async def intercept_service(
            self, continuation: Callable[[Any], Awaitable[Any]], details: Any
        ) -> Any:
            seen.append(details.method)
            return await continuation(details)

    def upper(request: bytes, context: Any) -> bytes:
        return request.upper()

    generic = generic_handler("test.Raw", "Upper", upper)
    server = aio.server(interceptors=[Recording()], handlers=[generic])
    assert isinstance(server, grpc.aio.Server)
    echo_pb2_grpc.add_EchoServicer_to_server(Gated(), server)  # add_registered_method_handlers
    server.add_generic_rpc_handlers([generic])
    port = server.add_insecure_port("127.0.0.1:0")
    assert port > 0
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        assert await finish(start(channel, "unary_unary", "m"), "unary_unary") == ["m"]
        raw: Any = channel.unary_unary("/test.Raw/Upper")
        no_such: Any = channel.unary_unary("/no.Such/Method")
        assert await asyncio.wait_for(raw(b"abc"), BOUND) == b"ABC"
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await asyncio.wait_for(no_such(b""), BOUND)
        assert missing.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert seen == [METHOD["unary_unary"], "/test.Raw/Upper", "/no.Such/Method"]
    assert await server.wait_for_termination(timeout=0) is True  # still serving
    report = await asyncio.wait_for(server.stop(), BOUND)
    assert report.closed and report.drained and server.state is ChannelState.CLOSED
    assert await asyncio.wait_for(server.wait_for_termination(), BOUND) is False


async def test_all_four_kinds_tracked_until_they_end_and_stop_waits_for_them() -> None:
    servicer = Gated()
    async with serving(servicer) as (server, channel, _target):
        calls = {kind: start(channel, kind, f"gate-{kind}") for kind in KINDS}
        for kind in KINDS:
            await wait(servicer.event(servicer.started, f"gate-{kind}"))
        assert server.in_flight == 4
        stopping = asyncio.ensure_future(server.stop(BOUND))
        await asyncio.wait_for(server.wait_draining(), BOUND)
        assert server.state is ChannelState.DRAINING
        for kind in KINDS:
            assert not stopping.done()
            servicer.event(servicer.gates, f"gate-{kind}").set()
            assert await finish(calls[kind], kind) == [f"gate-{kind}"]
        report = await asyncio.wait_for(stopping, BOUND)
        assert report.drained and report.completed == 4 and server.in_flight == 0
        assert report.cancelled == () and report.interrupted == ()


@pytest.mark.parametrize("kind", KINDS)
async def test_stop_waits_for_a_finally_after_abort_grpc_37239(kind: str) -> None:
    servicer = Gated()
    async with serving(servicer) as (server, channel, _target):
        call = start(channel, kind, "abort")
        assert await status_of(call, kind) == grpc.StatusCode.INVALID_ARGUMENT
        assert server.in_flight == 1  # the client has its status; the finally still runs
        stopping = asyncio.ensure_future(server.stop(BOUND))
        await asyncio.wait_for(server.wait_draining(), BOUND)
        await asyncio.sleep(0.05)  # grpc's own stop returns here (#37239); ours must not
        assert not stopping.done()
        servicer.event(servicer.gates, "abort").set()
        report = await asyncio.wait_for(stopping, BOUND)
        assert servicer.ended["abort"].is_set()
        assert report.drained and report.completed == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_raising_and_client_cancelled_handlers_leave_the_books(kind: str) -> None:
    servicer = Gated()
    async with serving(servicer) as (server, channel, _target):
        assert await status_of(start(channel, kind, "raise"), kind) == grpc.StatusCode.UNKNOWN
        await wait(servicer.event(servicer.ended, "raise"))
        call = start(channel, kind, "gate-cancel")
        await wait(servicer.event(servicer.started, "gate-cancel"))
        call.cancel()
        await wait(servicer.event(servicer.ended, "gate-cancel"))
        assert servicer.outcome["gate-cancel"] == "cancelled"
        await asyncio.sleep(0)  # the wrapper's finally runs right after the handler's
        assert server.in_flight == 0


async def test_deadline_cancels_the_rest_and_reports_them() -> None:
    servicer = Gated()
    async with serving(servicer) as (server, channel, _target):
        calls = {kind: start(channel, kind, f"gate-{kind}") for kind in KINDS}
        for kind in KINDS:
            await wait(servicer.event(servicer.started, f"gate-{kind}"))
        began = time.monotonic()
        report = await asyncio.wait_for(server.stop(0.2), BOUND)
        assert 0.2 <= time.monotonic() - began < 1.0
        assert not report.drained and report.completed == 0
        assert sorted((info.method, info.kind) for info in report.cancelled) == sorted(
            (METHOD[kind], kind) for kind in KINDS
        )
        assert all(info.age >= 0.2 for info in report.cancelled)
        for kind in KINDS:
            assert await status_of(calls[kind], kind) in CUT
            await wait(servicer.event(servicer.ended, f"gate-{kind}"))
            assert servicer.outcome[f"gate-{kind}"] == "cancelled"


async def test_a_handler_that_ignores_cancellation_cannot_hold_stop_past_its_deadline() -> None:
    servicer = Gated()
    async with serving(servicer) as (server, channel, _target):
        call = start(channel, "unary_unary", "stubborn")
        await wait(servicer.event(servicer.started, "stubborn"))
        began = time.monotonic()
        report = await asyncio.wait_for(server.stop(0.1), BOUND)
        assert time.monotonic() - began < 1.0
        assert [info.method for info in report.cancelled] == [METHOD["unary_unary"]]
        assert servicer.outcome["stubborn"] == "cancelled once"
        servicer.event(servicer.gates, "stubborn").set()
        await wait(servicer.event(servicer.ended, "stubborn"))
        call.cancel()


# -- stop(): repeated, concurrent, shorter grace, cancelled awaiter, listeners ----------------


async def test_concurrent_and_repeated_stops_share_one_report_shorter_grace_wins() -> None:
    servicer = Gated()
    heard: list[DrainReport] = []
    async with serving(servicer) as (server, channel, _target):
        server.add_drain_listener(heard.append)
        server.add_drain_listener(lambda report: 1 / 0)  # logged, never raised
        call = start(channel, "unary_unary", "gate-long")
        await wait(servicer.event(servicer.started, "gate-long"))
        first = asyncio.ensure_future(server.stop(BOUND))
        await asyncio.wait_for(server.wait_draining(), BOUND)
        began = time.monotonic()
        second = asyncio.ensure_future(server.stop(0.1))
        reports = await asyncio.wait_for(asyncio.gather(first, second), BOUND)
        assert time.monotonic() - began < 1.0
        assert reports[0] is reports[1] and not reports[0].drained
        assert await server.stop() is reports[0] and await server.stop(BOUND) is reports[0]
        assert heard == [reports[0]]
        assert await status_of(call, "unary_unary") in CUT


async def test_cancelling_the_task_awaiting_stop_does_not_stop_the_drain() -> None:
    servicer = Gated()
    async with serving(servicer) as (server, channel, _target):
        call = start(channel, "unary_unary", "gate-work")
        await wait(servicer.event(servicer.started, "gate-work"))
        awaiting = asyncio.ensure_future(server.stop(BOUND))
        await asyncio.wait_for(server.wait_draining(), BOUND)
        awaiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await awaiting
        assert server.state is ChannelState.DRAINING
        servicer.event(servicer.gates, "gate-work").set()
        assert await finish(call, "unary_unary") == ["gate-work"]
        report = await asyncio.wait_for(server.stop(), BOUND)
        assert report.drained and report.completed == 1


async def test_stop_before_start_and_none_means_drain_timeout() -> None:
    server = aio.server(drain_timeout=0.5)
    assert server.drain_timeout == 0.5 and server.unready_delay == 0.0
    report = await asyncio.wait_for(server.stop(), BOUND)
    assert report.drained and report.completed == 0 and server.state is ChannelState.CLOSED


# -- health first, unready_delay, cancel_on_drain ---------------------------------------------


async def test_health_not_serving_then_unready_delay_keeps_serving_new_calls() -> None:
    servicer, health_servicer = Gated(), health.aio.HealthServicer()
    async with serving(servicer, health=health_servicer, unready_delay=1.0) as (
        server,
        channel,
        _target,
    ):
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        checker = health_pb2_grpc.HealthStub(channel)
        serving_now = await asyncio.wait_for(checker.Check(health_pb2.HealthCheckRequest()), BOUND)
        assert serving_now.status == health_pb2.HealthCheckResponse.SERVING
        began = time.monotonic()
        stopping = asyncio.ensure_future(server.stop(BOUND))
        await asyncio.wait_for(server.wait_draining(), BOUND)
        check = await asyncio.wait_for(checker.Check(health_pb2.HealthCheckRequest()), BOUND)
        assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING
        # a new call during the delay is still served (the balancer has not moved away yet)
        assert await finish(start(channel, "unary_unary", "late"), "unary_unary") == ["late"]
        assert time.monotonic() - began < 1.0
        report = await asyncio.wait_for(stopping, BOUND)
        assert 1.0 <= time.monotonic() - began < 2.0
        assert report.drained and report.completed >= 2  # the Check and the late call


async def test_unready_delay_never_beyond_the_deadline() -> None:
    async with serving(unready_delay=BOUND) as (server, _channel, _target):
        began = time.monotonic()
        report = await asyncio.wait_for(server.stop(0.1), BOUND)
        assert time.monotonic() - began < 1.0 and report.drained


@pytest.mark.parametrize(
    ("kind", "message"),
    [("unary_stream", "forever"), ("stream_stream", "gate-watch"), ("unary_unary", "gate-poll")],
    ids=["async generator", "context.write", "long poll"],
)
async def test_cancel_on_drain_handlers_end_with_unavailable_at_once(
    kind: str, message: str
) -> None:
    servicer = Gated()
    method = METHOD[kind]
    async with serving(servicer, cancel_on_drain=[method], unready_delay=1.0) as (
        server,
        ch,
        _target,
    ):
        call = start(ch, kind, message)
        await wait(servicer.event(servicer.started, message))
        began = time.monotonic()
        stopping = asyncio.ensure_future(server.stop(BOUND))
        with pytest.raises(grpc.aio.AioRpcError) as told:
            await finish(call, kind)
        assert time.monotonic() - began < 0.5  # not after the unready delay, nor the grace
        assert told.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in (told.value.details() or "")
        # started during the drain: ends at once too, without running the handler
        late = start(ch, kind, "gate-late")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await finish(late, kind)
        # A call whose server ends it while its client still writes the request stream is, now
        # and then, INTERNAL "Internal error from Core" on the client: plain grpc.aio does the
        # same (a bidi handler that aborts at once: 8-16 of 1500 calls under load, grpcio 1.85.4)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE or (
            kind == "stream_stream" and refused.value.details() == "Internal error from Core"
        ), refused.value
        assert "gate-late" not in servicer.started
        report = await asyncio.wait_for(stopping, BOUND)
        assert report.drained and report.cancelled == ()
        assert [info.method for info in report.interrupted] == [method, method]
        await wait(servicer.event(servicer.ended, message))


@pytest.mark.parametrize("flavour", ["aio", "sync"])
async def test_health_watch_is_told_not_serving_then_let_go(flavour: str) -> None:
    servicer = Gated()
    pool = ThreadPoolExecutor(4) if flavour == "sync" else None
    health_servicer: Any = (
        health.aio.HealthServicer() if flavour == "aio" else health.HealthServicer()
    )
    options: dict[str, Any] = {"health": health_servicer, "unready_delay": 1.0}
    if pool is not None:
        options["migration_thread_pool"] = pool
    try:
        async with serving(servicer, **options) as (server, channel, _target):
            health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
            first = await asyncio.wait_for(watch.read(), BOUND)
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            began = time.monotonic()
            stopping = asyncio.ensure_future(server.stop(BOUND))
            told = await asyncio.wait_for(watch.read(), BOUND)
            assert told.status == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await asyncio.wait_for(watch.read(), BOUND)
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - began < 0.5  # not after the unready delay
            # a Watch opened during the delay (a health-checking client re-opens at once) is
            # told NOT_SERVING and kept until grpc's stop, not interrupted at once in a loop
            again = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
            told = await asyncio.wait_for(again.read(), BOUND)
            assert told.status == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await asyncio.wait_for(again.read(), BOUND)
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
            if flavour == "aio":  # a thread cannot be interrupted later: it is let go at once
                assert time.monotonic() - began >= 1.0
            report = await asyncio.wait_for(stopping, BOUND)
            assert report.drained
            assert [info.method for info in report.interrupted] == [WATCH, WATCH]
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


async def test_sync_handlers_on_the_thread_pool_are_tracked() -> None:
    release = asyncio.Event()
    entered = asyncio.Event()
    loop = asyncio.get_running_loop()
    done: list[str] = []

    def blocking(request: bytes, context: Any) -> bytes:
        loop.call_soon_threadsafe(entered.set)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(BOUND)
        done.append("yes")
        return request

    generic = generic_handler("test.Sync", "Block", blocking)
    with ThreadPoolExecutor(2) as pool:
        server = aio.server(pool, handlers=[generic])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            block: Any = channel.unary_unary("/test.Sync/Block")
            answer, report = await drain_one(server, block(b"x"), entered, release)
        assert answer == b"x" and report.drained and report.completed == 1 and done == ["yes"]


# -- holds: a handler's downstream calls survive the downstream channel's drain ---------------


async def test_handlers_run_held_on_downstream_channels() -> None:
    downstream_servicer = Gated()
    async with serving(downstream_servicer) as (_down, _plain, target):
        downstream = aio.insecure_channel(target)
        entered, proceed = asyncio.Event(), asyncio.Event()

        class Front(Gated):
            async def Unary(
                self, request: echo_pb2.EchoRequest, context: Any
            ) -> echo_pb2.EchoResponse:
                entered.set()
                await proceed.wait()
                answer = await finish(start(downstream, "unary_unary", "down"), "unary_unary")
                return echo_pb2.EchoResponse(message=answer[0])

        async with serving(Front(), holds=[downstream]) as (server, channel, _target):
            call = start(channel, "unary_unary", "front")
            await wait(entered)
            assert downstream.holds == 1
            # the wrong order: the application closes its handle while the server serves; the
            # server's own handle keeps the connection open for its handlers
            report = await asyncio.wait_for(downstream.close(BOUND), BOUND)
            assert not report.closed
            while_serving = downstream.state
            assert while_serving is ChannelState.OPEN
            proceed.set()
            assert await finish(call, "unary_unary") == ["down"]  # admitted: it was held
            # a handler that starts after the close: admitted too
            later = start(channel, "unary_unary", "later")
            assert await finish(later, "unary_unary") == ["down"]
            assert server.in_flight == 0
            await asyncio.wait_for(server.stop(BOUND), BOUND)
            # the server let go at the end of its drain: that was the last handle
            assert downstream.state is ChannelState.CLOSED


async def test_holds_channel_closed_before_start_runs_handlers_unheld() -> None:
    downstream_servicer = Gated()
    async with serving(downstream_servicer) as (_down, _plain, target):
        downstream = aio.insecure_channel(target)
        await asyncio.wait_for(downstream.close(BOUND), BOUND)

        class Front(Gated):
            async def Unary(
                self, request: echo_pb2.EchoRequest, context: Any
            ) -> echo_pb2.EchoResponse:
                answer = await finish(start(downstream, "unary_unary", "down"), "unary_unary")
                return echo_pb2.EchoResponse(message=answer[0])

        async with serving(Front(), holds=[downstream]) as (server, channel, _target):
            # the handler still runs (unheld); its call on the closed channel is refused
            assert await status_of(start(channel, "unary_unary", "x"), "unary_unary") == (
                grpc.StatusCode.UNKNOWN
            )
            report = await asyncio.wait_for(server.stop(BOUND), BOUND)
            assert report.drained and report.completed == 0


async def test_application_calls_keep_the_channels_drain_after_the_server_lets_go() -> None:
    # The application's own call (no handler's) on a holds channel it closed while the server
    # served: the connection drains under the channel's drain_timeout when the server lets go,
    # not under what is left of the server's deadline.
    downstream_servicer = Gated()
    async with serving(downstream_servicer) as (_down, _plain, target):
        downstream = aio.insecure_channel(target, drain_timeout=BOUND)
        closed: asyncio.Future[DrainReport] = asyncio.get_running_loop().create_future()
        downstream.add_drain_listener(closed.set_result)
        async with serving(Gated(), holds=[downstream]) as (server, _channel, _target):
            own = asyncio.ensure_future(
                finish(start(downstream, "unary_unary", "gate-own"), "unary_unary")
            )
            await wait(downstream_servicer.event(downstream_servicer.started, "gate-own"))
            report = await asyncio.wait_for(downstream.close(), BOUND)
            assert not report.closed
            stopped = await asyncio.wait_for(server.stop(0.2), BOUND)
            assert stopped.drained
            assert not own.done()  # the channel's drain goes on after the server's stop
            downstream_servicer.event(downstream_servicer.gates, "gate-own").set()
            assert await asyncio.wait_for(own, BOUND) == ["gate-own"]
            drained = await asyncio.wait_for(closed, BOUND)
            assert drained.closed and drained.drained and drained.completed == 1


async def test_a_shorter_grace_cuts_the_wait_for_the_holds_channels_short() -> None:
    downstream_servicer = Gated()
    async with serving(downstream_servicer) as (_down, _plain, target):
        downstream = aio.insecure_channel(target, drain_timeout=BOUND)
        async with serving(Gated(), holds=[downstream]) as (server, _channel, _target):
            own = start(downstream, "unary_unary", "gate-own")
            await wait(downstream_servicer.event(downstream_servicer.started, "gate-own"))
            await asyncio.wait_for(downstream.close(), BOUND)
            long_stop = asyncio.ensure_future(server.stop(BOUND))
            await asyncio.wait_for(server.wait_draining(), BOUND)
            began = time.monotonic()
            await asyncio.wait_for(server.stop(0), BOUND)
            await asyncio.wait_for(long_stop, BOUND)
            assert time.monotonic() - began < BOUND / 2
            downstream_servicer.event(downstream_servicer.gates, "gate-own").set()
            assert await finish(own, "unary_unary") == ["gate-own"]


async def test_a_stopped_server_cannot_start_and_holds_no_channel() -> None:
    downstream_servicer = Gated()
    async with serving(downstream_servicer) as (_down, _plain, target):
        downstream = aio.insecure_channel(target)
        server = aio.server(holds=[downstream])
        server.add_insecure_port("127.0.0.1:0")
        await asyncio.wait_for(server.stop(0), BOUND)
        with pytest.raises(RuntimeError, match="stopped"):
            await server.start()
        report = await asyncio.wait_for(downstream.close(), BOUND)
        assert report.closed  # no handle of the server's kept the connection open


def test_stop_at_once_returns_after_grpcs_own_stop_has_ended() -> None:
    # A loop closed right after stop(0) must not kill grpc's shutdown (found by grpc's
    # tests_aio with this server swapped in).
    async def serve_and_stop() -> DrainReport:
        async with serving() as (server, channel, _target):
            assert await finish(start(channel, "unary_unary", "x"), "unary_unary") == ["x"]
            return await asyncio.wait_for(server.stop(0), BOUND)

    loop = asyncio.new_event_loop()
    try:
        report = loop.run_until_complete(serve_and_stop())
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    finally:
        loop.close()
    assert report.drained
    assert not [task for task in pending if "stop" in repr(task.get_coro())], pending


async def test_a_dropped_server_stops_serving_as_grpcs_does() -> None:
    server = aio.server()
    echo_pb2_grpc.add_EchoServicer_to_server(Gated(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        assert await finish(start(channel, "unary_unary", "x"), "unary_unary") == ["x"]
        dropped = weakref.ref(server)
        del server
        gc.collect()
        assert dropped() is None
        # grpc's Server.__del__ schedules its shutdown; calls fail once it has run
        codes = []
        for _ in range(200):
            code = await status_of(start(channel, "unary_unary", "x"), "unary_unary")
            codes.append(code)
            if code is grpc.StatusCode.UNAVAILABLE:
                break
        assert codes[-1] is grpc.StatusCode.UNAVAILABLE, codes[-3:]
    finally:
        await channel.close()


# -- ShutdownSequence ----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["add_server", "add"])
async def test_shutdown_sequence_stops_the_server_with_a_grace_from_its_budget(how: str) -> None:
    servicer = Gated()
    async with serving(servicer, drain_timeout=BOUND) as (server, channel, _target):
        call = start(channel, "unary_unary", "gate-step")
        await wait(servicer.event(servicer.started, "gate-step"))
        sequence = ShutdownSequence(timeout=BOUND)
        if how == "add_server":
            sequence.add_server("server", server, timeout=0.2)
        else:
            sequence.add("server", server.stop, timeout=0.2)
        began = time.monotonic()
        report = await asyncio.wait_for(sequence.run(), BOUND)
        assert time.monotonic() - began < 1.0
        step = report["server"]
        assert step.outcome == "timeout" and step.drain is not None
        assert [info.method for info in step.drain.cancelled] == [METHOD["unary_unary"]]
        assert await status_of(call, "unary_unary") in CUT


async def test_shutdown_sequence_forced_stops_the_server_at_once() -> None:
    servicer = Gated()
    async with serving(servicer, drain_timeout=BOUND) as (server, channel, _target):
        call = start(channel, "unary_unary", "gate-forced")
        await wait(servicer.event(servicer.started, "gate-forced"))
        sequence = ShutdownSequence(timeout=BOUND)
        sequence.add_server("server", server)
        running = asyncio.ensure_future(sequence.run())
        await asyncio.wait_for(server.wait_draining(), BOUND)
        sequence.force()
        report = await asyncio.wait_for(running, BOUND)
        assert report.forced and report["server"].drain is not None
        assert not report["server"].drain.drained
        assert await status_of(call, "unary_unary") in CUT
    with pytest.raises(TypeError, match="GracefulServer"):
        ShutdownSequence(timeout=1).add_server("x", grpc.aio.server())


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["drain_timeout", "unready_delay"])
@pytest.mark.parametrize("value", [-1, math.nan, math.inf, 10**400])
def test_bad_seconds_raise_value_error_naming_the_argument(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=name):
        aio.server(**{name: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-1, math.nan, math.inf])
async def test_bad_grace_raises_value_error(value: float) -> None:
    server = aio.server()
    with pytest.raises(ValueError, match="grace"):
        await server.stop(value)
    assert server.state is ChannelState.OPEN


async def test_bad_holds_health_and_method_names() -> None:
    channel = aio.insecure_channel("127.0.0.1:1")
    try:
        with pytest.raises(TypeError, match="holds"):
            aio.server(holds=[grpc.aio.insecure_channel("127.0.0.1:1")])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="holds"):
            aio.server(holds=channel)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="health"):
            aio.server(health=object())
        with pytest.raises(ValueError, match="cancel_on_drain"):
            aio.server(cancel_on_drain=["Watch"])
        with pytest.raises(TypeError, match="cancel_on_drain"):
            aio.server(cancel_on_drain="/a.B/C")
        with pytest.raises(TypeError, match="unready_delay"):
            aio.server(unready_delay="1")  # type: ignore[arg-type]
    finally:
        await channel.close()
