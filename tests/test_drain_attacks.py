"""Attacks on the drain core: races with other threads, several tasks on one call, interceptors.

Each test names the contract it defends.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from graceful_grpc import ChannelClosedError, ChannelState, DrainTimeoutError, aio
from graceful_grpc.aio import Hold
from graceful_grpc.testing import EchoServer, echo_pb2, echo_pb2_grpc

from .support.calls import PassingInterceptor, outcome
from .support.silent_peer import SilentPeer
from .support.stalling_proxy import StallingProxy, write_until_blocked


def request(message: str = "m") -> echo_pb2.EchoRequest:
    return echo_pb2.EchoRequest(message=message)


@pytest.fixture
def fast_thread_switches() -> Iterator[None]:
    """Makes the interpreter switch threads as often as it can, so that races show."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


# -- holds taken on other threads --


@pytest.mark.usefixtures("fast_thread_switches")
async def test_hold_taken_on_a_thread_racing_the_close_is_not_left_behind(
    echo_server: EchoServer,
) -> None:
    # A hold taken on a thread while the loop closes the connection was registered after the
    # drain had decided CLOSED (or listed the holds to abandon): it outlived the drain.
    for _ in range(500):  # until the race shows: about one run in 20 without the fix
        channel = aio.insecure_channel(echo_server.target)
        stop = threading.Event()
        taking = asyncio.Event()
        taken: list[Hold] = []
        loop = asyncio.get_running_loop()

        def take_holds(
            channel: aio.GracefulChannel = channel,
            stop: threading.Event = stop,
            taking: asyncio.Event = taking,
            taken: list[Hold] = taken,
            loop: asyncio.AbstractEventLoop = loop,
        ) -> None:
            while not stop.is_set():
                try:
                    taken.append(channel.hold())
                except ChannelClosedError:
                    return
                if len(taken) == 1:
                    loop.call_soon_threadsafe(taking.set)

        thread = threading.Thread(target=take_holds)
        thread.start()
        try:
            await asyncio.wait_for(taking.wait(), timeout=5)
            report = await asyncio.wait_for(channel.close(0), timeout=5)
        finally:
            stop.set()
            thread.join(timeout=5)
        assert channel.state is ChannelState.CLOSED
        # Every hold the thread got was abandoned by the drain (a CLOSED channel holds nothing).
        left = [hold for hold in taken if not hold.released]
        for hold in left:
            hold.release()
        assert left == [], f"{len(left)} hold(s) outlived the drain ({report.summary()})"
        assert report.abandoned_holds == len(taken)
        assert channel.holds == 0


# -- several tasks on one call --


@pytest.mark.parametrize("intercepted", [False, True], ids=["direct", "intercepted"])
async def test_every_task_awaiting_one_stream_gets_drain_timeout(intercepted: bool) -> None:
    async with SilentPeer() as peer:
        channel = aio.insecure_channel(
            peer.target, interceptors=[PassingInterceptor()] if intercepted else None
        )
        stub = echo_pb2_grpc.EchoStub(channel)
        bidi = stub.BidiStream()
        server_stream = stub.ServerStream(request())
        waiting = {
            "bidi.read": asyncio.ensure_future(bidi.read()),
            "bidi.initial_metadata": asyncio.ensure_future(bidi.initial_metadata()),
            "bidi.code": asyncio.ensure_future(bidi.code()),
            "bidi.wait_for_connection": asyncio.ensure_future(bidi.wait_for_connection()),
            "server_stream.read": asyncio.ensure_future(server_stream.read()),
            "server_stream.trailing_metadata": asyncio.ensure_future(
                server_stream.trailing_metadata()
            ),
        }
        if not intercepted:  # an intercepted write only queues the message: it returns at once
            waiting["bidi.write"] = asyncio.ensure_future(bidi.write(request()))
        await asyncio.wait_for(peer.connected.wait(), timeout=5)
        for _ in range(5):
            await asyncio.sleep(0)
        assert [name for name, task in waiting.items() if task.done()] == []
        aborted_at = time.monotonic()
        report = await asyncio.wait_for(channel.close(grace=0), timeout=5)
        await asyncio.wait(waiting.values(), timeout=1)
        assert time.monotonic() - aborted_at < 0.1
        assert {name: outcome(task) for name, task in waiting.items()} == dict.fromkeys(
            waiting, "DrainTimeoutError"
        )
        assert sorted(info.kind for info in report.cancelled) == ["stream_stream", "unary_stream"]


async def test_reader_and_writer_blocked_on_flow_control_both_get_drain_timeout(
    echo_server: EchoServer,
) -> None:
    async with StallingProxy.to(echo_server.target) as proxy:
        channel = aio.insecure_channel(proxy.target)
        bidi = echo_pb2_grpc.EchoStub(channel).BidiStream()
        await asyncio.wait_for(bidi.write(request("first")), timeout=5)
        assert (await asyncio.wait_for(bidi.read(), timeout=5)).message == "first"
        proxy.stall()
        reader = asyncio.ensure_future(bidi.read())
        writer = await write_until_blocked(bidi, request("x" * (1 << 20)))
        assert not reader.done()
        aborted_at = time.monotonic()
        report = await asyncio.wait_for(channel.close(grace=0), timeout=5)
        await asyncio.wait({reader, writer}, timeout=1)
        assert time.monotonic() - aborted_at < 0.1
        assert (outcome(reader), outcome(writer)) == ("DrainTimeoutError", "DrainTimeoutError")
        assert [info.kind for info in report.cancelled] == ["stream_stream"]


async def test_a_caller_answered_by_the_drain_keeps_a_clean_cancel_count() -> None:
    """The drain cancels the caller's task to wake it; that must not leave the task's cancel
    count raised, or the caller's next asyncio.timeout() would raise CancelledError."""
    async with SilentPeer() as peer:
        channel = aio.insecure_channel(peer.target)
        call = echo_pb2_grpc.EchoStub(channel).ServerStream(request())

        async def caller() -> str:
            with pytest.raises(DrainTimeoutError):
                await call.read()
            task = asyncio.current_task()
            assert task is not None and task.cancelling() == 0
            try:
                async with asyncio.timeout(0.01):
                    await asyncio.Event().wait()
            except TimeoutError:
                return "timed out"
            return "not reached"

        task = asyncio.create_task(caller())
        await asyncio.wait_for(peer.connected.wait(), timeout=5)
        for _ in range(5):
            await asyncio.sleep(0)
        await asyncio.wait_for(channel.close(grace=0), timeout=5)
        assert await asyncio.wait_for(task, timeout=2) == "timed out"
