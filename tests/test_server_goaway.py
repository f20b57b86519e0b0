"""stop() behind an L4 balancer: the clients' calls that race grpc's GOAWAY are not lost.

grpc cancels every RPC that reaches a server after its stop began, and a client of a balancer
keeps its connection to the draining backend until that stop's GOAWAY reaches it: a client whose
answer was on its way when the stop began sends its next call there, and it is cancelled. The
drain holds the answers of the handlers that finish just before grpc's stop until the GOAWAY is
queued, so the clients read the GOAWAY first. Real servers; the balancer is an in-process TCP
proxy whose link back to the clients is slow (the injected fault that widens the race).
"""

from __future__ import annotations

import asyncio
import collections
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from graceful_grpc import aio
from graceful_grpc.testing import echo_pb2, echo_pb2_grpc

from .server_app import BOUND
from .support.slow_link_proxy import SlowLinkProxy

LOOPS = 8  # clients' calls in flight at once, each sent as soon as the previous one answered
LINK_DELAY = 0.01  # seconds the answers take back to the clients
WARM = 40  # answers from the first backend before its stop


class Named(echo_pb2_grpc.EchoServicer):
    """Answers every call with its server's name at once; ``warm`` is set after ``WARM`` calls."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.answered = 0
        self.warm = asyncio.Event()

    async def Unary(self, request: echo_pb2.EchoRequest, context: Any) -> echo_pb2.EchoResponse:
        self.answered += 1
        if self.answered >= WARM:
            self.warm.set()
        return echo_pb2.EchoResponse(message=self.name)


class NamedInThreads(echo_pb2_grpc.EchoServicer):
    """``Named`` as plain functions on the server's thread pool."""

    def __init__(self, name: str, loop: asyncio.AbstractEventLoop) -> None:
        self.name = name
        self.answered = 0
        self.warm = asyncio.Event()
        self._loop = loop
        self._lock = threading.Lock()

    def Unary(self, request: echo_pb2.EchoRequest, context: Any) -> echo_pb2.EchoResponse:
        with self._lock:
            self.answered += 1
            if self.answered == WARM:
                self._loop.call_soon_threadsafe(self.warm.set)
        return echo_pb2.EchoResponse(message=self.name)


async def _serving(servicer: Any, **options: Any) -> tuple[aio.GracefulServer, str]:
    server = aio.server(**options)
    echo_pb2_grpc.add_EchoServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


@pytest.mark.parametrize("style", ["coroutine", "thread pool"])
async def test_clients_behind_a_balancer_lose_no_call_when_their_backend_stops(
    style: str,
) -> None:
    await _rolling_over(style)


def test_clients_lose_no_call_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_rolling_over("coroutine"))


async def _rolling_over(style: str) -> None:
    """Clients calling in a loop through the balancer while their backend stops: none fails,
    and they all move to the next backend on its GOAWAY."""
    loop = asyncio.get_running_loop()
    pool = None
    if style == "coroutine":
        first: Any = Named("first")  # type: ignore[abstract]  # the stream methods unused
    else:
        pool = ThreadPoolExecutor(4)
        first = NamedInThreads("first", loop)  # type: ignore[abstract]
    draining, draining_target = await _serving(first, migration_thread_pool=pool)
    successor, successor_target = await _serving(Named("successor"))  # type: ignore[abstract]
    failed: collections.Counter[str] = collections.Counter()
    answers: collections.Counter[str] = collections.Counter()
    moved = asyncio.Event()
    try:
        async with (
            SlowLinkProxy([draining_target, successor_target], delay=LINK_DELAY) as proxy,
            grpc.aio.insecure_channel(proxy.target) as channel,
        ):
            stub = echo_pb2_grpc.EchoStub(channel)

            async def calling() -> None:
                while not moved.is_set():
                    try:
                        answer = await stub.Unary(echo_pb2.EchoRequest(), timeout=BOUND)
                    except grpc.aio.AioRpcError as error:
                        failed[error.code().name] += 1
                        continue
                    answers[answer.message] += 1
                    if answer.message == "successor":
                        moved.set()

            callers = [asyncio.create_task(calling()) for _ in range(LOOPS)]
            try:
                await asyncio.wait_for(first.warm.wait(), BOUND)
                report = await asyncio.wait_for(draining.stop(5.0), BOUND)
                await asyncio.wait_for(moved.wait(), BOUND)
                await asyncio.wait_for(asyncio.gather(*callers), BOUND)
            finally:
                for caller in callers:
                    caller.cancel()
    finally:
        await successor.stop(0)
        await draining.stop(0)
        if pool is not None:
            pool.shutdown(wait=False)
    assert failed == {}, (failed, answers)
    assert report.drained
    assert answers["first"] == first.answered and answers["successor"] > 0
    assert proxy.connections == 2  # one to each backend: the clients moved on the GOAWAY
