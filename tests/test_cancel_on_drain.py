"""Long-lived calls in the drain: cancel_on_drain interrupts watches and long polls as the drain
starts, and wait_draining() lets cooperative streams wind down by themselves."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from graceful_grpc import ChannelClosedError, ChannelState, DrainTimeoutError, aio
from graceful_grpc.testing import EchoServer, echo_pb2, echo_pb2_grpc

from .support.calls import KINDS, METHOD, finish, outcome, start
from .support.silent_peer import SilentPeer
from .support.waiting import every_method_waiting

kinds = pytest.mark.parametrize("kind", KINDS)


def state_of(channel: aio.GracefulChannel) -> ChannelState:
    return channel.state


async def test_watchers_are_interrupted_and_the_drain_waits_only_for_real_work(
    echo_server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    channel = aio.insecure_channel(
        echo_server.target, cancel_on_drain=[METHOD["unary_stream"]], drain_timeout=60
    )
    watchers = [start(channel, "unary_stream", gate="never", message=str(i)) for i in range(50)]
    readers = [asyncio.create_task(finish(call, "unary_stream")) for call in watchers]
    slow = start(channel, "unary_unary", delay_ms=2000, message="slow")
    await echo_server.wait_arrivals("never", 50)
    began = time.monotonic()
    with caplog.at_level(logging.INFO, logger="graceful_grpc"):
        report = await asyncio.wait_for(channel.close(grace=30), timeout=10)
    took = time.monotonic() - began
    assert 1.5 < took < 3.0, took  # the slow call's 2 s, not the 30 s deadline
    assert len(report.interrupted) == 50
    assert {info.method for info in report.interrupted} == {METHOD["unary_stream"]}
    assert report.cancelled == () and report.drained
    assert report.completed == 1
    assert (await slow).message == "slow"
    for reader in readers:
        with pytest.raises(ChannelClosedError, match="draining"):
            await reader
    assert any("interrupted=50" in r.getMessage() for r in caplog.records)


async def test_every_awaiting_method_answers_channel_closed_at_once() -> None:
    async with SilentPeer() as peer:
        channel = aio.insecure_channel(peer.target, cancel_on_drain=lambda method: True)
        waiting = await every_method_waiting(channel, peer)
        began = time.monotonic()
        closing = asyncio.create_task(channel.close(grace=30))
        await asyncio.wait(waiting.values(), timeout=2)
        answered_in = time.monotonic() - began
        outcomes = {
            name: type(task.exception()).__name__ if task.done() else "still waiting"
            for name, task in waiting.items()
        }
        assert set(outcomes.values()) == {"ChannelClosedError"}, outcomes
        assert answered_in < 0.1, answered_in
        report = await asyncio.wait_for(closing, timeout=5)
        assert len(report.interrupted) == len(waiting) and report.cancelled == ()
        assert report.drained and report.completed == 0


@kinds
async def test_marking_one_started_call(echo_server: EchoServer, kind: str) -> None:
    channel = aio.insecure_channel(echo_server.target, drain_timeout=60)
    marked = start(channel, kind, gate="never")
    assert channel.cancel_on_drain(marked) is marked
    await echo_server.wait_arrivals("never")
    report = await asyncio.wait_for(channel.close(), timeout=5)
    assert [info.kind for info in report.interrupted] == [kind]
    with pytest.raises(ChannelClosedError):
        await finish(marked, kind)


async def test_marking_while_draining_interrupts_at_once(echo_server: EchoServer) -> None:
    channel = aio.insecure_channel(echo_server.target, drain_timeout=60)
    call = start(channel, "unary_unary", gate="never")
    await echo_server.wait_arrivals("never")
    closing = asyncio.create_task(channel.close())
    await channel.wait_draining()
    channel.cancel_on_drain(call)
    with pytest.raises(ChannelClosedError):
        await asyncio.wait_for(call, timeout=1)
    report = await asyncio.wait_for(closing, timeout=5)
    assert len(report.interrupted) == 1


async def test_cancel_on_drain_call_started_while_draining_is_interrupted_at_once(
    echo_server: EchoServer,
) -> None:
    channel = aio.insecure_channel(
        echo_server.target, cancel_on_drain=[METHOD["unary_stream"]], drain_timeout=60
    )
    async with channel.hold():
        closing = asyncio.create_task(channel.close())
        await channel.wait_draining()
        watcher = start(channel, "unary_stream", gate="never")
        with pytest.raises(ChannelClosedError):
            await asyncio.wait_for(finish(watcher, "unary_stream"), timeout=1)
    report = await asyncio.wait_for(closing, timeout=5)
    assert len(report.interrupted) == 1 and report.completed == 0


async def test_marking_rules(echo_server: EchoServer) -> None:
    channel = aio.insecure_channel(echo_server.target)
    other = aio.insecure_channel(echo_server.target)
    done = start(channel, "unary_unary")
    await done
    assert channel.cancel_on_drain(done) is done  # ended: nothing to interrupt
    foreign = start(other, "unary_unary", gate="never")
    await echo_server.wait_arrivals("never")
    with pytest.raises(ValueError, match="not on this one") as refused:
        channel.cancel_on_drain(foreign)
    assert str(refused.value) == (
        f"cancel_on_drain(): the unary_unary call of {METHOD['unary_unary']} was started on "
        "another graceful_grpc channel, not on this one"
    )
    async with grpc.aio.insecure_channel(echo_server.target) as plain:
        plain_call = start(plain, "unary_stream", gate="never")
        with pytest.raises(ValueError, match="nor on any graceful channel"):
            channel.cancel_on_drain(plain_call)
        plain_call.cancel()
    await other.close(grace=0)
    with pytest.raises(DrainTimeoutError):
        await foreign
    await channel.close()


async def _requests(stop: asyncio.Event) -> AsyncIterator[echo_pb2.EchoRequest]:
    index = 0
    while not stop.is_set():
        yield echo_pb2.EchoRequest(message=str(index))
        index += 1
        await asyncio.sleep(0.01)


async def test_cooperative_stream_winds_down_inside_the_drain(echo_server: EchoServer) -> None:
    channel = aio.insecure_channel(echo_server.target, drain_timeout=60)
    stop = asyncio.Event()
    call = echo_pb2_grpc.EchoStub(channel).BidiStream(_requests(stop))
    received: list[str] = []

    async def cooperate() -> None:
        await channel.wait_draining()
        assert state_of(channel) is ChannelState.DRAINING
        stop.set()  # half-close after the current message

    async def consume() -> None:
        async for response in call:
            received.append(response.message)

    cooperating = asyncio.create_task(cooperate())
    consuming = asyncio.create_task(consume())
    while len(received) < 3:
        await asyncio.wait({consuming}, timeout=0.05)
        assert not consuming.done()
    report = await asyncio.wait_for(channel.close(), timeout=10)
    await asyncio.wait_for(asyncio.gather(cooperating, consuming), timeout=5)
    assert report.drained and report.completed == 1 and report.interrupted == ()
    assert received == [str(i) for i in range(len(received))]


async def test_wait_draining_returns_at_once_once_draining(echo_server: EchoServer) -> None:
    channel = aio.insecure_channel(echo_server.target)
    await channel.close()
    await asyncio.wait_for(channel.wait_draining(), timeout=1)


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("/graceful_grpc.testing.v1.Echo/Unary", TypeError),
        ([42], TypeError),
        (["Echo/Unary"], ValueError),
        (["/Echo"], ValueError),
        (["/a/b/c"], ValueError),
    ],
)
async def test_bad_cancel_on_drain(echo_server: EchoServer, spec: Any, error: type) -> None:
    with pytest.raises(error, match="cancel_on_drain"):
        aio.insecure_channel(echo_server.target, cancel_on_drain=spec)


async def test_names_and_predicates_combine(echo_server: EchoServer) -> None:
    channel = aio.insecure_channel(
        echo_server.target,
        cancel_on_drain=[METHOD["unary_stream"], lambda method: method.endswith("BidiStream")],
        drain_timeout=60,
    )
    calls = {kind: start(channel, kind, gate="never") for kind in KINDS}
    await echo_server.wait_arrivals("never", 4)
    closing = asyncio.create_task(channel.close(grace=0.3))
    report = await asyncio.wait_for(closing, timeout=5)
    assert sorted(info.kind for info in report.interrupted) == ["stream_stream", "unary_stream"]
    assert sorted(info.kind for info in report.cancelled) == ["stream_unary", "unary_unary"]
    for kind in ("unary_stream", "stream_stream"):
        with pytest.raises(ChannelClosedError):
            await finish(calls[kind], kind)
    for kind in ("unary_unary", "stream_unary"):
        with pytest.raises(DrainTimeoutError):
            await finish(calls[kind], kind)


@pytest.mark.parametrize("one_shot", ["iterator", "generator"])
async def test_a_one_shot_iterable_of_methods_is_read_once(
    echo_server: EchoServer, one_shot: str
) -> None:
    methods = [METHOD["unary_stream"]]
    spec = iter(methods) if one_shot == "iterator" else (method for method in methods)
    channel = aio.insecure_channel(echo_server.target, cancel_on_drain=spec)  # type: ignore[arg-type]
    watch = start(channel, "unary_stream", gate="never")
    reader = asyncio.create_task(finish(watch, "unary_stream"))
    await echo_server.wait_arrivals("never")
    report = await asyncio.wait_for(channel.close(grace=30), timeout=5)
    assert [info.method for info in report.interrupted] == methods and report.drained
    await asyncio.wait({reader}, timeout=5)
    assert outcome(reader) == "ChannelClosedError"


@pytest.mark.parametrize("not_a_call", [42, None, "call", object()])
async def test_marking_something_that_is_not_a_call_raises_type_error(
    echo_server: EchoServer, not_a_call: object
) -> None:
    channel = aio.insecure_channel(echo_server.target)
    with pytest.raises(TypeError, match=r"takes a grpc\.aio call"):
        channel.cancel_on_drain(not_a_call)
    await channel.close()
