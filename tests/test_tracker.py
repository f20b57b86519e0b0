"""InFlightTracker on a plain grpc.aio channel you don't own."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from graceful_grpc import aio
from graceful_grpc.testing import EchoServer

from .support.calls import KINDS, finish, start


@pytest.mark.parametrize("kind", KINDS)
async def test_counts_each_kind_until_final_status(echo_server: EchoServer, kind: str) -> None:
    tracker = aio.InFlightTracker()
    async with grpc.aio.insecure_channel(
        echo_server.target, interceptors=tracker.interceptors
    ) as channel:
        call = start(channel, kind, gate="g", message="t")
        await echo_server.wait_arrivals("g")
        assert tracker.in_flight == 1
        assert not await tracker.wait_idle(timeout=0.01)
        echo_server.open_gate("g")
        assert await finish(call, kind) == ["t"]
        assert await tracker.wait_idle(timeout=10)
        assert tracker.in_flight == 0


async def test_wait_idle_wakes_on_completion(echo_server: EchoServer) -> None:
    tracker = aio.InFlightTracker()
    async with grpc.aio.insecure_channel(
        echo_server.target, interceptors=tracker.interceptors
    ) as channel:
        calls = [start(channel, "unary_unary", gate="g") for _ in range(5)]
        await echo_server.wait_arrivals("g", 5)
        idle = asyncio.create_task(tracker.wait_idle(timeout=30))
        await asyncio.sleep(0)
        assert not idle.done()
        echo_server.open_gate("g")
        await asyncio.gather(*calls)
        assert await idle is True


async def test_failed_and_cancelled_calls_are_uncounted(echo_server: EchoServer) -> None:
    tracker = aio.InFlightTracker()
    async with grpc.aio.insecure_channel(
        echo_server.target, interceptors=tracker.interceptors
    ) as channel:
        failing = start(channel, "unary_unary", fail_code=grpc.StatusCode.ABORTED.value[0])
        with pytest.raises(grpc.aio.AioRpcError):
            await failing
        stuck = start(channel, "unary_stream", gate="never")
        task = asyncio.create_task(finish(stuck, "unary_stream"))
        await echo_server.wait_arrivals("never")
        assert tracker.in_flight == 1  # the failed call is uncounted, the stuck one counted
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)
        assert await tracker.wait_idle(timeout=10)
        assert tracker.in_flight == 0


async def test_wait_idle_rejects_bad_timeout() -> None:
    with pytest.raises(ValueError, match="timeout"):
        await aio.InFlightTracker().wait_idle(timeout=float("nan"))
