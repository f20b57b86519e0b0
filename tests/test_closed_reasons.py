"""ChannelClosedError.reason says exactly why, and its message is true for the channel's state."""

from __future__ import annotations

import asyncio
import pickle

import pytest

from graceful_grpc import ChannelClosedError, ChannelState, aio
from graceful_grpc.testing import EchoServer

from .support.calls import METHOD, finish, start


def reason_of(task: asyncio.Task[object]) -> str:
    error = task.exception()
    assert isinstance(error, ChannelClosedError), error
    return error.reason


async def test_refusals_after_close_say_closed(echo_server: EchoServer) -> None:
    channel = aio.insecure_channel(echo_server.target)
    await channel.close()
    for refused in (lambda: start(channel, "unary_unary"), channel.hold, channel.share):
        with pytest.raises(ChannelClosedError) as caught:
            refused()
        assert caught.value.reason == "closed" and "closed" in (caught.value.details() or "")
    with pytest.raises(ChannelClosedError) as caught:
        await channel.rotate()
    assert caught.value.reason == "closed"


async def test_refusals_while_draining_say_draining(echo_server: EchoServer) -> None:
    channel = aio.insecure_channel(echo_server.target, admit_during_drain="none")
    call = start(channel, "unary_unary", gate="work")
    await echo_server.wait_arrivals("work")
    closing = asyncio.create_task(channel.close(grace=30))
    await channel.wait_draining()
    for refused in (lambda: start(channel, "unary_unary"), channel.hold):
        with pytest.raises(ChannelClosedError) as caught:
            refused()
        assert caught.value.reason == "draining"
        assert "draining" in (caught.value.details() or "")
    echo_server.open_gate("work")
    await call
    assert (await asyncio.wait_for(closing, timeout=5)).drained


async def test_a_watch_interrupted_by_the_drain_says_interrupted(echo_server: EchoServer) -> None:
    channel = aio.insecure_channel(echo_server.target, cancel_on_drain=[METHOD["unary_stream"]])
    watch = asyncio.create_task(
        finish(start(channel, "unary_stream", gate="never"), "unary_stream")
    )
    await echo_server.wait_arrivals("never")
    await asyncio.wait_for(channel.close(grace=30), timeout=5)
    await asyncio.wait({watch}, timeout=5)
    assert reason_of(watch) == "interrupted"


async def test_a_watch_interrupted_by_a_rotation_says_rotated(echo_server: EchoServer) -> None:
    channel = aio.insecure_channel(echo_server.target, cancel_on_drain=[METHOD["unary_stream"]])
    watch = asyncio.create_task(
        finish(start(channel, "unary_stream", gate="never"), "unary_stream")
    )
    await echo_server.wait_arrivals("never")
    report = await asyncio.wait_for(channel.rotate(grace=30), timeout=5)
    await asyncio.wait({watch}, timeout=5)
    assert reason_of(watch) == "rotated" and len(report.interrupted) == 1
    error = watch.exception()
    assert isinstance(error, ChannelClosedError)
    assert channel.state is ChannelState.OPEN and "draining" not in (error.details() or "")
    await channel.close()


def test_the_reason_survives_pickling_and_is_checked() -> None:
    error = pickle.loads(pickle.dumps(ChannelClosedError("why", "rotated")))
    assert (error.reason, error.details()) == ("rotated", "why")
    assert ChannelClosedError("why").reason == "closed"
    with pytest.raises(ValueError, match="reason"):
        ChannelClosedError("why", "tired")  # type: ignore[arg-type]


async def test_every_close_gets_the_report_when_the_drain_task_is_cancelled(
    echo_server: EchoServer,
) -> None:
    channel = aio.insecure_channel(echo_server.target)
    other = channel.share()
    call = asyncio.create_task(finish(start(channel, "unary_unary", gate="never"), "unary_unary"))
    await echo_server.wait_arrivals("never")
    await other.close()
    closes = [asyncio.create_task(channel.close(grace=30)) for _ in range(2)]
    await channel.wait_draining()
    (drain,) = [task for task in asyncio.all_tasks() if task.get_name() == "graceful_grpc drain"]
    drain.cancel()  # as a loop shutting down cancels every task
    reports = await asyncio.wait_for(asyncio.gather(*closes), timeout=5)
    assert reports[0] is reports[1] and reports[0].closed and not reports[0].drained
    assert [info.method for info in reports[0].cancelled] == [METHOD["unary_unary"]]
    assert await asyncio.wait_for(other.close(), timeout=5) is reports[0]
    await asyncio.wait({call}, timeout=5)
    assert type(call.exception()).__name__ == "DrainTimeoutError"
    assert channel.state is ChannelState.CLOSED and channel.connections == 0
