"""Fault injection mid-drain: a server killed or stopped (in a child process), and a network that
stops delivering (a stalling TCP proxy). Whatever the fault, close() returns by its deadline, every
caller gets a typed error, and the report lists the calls the deadline cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from graceful_grpc import ChannelState, DrainReport, DrainTimeoutError, aio
from graceful_grpc.testing import EchoServer, EchoServerProcess, echo_pb2, echo_pb2_grpc

from .support.calls import KINDS, call_once, finish, start
from .support.stalling_proxy import StallingProxy

# close() may overrun its deadline by this much (the bound).
CLOSE_SLACK = 0.05


def request(message: str = "m", **behaviour: Any) -> echo_pb2.EchoRequest:
    return echo_pb2.EchoRequest(message=message, behaviour=echo_pb2.Behaviour(**behaviour))


@pytest.fixture
async def server_process() -> AsyncIterator[EchoServerProcess]:
    """The Echo server in a child process; a stopped child is continued before it is stopped."""
    server = EchoServerProcess(startup_timeout=30)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):  # continue a stopped child, or it hangs
            os.kill(server.pid, signal.SIGCONT)
        await asyncio.to_thread(server.stop)


async def four_calls_in_flight(channel: aio.GracefulChannel) -> dict[str, asyncio.Task[Any]]:
    """One call of each kind held by the server, each awaited by its own caller task."""
    await asyncio.wait_for(channel.channel_ready(), timeout=10)
    callers = {
        kind: asyncio.create_task(finish(start(channel, kind, gate="never"), kind))
        for kind in KINDS
    }
    # A round trip on the same connection after the four calls were sent.
    assert await asyncio.wait_for(call_once(channel, "unary_unary", "probe"), 10) == ["probe"]
    assert channel.in_flight == len(KINDS)
    assert not any(caller.done() for caller in callers.values())
    return callers


async def close_and_time(
    channel: aio.GracefulChannel, grace: float, fault: Any
) -> tuple[DrainReport, float]:
    """Starts close(grace), injects ``fault`` once the drain runs, and times close()."""
    started = time.monotonic()
    closing = asyncio.create_task(channel.close(grace))
    await asyncio.sleep(0)
    assert channel.state is ChannelState.DRAINING
    fault()
    report = await asyncio.wait_for(closing, timeout=grace + 5)
    return report, time.monotonic() - started


def assert_the_deadline_cancelled_every_call(
    report: DrainReport, took: float, grace: float, answers: dict[str, BaseException | None]
) -> None:
    assert {kind: type(error).__name__ for kind, error in answers.items()} == dict.fromkeys(
        KINDS, "DrainTimeoutError"
    )
    assert grace <= took <= grace + CLOSE_SLACK
    assert sorted(info.kind for info in report.cancelled) == sorted(KINDS)
    assert report.completed == 0 and not report.drained


async def outcomes(callers: dict[str, asyncio.Task[Any]]) -> dict[str, BaseException | None]:
    """What each caller got; every caller must already be answered (or be within 50 ms)."""
    await asyncio.wait(callers.values(), timeout=CLOSE_SLACK)
    assert [kind for kind, caller in callers.items() if not caller.done()] == []
    return {
        kind: (asyncio.CancelledError() if caller.cancelled() else caller.exception())
        for kind, caller in callers.items()
    }


async def test_server_killed_mid_drain(server_process: EchoServerProcess) -> None:
    channel = aio.insecure_channel(server_process.target)
    callers = await four_calls_in_flight(channel)
    grace = 2.0
    report, took = await close_and_time(
        channel, grace, lambda: os.kill(server_process.pid, signal.SIGKILL)
    )
    answers = await outcomes(callers)
    # The network failed every call before the deadline: UNAVAILABLE, as grpc.aio reports it.
    for kind, error in answers.items():
        assert isinstance(error, grpc.aio.AioRpcError), (kind, error)
        assert not isinstance(error, DrainTimeoutError), kind
        assert error.code() is grpc.StatusCode.UNAVAILABLE, (kind, error)
    assert took <= grace + CLOSE_SLACK
    assert report.drained and report.cancelled == ()
    assert report.completed == len(KINDS) + 0  # the four failed calls; the probe ended before


async def test_server_stopped_mid_drain(server_process: EchoServerProcess) -> None:
    channel = aio.insecure_channel(server_process.target)
    callers = await four_calls_in_flight(channel)
    grace = 0.3
    report, took = await close_and_time(
        channel, grace, lambda: os.kill(server_process.pid, signal.SIGSTOP)
    )
    assert_the_deadline_cancelled_every_call(report, took, grace, await outcomes(callers))


async def test_proxy_that_forwards_nothing(echo_server: EchoServer) -> None:
    async with StallingProxy.to(echo_server.target, forward=False) as proxy:
        channel = aio.insecure_channel(proxy.target)
        callers = {kind: asyncio.create_task(finish(start(channel, kind), kind)) for kind in KINDS}
        await asyncio.wait_for(proxy.accepted.wait(), timeout=10)
        assert not any(caller.done() for caller in callers.values())
        grace = 0.2
        report, took = await close_and_time(channel, grace, lambda: None)
        assert_the_deadline_cancelled_every_call(report, took, grace, await outcomes(callers))


async def test_proxy_that_stops_mid_stream(echo_server: EchoServer) -> None:
    async with StallingProxy.to(echo_server.target) as proxy:
        channel = aio.insecure_channel(proxy.target)
        stub = echo_pb2_grpc.EchoStub(channel)
        # Streams that are flowing when the network stops: responses arrive, then no more.
        server_stream = stub.ServerStream(request(count=10_000, interval_ms=5))
        bidi = stub.BidiStream()
        await asyncio.wait_for(bidi.write(request("first")), timeout=10)
        assert (await asyncio.wait_for(bidi.read(), timeout=10)).message == "first"
        assert (await asyncio.wait_for(server_stream.read(), timeout=10)).index == 0
        unary = stub.Unary(request(gate="never"))
        client_stream = stub.ClientStream()
        await asyncio.wait_for(client_stream.write(request(gate="never")), timeout=10)
        await asyncio.wait_for(client_stream.done_writing(), timeout=10)
        await asyncio.wait_for(echo_server.wait_arrivals("never", 2), timeout=10)
        proxy.freeze()

        async def read_all(call: Any) -> None:
            while await call.read() is not grpc.aio.EOF:
                pass

        async def write_and_read(call: Any) -> None:
            await call.write(request("second"))
            await call.read()

        callers = {
            "unary_unary": asyncio.ensure_future(unary),
            "unary_stream": asyncio.create_task(read_all(server_stream)),
            "stream_unary": asyncio.ensure_future(client_stream),
            "stream_stream": asyncio.create_task(write_and_read(bidi)),
        }
        for _ in range(5):
            await asyncio.sleep(0)
        assert [kind for kind, caller in callers.items() if caller.done()] == []
        grace = 0.2
        report, took = await close_and_time(channel, grace, lambda: None)
        assert_the_deadline_cancelled_every_call(report, took, grace, await outcomes(callers))


# -- the process helper itself --


def test_process_start_times_out_when_the_child_never_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault: a child that hangs before it prints its port (its interpreter start-up never ends).
    (tmp_path / "sitecustomize.py").write_text("import time\ntime.sleep(10)\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), *sys.path]))
    server = EchoServerProcess(startup_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"within 0\.5s"):
        server.start()
    assert time.monotonic() - started < 5
    with pytest.raises(RuntimeError, match="not started"):
        server.pid  # noqa: B018 - the child was killed and forgotten
