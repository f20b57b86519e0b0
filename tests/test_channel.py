"""GracefulChannel against the real Echo server: every row of the semantics table."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
from collections.abc import AsyncIterator

import grpc
import pytest

from graceful_grpc import (
    CallInfo,
    ChannelClosedError,
    ChannelState,
    DrainReport,
    DrainTimeoutError,
    aio,
)
from graceful_grpc.testing import EchoServer

from .support.calls import KINDS, METHOD, begin_close, call_once, finish, foreign_hold, start

kinds = pytest.mark.parametrize("kind", KINDS)


def state_of(channel: aio.GracefulChannel) -> ChannelState:
    """The state, read at call time (keeps mypy from narrowing it across awaits)."""
    return channel.state


@pytest.fixture
async def channel(echo_server: EchoServer) -> AsyncIterator[aio.GracefulChannel]:
    ch = aio.insecure_channel(echo_server.target, drain_timeout=30)
    yield ch
    await ch.close(grace=0)


# -- any handle open: OPEN, every call admitted --


@kinds
async def test_open_channel_admits_every_call(channel: aio.GracefulChannel, kind: str) -> None:
    assert state_of(channel) is ChannelState.OPEN
    assert await call_once(channel, kind, "hello") == ["hello"]
    assert channel.in_flight == 0


@kinds
async def test_connection_stays_open_while_another_handle_is_open(
    channel: aio.GracefulChannel, kind: str
) -> None:
    other = channel.share()
    report = await channel.close()
    assert report.closed is False
    assert state_of(other) is ChannelState.OPEN
    assert await call_once(other, kind, "x") == ["x"]
    final = await other.close()
    assert final.closed is True
    assert state_of(other) is ChannelState.CLOSED


# -- close() on a handle while others are open --


@kinds
async def test_closed_handle_follows_drain_admission(
    channel: aio.GracefulChannel, kind: str
) -> None:
    other = channel.share()
    assert (await channel.close()).closed is False
    with pytest.raises(ChannelClosedError):
        await call_once(channel, kind)
    with pytest.raises(ChannelClosedError):
        channel.hold()
    async with other.hold():
        assert await call_once(channel, kind, "held") == ["held"]
    await other.close()


async def test_close_of_non_last_handle_returns_at_once(channel: aio.GracefulChannel) -> None:
    other = channel.share()
    hold = other.hold()
    report = await asyncio.wait_for(channel.close(), timeout=5)
    assert report == DrainReport(
        closed=False, drained=True, waited=0.0, completed=0, cancelled=(), abandoned_holds=0
    )
    hold.release()
    await other.close()


# -- last handle closed: DRAINING until idle, then CLOSED --


@kinds
async def test_last_close_drains_in_flight_call(
    echo_server: EchoServer, channel: aio.GracefulChannel, kind: str
) -> None:
    call = start(channel, kind, gate="g", message="late")
    await echo_server.wait_arrivals("g")
    closing = await begin_close(channel)
    assert state_of(channel) is ChannelState.DRAINING
    assert channel.in_flight == 1
    assert not closing.done()
    echo_server.open_gate("g")
    assert await finish(call, kind) == ["late"]
    report = await closing
    assert report.closed and report.drained
    assert report.completed == 1
    assert report.cancelled == ()
    assert state_of(channel) is ChannelState.CLOSED
    assert channel.in_flight == 0


async def test_last_close_waits_for_hold_with_no_rpc(channel: aio.GracefulChannel) -> None:
    hold = channel.hold()
    assert channel.holds == 1
    closing = await begin_close(channel)
    assert state_of(channel) is ChannelState.DRAINING
    await asyncio.sleep(0)
    assert not closing.done()
    hold.release()
    report = await closing
    assert report.closed and report.drained and report.abandoned_holds == 0
    assert state_of(channel) is ChannelState.CLOSED
    assert channel.holds == 0


async def test_idle_close_is_immediate(channel: aio.GracefulChannel) -> None:
    report = await channel.close()
    assert report.closed and report.drained and report.completed == 0
    assert state_of(channel) is ChannelState.CLOSED


async def test_raw_channel_really_closed(echo_server: EchoServer) -> None:
    raw = grpc.aio.insecure_channel(echo_server.target)
    channel = aio.wrap(raw)
    await channel.close()
    with pytest.raises(grpc.aio.UsageError):
        await raw.unary_unary("/graceful_grpc.testing.v1.Echo/Unary")(b"")  # type: ignore[arg-type]


# -- new calls while DRAINING --


@kinds
async def test_draining_admits_held_calls(
    echo_server: EchoServer, channel: aio.GracefulChannel, kind: str
) -> None:
    hold = channel.hold()
    closing = await begin_close(channel)
    # the completer of held work reports its result after close() started
    assert await call_once(channel, kind, "report") == ["report"]
    hold.release()
    report = await closing
    assert report.drained and report.completed == 1


@kinds
async def test_draining_admits_calls_from_tasks_created_inside_a_hold(
    channel: aio.GracefulChannel, kind: str
) -> None:
    go = asyncio.Event()

    async def completer() -> list[str]:
        await go.wait()
        return await call_once(channel, kind, "from task")

    async with channel.hold():
        task = asyncio.create_task(completer())
        closing = await begin_close(channel)
        go.set()
        assert await task == ["from task"]
    assert (await closing).drained


@kinds
async def test_draining_refuses_unheld_calls(channel: aio.GracefulChannel, kind: str) -> None:
    hold = foreign_hold(channel)
    closing = await begin_close(channel)
    with pytest.raises(ChannelClosedError) as info:
        start(channel, kind)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "draining" in (info.value.details() or "")
    hold.release()
    await closing


async def test_released_hold_no_longer_admits(channel: aio.GracefulChannel) -> None:
    keep = foreign_hold(channel)
    with channel.hold():
        pass
    closing = await begin_close(channel)
    with pytest.raises(ChannelClosedError):
        await call_once(channel, "unary_unary")
    keep.release()
    await closing


@kinds
async def test_admit_all_admits_unheld_calls_while_draining(
    echo_server: EchoServer, kind: str
) -> None:
    channel = aio.insecure_channel(echo_server.target, admit_during_drain="all")
    hold = foreign_hold(channel)
    closing = await begin_close(channel)
    assert await call_once(channel, kind, "any") == ["any"]
    with channel.hold():
        pass
    hold.release()
    await closing
    with pytest.raises(ChannelClosedError):
        start(channel, kind)


@kinds
async def test_admit_none_refuses_even_held_calls(echo_server: EchoServer, kind: str) -> None:
    channel = aio.insecure_channel(echo_server.target, admit_during_drain="none")
    hold = channel.hold()
    closing = await begin_close(channel)
    with pytest.raises(ChannelClosedError):
        start(channel, kind)
    with pytest.raises(ChannelClosedError):
        channel.hold()
    hold.release()
    await closing


# -- hold() while DRAINING --


async def test_hold_while_draining_only_from_held_code(channel: aio.GracefulChannel) -> None:
    async with channel.hold():  # this test's own work is held
        closing = await begin_close(channel)
        nested = channel.hold()  # held code may take more holds while draining
        assert channel.holds == 2
        refused: list[ChannelClosedError] = []

        def unheld() -> None:
            try:
                channel.hold()
            except ChannelClosedError as exc:
                refused.append(exc)

        contextvars.Context().run(unheld)  # code outside any hold may not
        assert len(refused) == 1
        nested.release()
    assert (await closing).drained


# -- drain deadline --


@kinds
async def test_deadline_cancels_with_typed_error(
    echo_server: EchoServer, channel: aio.GracefulChannel, kind: str
) -> None:
    call = start(channel, kind, gate="never")
    waiter = asyncio.create_task(finish(call, kind))
    await echo_server.wait_arrivals("never")
    hold = channel.hold()
    report = await channel.close(grace=0.05)
    with pytest.raises(DrainTimeoutError) as info:
        await waiter
    assert isinstance(info.value, grpc.RpcError)
    assert info.value.code() == grpc.StatusCode.CANCELLED
    assert "drain deadline" in (info.value.details() or "")
    assert report.closed and not report.drained
    assert [(c.method, c.kind) for c in report.cancelled] == [(METHOD[kind], kind)]
    assert report.cancelled[0].age >= 0.04
    assert report.abandoned_holds == 1
    assert report.completed == 0
    assert state_of(channel) is ChannelState.CLOSED
    assert channel.in_flight == 0
    hold.release()  # releasing an abandoned hold is harmless
    assert channel.holds == 0


@kinds
async def test_deadline_error_also_when_awaited_after_abort(
    echo_server: EchoServer, channel: aio.GracefulChannel, kind: str
) -> None:
    call = start(channel, kind, gate="never")
    await echo_server.wait_arrivals("never")
    await channel.close(grace=0)
    with pytest.raises(DrainTimeoutError):
        await finish(call, kind)


async def test_owner_cancellation_stays_cancelled_error(
    echo_server: EchoServer, channel: aio.GracefulChannel
) -> None:
    call = start(channel, "unary_unary", gate="never")
    waiter = asyncio.create_task(finish(call, "unary_unary"))
    await echo_server.wait_arrivals("never")
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert channel.in_flight == 0


async def test_deadline_logs_each_cancelled_method(
    echo_server: EchoServer, channel: aio.GracefulChannel, caplog: pytest.LogCaptureFixture
) -> None:
    call = start(channel, "unary_stream", gate="never")
    await echo_server.wait_arrivals("never")
    with caplog.at_level(logging.INFO, logger="graceful_grpc"):
        await channel.close(grace=0)
    with pytest.raises(DrainTimeoutError):
        await finish(call, "unary_stream")
    messages = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "graceful_grpc"]
    assert any(lvl == logging.INFO and "draining channel" in m for lvl, m in messages)
    assert any(lvl == logging.INFO and "drain finished" in m for lvl, m in messages)
    assert any(lvl == logging.WARNING and METHOD["unary_stream"] in m for lvl, m in messages)


async def test_completed_counts_calls_finished_during_drain(
    echo_server: EchoServer, channel: aio.GracefulChannel
) -> None:
    finished = [start(channel, "unary_unary", gate="a") for _ in range(3)]
    stuck = start(channel, "unary_unary", gate="never")
    await echo_server.wait_arrivals("a", 3)
    await echo_server.wait_arrivals("never")
    closing = await begin_close(channel, grace=30)
    echo_server.open_gate("a")
    for call in finished:
        await call
    await channel.close(grace=0)  # a second close brings the deadline forward
    report = await closing
    assert report.completed == 3
    assert [c.kind for c in report.cancelled] == ["unary_unary"]
    with pytest.raises(DrainTimeoutError):
        await stuck


# -- CLOSED --


@kinds
async def test_closed_refuses_calls_and_holds(channel: aio.GracefulChannel, kind: str) -> None:
    await channel.close()
    with pytest.raises(ChannelClosedError) as info:
        start(channel, kind)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "closed" in (info.value.details() or "")
    with pytest.raises(ChannelClosedError):
        channel.hold()
    with pytest.raises(ChannelClosedError):
        channel.share()


async def test_closed_refuses_even_held_code(channel: aio.GracefulChannel) -> None:
    hold = channel.hold()
    await channel.close(grace=0)
    with pytest.raises(ChannelClosedError):
        start(channel, "unary_unary")
    hold.release()


# -- close() again, concurrently, cancelled --


async def test_concurrent_and_repeated_close_share_one_report(
    echo_server: EchoServer, channel: aio.GracefulChannel
) -> None:
    call = start(channel, "unary_unary", gate="g")
    await echo_server.wait_arrivals("g")
    closers = [asyncio.create_task(channel.close()) for _ in range(3)]
    await asyncio.sleep(0)
    echo_server.open_gate("g")
    await call
    reports = await asyncio.gather(*closers)
    assert all(report is reports[0] for report in reports)
    assert await channel.close() is reports[0]


async def test_cancelled_closer_does_not_stop_the_drain(
    echo_server: EchoServer, channel: aio.GracefulChannel
) -> None:
    call = start(channel, "unary_unary", gate="never")
    await echo_server.wait_arrivals("never")
    closing = await begin_close(channel, grace=0.1)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    with pytest.raises(DrainTimeoutError):
        await call  # the drain went on and cancelled it at its deadline
    assert state_of(channel) is ChannelState.CLOSED
    report = await channel.close()
    assert report.closed and len(report.cancelled) == 1


# -- bad input --


@pytest.mark.parametrize("bad", [-1, -0.5, math.nan, math.inf])
async def test_bad_drain_timeout(echo_server: EchoServer, bad: float) -> None:
    with pytest.raises(ValueError, match="drain_timeout"):
        aio.insecure_channel(echo_server.target, drain_timeout=bad)
    credentials = grpc.ssl_channel_credentials()  # type: ignore[no-untyped-call]
    with pytest.raises(ValueError, match="drain_timeout"):
        aio.secure_channel(echo_server.target, credentials, drain_timeout=bad)
    raw = grpc.aio.insecure_channel(echo_server.target)
    with pytest.raises(ValueError, match="drain_timeout"):
        aio.wrap(raw, drain_timeout=bad)
    await raw.close()


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf])
async def test_bad_grace(channel: aio.GracefulChannel, bad: float) -> None:
    with pytest.raises(ValueError, match="grace"):
        await channel.close(grace=bad)
    assert state_of(channel) is ChannelState.OPEN


async def test_unknown_admit_policy(echo_server: EchoServer) -> None:
    with pytest.raises(ValueError, match="admit_during_drain"):
        aio.insecure_channel(echo_server.target, admit_during_drain="some")  # type: ignore[arg-type]


async def test_wrap_requires_an_aio_channel() -> None:
    with pytest.raises(TypeError, match=r"grpc\.aio\.Channel"):
        aio.wrap(object())  # type: ignore[arg-type]


# -- report types --


def test_report_types_are_frozen() -> None:
    info = CallInfo("/a/b", "unary_unary", 1.0)
    with pytest.raises(AttributeError):
        info.age = 2.0  # type: ignore[misc]
    report = DrainReport(True, True, 0.0, 0, (info,), 0)
    with pytest.raises(AttributeError):
        report.closed = False  # type: ignore[misc]
    assert "cancelled=1" in report.summary()


async def test_shorter_grace_before_the_drain_runs_still_applies(
    echo_server: EchoServer, channel: aio.GracefulChannel
) -> None:
    call = start(channel, "unary_unary", gate="never")
    await echo_server.wait_arrivals("never")
    # both closes run in the same loop step, before the drain task has started
    patient = asyncio.create_task(channel.close(grace=30))
    forced = asyncio.create_task(channel.close(grace=0))
    report = await asyncio.wait_for(forced, timeout=10)
    assert len(report.cancelled) == 1
    assert report.waited < 5
    assert await patient is report
    with pytest.raises(DrainTimeoutError):
        await call


# -- drain listeners --


async def test_drain_listener_gets_each_report_once_and_its_errors_are_logged(
    echo_server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    channel = aio.insecure_channel(echo_server.target)
    other = channel.share()
    seen: list[DrainReport] = []

    def broken(report: DrainReport) -> None:
        raise RuntimeError("listener bug")

    channel.add_drain_listener(broken)
    other.add_drain_listener(seen.append)  # listeners belong to the connection, not the handle
    with caplog.at_level(logging.ERROR, logger="graceful_grpc"):
        assert (await channel.close()).closed is False
        assert seen == []
        report = await other.close()
        assert await other.close() is report
    assert seen == [report]
    assert any("drain listener" in r.getMessage() for r in caplog.records)


async def test_drain_listener_arguments(channel: aio.GracefulChannel) -> None:
    with pytest.raises(TypeError, match="callable"):
        channel.add_drain_listener(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="was not added"):
        channel.remove_drain_listener(print)
    seen: list[DrainReport] = []
    channel.add_drain_listener(seen.append)
    channel.remove_drain_listener(seen.append)
    await channel.close()
    assert seen == []
