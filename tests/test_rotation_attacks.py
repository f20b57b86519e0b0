"""Attacks on rotation and cancel_on_drain: races with close, holds taken on threads, the max_age
timer, calls started in the same loop step as a rotation, and marking calls of old connections.

Tests marked ``xfail(strict=True)`` show a defect that is still open; each names it.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from graceful_grpc import ChannelClosedError, ChannelState, aio
from graceful_grpc.testing import EchoServer

from .support.calls import KINDS, METHOD, PassingInterceptor, finish, foreign_hold, outcome, start
from .support.rotation import recording_channel

kinds = pytest.mark.parametrize("kind", KINDS)
STREAMS = lambda method: method.endswith("Stream")  # noqa: E731 - a cancel_on_drain predicate


async def test_rotate_and_close_in_the_same_step_drain_both_connections(
    echo_server: EchoServer,
) -> None:
    channel, factory = recording_channel(echo_server.target, drain_timeout=30)
    old = start(channel, "unary_unary", gate="old", message="old")
    await echo_server.wait_arrivals("old")
    rotating = asyncio.ensure_future(channel.rotate(grace=30))
    closing = asyncio.ensure_future(channel.close(grace=30))
    await asyncio.sleep(0)  # both ran to their first suspension: rotate first, then close
    assert channel.rotations == 1 and channel.state is ChannelState.DRAINING
    echo_server.open_gate("old")
    assert (await old).message == "old"
    report = await asyncio.wait_for(closing, timeout=5)
    old_report = await asyncio.wait_for(rotating, timeout=5)
    assert old_report.completed == 1 and report.completed == 1 and report.drained
    assert channel.connections == 0 and len(factory.built) == 2


async def test_close_then_rotate_in_the_same_step_refuses_the_rotation(
    echo_server: EchoServer,
) -> None:
    channel, factory = recording_channel(echo_server.target)
    closing = asyncio.ensure_future(channel.close())
    rotating = asyncio.ensure_future(channel.rotate())
    await asyncio.wait_for(closing, timeout=5)
    with pytest.raises(ChannelClosedError):
        await rotating
    assert len(factory.built) == 1 and channel.rotations == 0


async def test_holds_taken_on_threads_during_rotations_carry_over(echo_server: EchoServer) -> None:
    channel = aio.insecure_channel(echo_server.target)
    taken: list[object] = []
    go = threading.Event()

    def take() -> None:
        go.wait(5)
        for _ in range(50):
            taken.append(foreign_hold(channel))

    worker = threading.Thread(target=take)
    worker.start()
    go.set()
    for _ in range(5):
        await asyncio.wait_for(channel.rotate(grace=5), timeout=5)
    await asyncio.to_thread(worker.join, 5)
    assert channel.holds == 50 and channel.rotations == 5
    closing = asyncio.create_task(channel.close(grace=5))
    await channel.wait_draining()
    for hold in taken:
        hold.release()  # type: ignore[attr-defined]
    report = await asyncio.wait_for(closing, timeout=5)
    assert report.drained and report.abandoned_holds == 0


async def test_max_age_timer_does_nothing_after_close(echo_server: EchoServer) -> None:
    channel = aio.insecure_channel(echo_server.target, max_age=0.05, max_age_jitter=0)
    rotated = asyncio.Event()
    channel.add_rotation_listener(lambda _: rotated.set())
    await asyncio.wait_for(rotated.wait(), timeout=5)
    await asyncio.wait_for(channel.close(), timeout=5)
    rotations = channel.rotations
    channel.add_rotation_listener(lambda _: pytest.fail("rotated after close"))
    await asyncio.sleep(0.2)  # four max_age periods: no timer may fire a rotation now
    assert channel.rotations == rotations and channel.connections == 0


@kinds
async def test_calls_started_in_the_rotations_step_stay_on_the_old_connection(
    echo_server: EchoServer, kind: str
) -> None:
    channel = aio.insecure_channel(echo_server.target, cancel_on_drain=STREAMS)
    rotating = asyncio.ensure_future(channel.rotate(grace=5))
    call = start(channel, kind, gate="same step")  # before rotate() runs: the old connection
    caller = asyncio.create_task(finish(call, kind))
    await asyncio.sleep(0)
    if kind == "unary_unary":  # not cancel-on-drain: drains on the old connection
        await echo_server.wait_arrivals("same step")
        echo_server.open_gate("same step")
        assert await asyncio.wait_for(caller, timeout=5) == ["m"]
        assert (await asyncio.wait_for(rotating, timeout=5)).completed == 1
    else:
        await asyncio.wait({caller}, timeout=0.1)
        assert outcome(caller) == "ChannelClosedError"
        assert len((await asyncio.wait_for(rotating, timeout=5)).interrupted) == 1
    await channel.close()


@pytest.mark.parametrize("intercepted", [False, True])
async def test_marking_a_call_of_an_old_connection_interrupts_it_at_once(
    echo_server: EchoServer, intercepted: bool
) -> None:
    channel = aio.insecure_channel(
        echo_server.target, interceptors=[PassingInterceptor()] if intercepted else None
    )
    watch = start(channel, "unary_stream", gate="never")
    reader = asyncio.create_task(finish(watch, "unary_stream"))
    await echo_server.wait_arrivals("never")
    rotating = asyncio.create_task(channel.rotate(grace=30))
    await asyncio.sleep(0)
    assert channel.cancel_on_drain(watch) is watch
    await asyncio.wait({reader}, timeout=0.1)
    assert outcome(reader) == "ChannelClosedError"
    report = await asyncio.wait_for(rotating, timeout=5)
    assert [info.method for info in report.interrupted] == [METHOD["unary_stream"]]
    assert report.drained and report.completed == 0
    await channel.close()


async def test_intercepted_call_interrupted_by_a_rotation_in_the_closes_step(
    echo_server: EchoServer,
) -> None:
    channel = aio.insecure_channel(
        echo_server.target, cancel_on_drain=STREAMS, interceptors=[PassingInterceptor()]
    )
    watch = start(channel, "unary_stream", gate="never")
    reader = asyncio.create_task(finish(watch, "unary_stream"))
    await echo_server.wait_arrivals("never")
    rotating = asyncio.ensure_future(channel.rotate(grace=30))
    closing = asyncio.ensure_future(channel.close(grace=30))
    report = await asyncio.wait_for(closing, timeout=5)
    old_report = await asyncio.wait_for(rotating, timeout=5)
    assert outcome(reader) == "ChannelClosedError"
    assert len(old_report.interrupted) == 1
    # The rotation interrupted the call before the drain started: the close's report must not
    # count it as completed (it may leave it out, or list it as interrupted).
    assert report.completed == 0, report
