"""Rotation: swap the connection under a live channel; old calls drain on the old one."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from graceful_grpc import ChannelClosedError, ChannelState, DrainTimeoutError, aio
from graceful_grpc.testing import EchoServer

from .support.calls import KINDS, METHOD, call_once, finish, foreign_hold, start
from .support.rotation import Load, Recording, peer_of, recording_channel

kinds = pytest.mark.parametrize("kind", KINDS)


async def test_new_calls_go_to_a_new_connection_at_once(echo_server: EchoServer) -> None:
    channel = aio.insecure_channel(echo_server.target)
    assert await call_once(channel, "unary_unary", "before") == ["before"]
    rotating = asyncio.ensure_future(channel.rotate())
    await asyncio.sleep(0)  # rotate() ran to its first suspension: new calls go to the new one
    assert channel.rotations == 1 and not rotating.done()
    assert await call_once(channel, "unary_unary", "after") == ["after"]
    report = await asyncio.wait_for(rotating, timeout=5)
    assert report.closed and report.drained and report.completed == 0
    assert peer_of(echo_server, "before") != peer_of(echo_server, "after")  # a new TCP connection
    await channel.close()


@kinds
async def test_calls_in_flight_finish_on_the_old_connection(
    echo_server: EchoServer, kind: str
) -> None:
    channel, factory = recording_channel(echo_server.target)
    old = factory.built[0]
    calls = [start(channel, kind, gate="old", message=str(i)) for i in range(3)]
    await echo_server.wait_arrivals("old", 3)
    rotating = asyncio.create_task(channel.rotate(grace=30))
    await asyncio.sleep(0)
    assert channel.connections == 2 and channel.in_flight == 3
    assert await call_once(channel, kind, "new") == ["new"]
    assert not rotating.done()
    echo_server.open_gate("old")
    assert [await finish(call, kind) for call in calls] == [["0"], ["1"], ["2"]]
    report = await asyncio.wait_for(rotating, timeout=5)  # as soon as none is left
    assert report.drained and report.completed == 3 and report.cancelled == ()
    assert old.get_state() is grpc.ChannelConnectivity.SHUTDOWN
    assert channel.connections == 1 and channel.in_flight == 0
    await channel.close()


@kinds
async def test_old_connection_aborts_what_is_left_at_its_grace(
    echo_server: EchoServer, kind: str
) -> None:
    channel = aio.insecure_channel(echo_server.target, drain_timeout=60)
    stuck = start(channel, kind, gate="never")
    await echo_server.wait_arrivals("never")
    report = await asyncio.wait_for(channel.rotate(grace=0.1), timeout=5)
    assert not report.drained and [info.kind for info in report.cancelled] == [kind]
    with pytest.raises(DrainTimeoutError):
        await finish(stuck, kind)
    assert await call_once(channel, kind, "still open") == ["still open"]
    assert channel.state is ChannelState.OPEN
    await channel.close()


async def test_holds_carry_over_rotations_and_the_old_close(echo_server: EchoServer) -> None:
    channel = aio.insecure_channel(echo_server.target)
    async with channel.hold():
        for _ in range(3):
            report = await asyncio.wait_for(channel.rotate(), timeout=5)
            assert report.abandoned_holds == 0
        assert channel.holds == 1
        closing = asyncio.create_task(channel.close())
        await channel.wait_draining()
        assert await call_once(channel, "unary_unary", "held") == ["held"]  # held code still works
    report = await asyncio.wait_for(closing, timeout=5)
    assert report.drained and report.completed == 1


async def test_overlapping_rotations_each_drain_on_their_own(echo_server: EchoServer) -> None:
    channel, factory = recording_channel(echo_server.target)
    gates = ["g0", "g1", "g2"]
    calls = []
    rotations = []
    for gate in gates:
        calls.append(start(channel, "unary_unary", gate=gate, message=gate))
        await echo_server.wait_arrivals(gate)
        rotations.append(asyncio.create_task(channel.rotate(grace=30)))
        await asyncio.sleep(0)
    assert channel.connections == 4
    for gate, rotation in zip(reversed(gates), reversed(rotations), strict=True):
        echo_server.open_gate(gate)  # the newest old connection first
        report = await asyncio.wait_for(rotation, timeout=5)
        assert report.completed == 1
        assert all(not r.done() for r in rotations[: rotations.index(rotation)])
    assert [(await call).message for call in calls] == gates
    assert [raw.get_state() for raw in factory.built[:3]] == [grpc.ChannelConnectivity.SHUTDOWN] * 3
    assert channel.connections == 1
    await channel.close()


async def test_close_drains_every_connection_under_one_deadline(echo_server: EchoServer) -> None:
    channel = aio.insecure_channel(echo_server.target, drain_timeout=60)
    old_stuck = start(channel, "unary_stream", gate="never", message="old")
    old_done = start(channel, "unary_unary", gate="soon", message="old done")
    await echo_server.wait_arrivals("never")
    await echo_server.wait_arrivals("soon")
    rotating = asyncio.create_task(channel.rotate(grace=60))
    await asyncio.sleep(0)
    new_stuck = start(channel, "stream_stream", gate="never", message="new")
    await echo_server.wait_arrivals("never", 2)
    closing = asyncio.create_task(channel.close(grace=0.3))
    await asyncio.sleep(0)
    echo_server.open_gate("soon")
    assert (await old_done).message == "old done"
    report = await asyncio.wait_for(closing, timeout=5)
    assert sorted(info.kind for info in report.cancelled) == ["stream_stream", "unary_stream"]
    assert report.completed == 1 and report.waited < 5
    old_report = await asyncio.wait_for(rotating, timeout=5)  # brought forward to close's deadline
    assert [info.kind for info in old_report.cancelled] == ["unary_stream"]
    assert channel.connections == 0 and channel.state is ChannelState.CLOSED
    for call, kind in ((old_stuck, "unary_stream"), (new_stuck, "stream_stream")):
        with pytest.raises(DrainTimeoutError):
            await finish(call, kind)


async def test_cancel_on_drain_calls_are_interrupted_by_a_rotation(
    echo_server: EchoServer,
) -> None:
    channel = aio.insecure_channel(echo_server.target, cancel_on_drain=[METHOD["unary_stream"]])
    watch = start(channel, "unary_stream", gate="never")
    await echo_server.wait_arrivals("never")
    report = await asyncio.wait_for(channel.rotate(grace=30), timeout=5)
    assert len(report.interrupted) == 1 and report.drained
    with pytest.raises(ChannelClosedError):
        await finish(watch, "unary_stream")
    await channel.close()


async def test_rotate_refused_once_draining_or_closed(echo_server: EchoServer) -> None:
    channel, factory = recording_channel(echo_server.target)
    hold = foreign_hold(channel)
    closing = asyncio.create_task(channel.close(grace=5))
    await channel.wait_draining()
    with pytest.raises(ChannelClosedError, match="draining"):
        await channel.rotate()
    assert len(factory.built) == 1  # nothing was built for the refused rotation
    hold.release()
    await asyncio.wait_for(closing, timeout=5)
    with pytest.raises(ChannelClosedError, match="closed"):
        await channel.rotate()


async def test_rotate_refused_through_a_closed_handle(echo_server: EchoServer) -> None:
    channel, factory = recording_channel(echo_server.target)
    other = channel.share()
    report = await channel.close()  # the other handle keeps the connection open
    assert not report.closed
    given = grpc.aio.insecure_channel(echo_server.target)
    for new_channel in (None, given):
        with pytest.raises(ChannelClosedError, match="closed graceful_grpc channel handle"):
            await channel.rotate(new_channel)
    assert len(factory.built) == 1 and other.rotations == 0
    assert other.state is ChannelState.OPEN
    await given.close()
    assert (await other.rotate()).closed and other.rotations == 1
    await other.close()


async def test_rotation_arguments(echo_server: EchoServer) -> None:
    channel = aio.wrap(grpc.aio.insecure_channel(echo_server.target))
    with pytest.raises(TypeError, match="factory"):
        await channel.rotate()
    with pytest.raises(TypeError, match=r"grpc\.aio\.Channel"):
        await channel.rotate(object())  # type: ignore[arg-type]
    other = aio.insecure_channel(echo_server.target)
    with pytest.raises(TypeError, match=r"grpc\.aio\.Channel"):
        await channel.rotate(other)
    with pytest.raises(ValueError, match="grace"):
        await channel.rotate(grpc.aio.insecure_channel(echo_server.target), grace=-1)
    assert channel.rotations == 0
    report = await channel.rotate(grpc.aio.insecure_channel(echo_server.target))
    assert report.closed and channel.rotations == 1
    await other.close()
    await channel.close()


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"max_age": 0}, ValueError, "max_age"),
        ({"max_age": -1.0}, ValueError, "max_age"),
        ({"max_age": float("nan")}, ValueError, "max_age"),
        ({"max_age": 1, "max_age_jitter": 1.0}, ValueError, "max_age_jitter"),
        ({"max_age": 1, "max_age_jitter": -0.1}, ValueError, "max_age_jitter"),
        ({"max_age": "1"}, TypeError, "max_age"),
    ],
)
async def test_bad_max_age(echo_server: EchoServer, options: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        aio.insecure_channel(echo_server.target, **options)


async def test_max_age_on_wrap_needs_a_factory(echo_server: EchoServer) -> None:
    raw = grpc.aio.insecure_channel(echo_server.target)
    with pytest.raises(TypeError, match="factory"):
        aio.wrap(raw, max_age=1)
    await raw.close()


# -- under load --


async def test_fifty_rotations_under_load_lose_nothing(echo_server: EchoServer) -> None:
    channel, factory = recording_channel(echo_server.target)
    load = Load(channel)
    await load.wait_calls(20)
    stream = start(channel, "unary_stream", gate="across", count=5, message="across")
    reading = asyncio.create_task(finish(stream, "unary_stream"))
    await echo_server.wait_arrivals("across")
    for rotation in range(50):
        old = factory.built[-1]
        rotating = asyncio.ensure_future(channel.rotate(grace=30))
        await asyncio.sleep(0)
        if rotation == 0:  # the stream started before it finishes on the first old connection
            echo_server.open_gate("across")
        report = await asyncio.wait_for(rotating, timeout=35)
        assert report.cancelled == (), report
        assert old.get_state() is grpc.ChannelConnectivity.SHUTDOWN
        await load.wait_calls(4)
    await load.stop()
    assert load.failures == []
    assert await reading == ["across"] * 5
    assert channel.rotations == 50 and channel.in_flight == 0
    assert await channel.wait_idle(timeout=5)
    await channel.close()
    assert all(raw.get_state() is grpc.ChannelConnectivity.SHUTDOWN for raw in factory.built)


async def test_server_stream_started_before_a_rotation_stays_on_the_old_connection(
    echo_server: EchoServer,
) -> None:
    channel = aio.insecure_channel(echo_server.target)
    stream = start(channel, "unary_stream", gate="s", count=5, interval_ms=5, message="stream")
    await echo_server.wait_arrivals("s")
    rotating = asyncio.create_task(channel.rotate(grace=30))
    await asyncio.sleep(0)
    assert await call_once(channel, "unary_unary", "new") == ["new"]
    echo_server.open_gate("s")
    assert await finish(stream, "unary_stream") == ["stream"] * 5
    await asyncio.wait_for(rotating, timeout=5)
    assert peer_of(echo_server, "stream") != peer_of(echo_server, "new")
    await channel.close()


async def test_max_age_rotates_under_load(echo_server: EchoServer) -> None:
    channel = aio.insecure_channel(echo_server.target, max_age=0.2, drain_timeout=5)
    load = Load(channel)
    async with asyncio.timeout(10):
        while channel.rotations < 10 and not load.failures:
            await load.wait_calls(1)
    await load.stop()
    assert load.failures == []
    assert channel.rotations >= 10
    assert load.most_connections <= 3
    report = await asyncio.wait_for(channel.close(), timeout=10)
    assert report.drained and channel.connections == 0


async def test_rotation_rebalances_to_where_the_factory_points() -> None:
    async with EchoServer() as first, EchoServer() as second:
        targets = iter([first.target, second.target, second.target])
        factory = Recording(lambda: next(targets))
        channel = aio.wrap(factory(), factory=factory)
        stream = start(channel, "unary_stream", gate="old", count=3, message="old stream")
        await first.wait_arrivals("old")
        rotating = asyncio.create_task(channel.rotate(grace=30))
        await asyncio.sleep(0)
        for i in range(10):
            assert await call_once(channel, "unary_unary", f"new {i}") == [f"new {i}"]
        assert {seen.message for seen in second.invocations} == {f"new {i}" for i in range(10)}
        assert not any(seen.message.startswith("new") for seen in first.invocations)
        first.open_gate("old")
        assert await finish(stream, "unary_stream") == ["old stream"] * 3
        assert (await asyncio.wait_for(rotating, timeout=5)).completed == 1
        await channel.close()
