"""What a rotation must refuse before anything changes: a factory's result that is not a grpc.aio
channel, and the grpc channel the graceful channel already uses (or still drains on)."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from typing import Any

import grpc
import pytest

from graceful_grpc import ChannelState, aio
from graceful_grpc.testing import EchoServer

from .support.calls import call_once, start
from .support.rotation import Recording


class _Logged(logging.Handler):
    """Sets ``seen`` when the graceful_grpc logger logs a record containing ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self._loop.call_soon_threadsafe(self.seen.set)


@pytest.fixture
async def logged() -> Any:
    handlers: list[_Logged] = []
    logger = logging.getLogger("graceful_grpc")

    def watch(text: str) -> _Logged:
        handler = _Logged(text)
        logger.addHandler(handler)
        handlers.append(handler)
        return handler

    yield watch
    for handler in handlers:
        logger.removeHandler(handler)


@pytest.mark.parametrize("bad", ["None", "42", "GracefulChannel"])
async def test_a_factory_result_that_is_not_a_grpc_channel_is_refused(
    echo_server: EchoServer, bad: str
) -> None:
    # A GracefulChannel is no connection to rotate onto: share() it instead.
    result = {"None": None, "42": 42}.get(bad) or aio.insecure_channel(echo_server.target)
    factory: Any = lambda: result  # noqa: E731 - what a mistaken user passes
    channel = aio.wrap(grpc.aio.insecure_channel(echo_server.target), factory=factory)
    with pytest.raises(TypeError, match="factory"):
        await channel.rotate()
    assert channel.rotations == 0 and channel.connections == 1
    assert await call_once(channel, "unary_unary") == ["m"]
    report = await asyncio.wait_for(channel.close(), timeout=5)
    assert report.closed and report.drained
    if isinstance(result, aio.GracefulChannel):
        await result.close()


async def test_a_failing_max_age_factory_keeps_the_connection_and_logs(
    echo_server: EchoServer, logged: Any
) -> None:
    failed = logged("max_age rotation failed")
    channel = aio.wrap(
        grpc.aio.insecure_channel(echo_server.target),
        factory=lambda: None,  # type: ignore[arg-type,return-value]
        max_age=0.01,
        max_age_jitter=0,
    )
    await asyncio.wait_for(failed.seen.wait(), timeout=5)
    assert channel.rotations == 0 and channel.state is ChannelState.OPEN
    assert await call_once(channel, "unary_unary") == ["m"]
    report = await asyncio.wait_for(channel.close(), timeout=5)
    assert report.closed and report.drained


async def test_rotating_onto_the_grpc_channel_in_use_is_refused(echo_server: EchoServer) -> None:
    raw = grpc.aio.insecure_channel(echo_server.target)
    channel = aio.wrap(raw)
    with pytest.raises(ValueError, match="already"):
        await channel.rotate(raw)
    assert channel.rotations == 0 and channel.connections == 1
    assert await call_once(channel, "unary_unary") == ["m"]
    await channel.close()


async def test_rotating_onto_a_grpc_channel_an_old_connection_drains_on_is_refused(
    echo_server: EchoServer,
) -> None:
    factory = Recording(echo_server.target)
    channel = aio.wrap(factory(), factory=factory)
    old = factory.built[0]
    call = start(channel, "unary_unary", gate="old")
    await echo_server.wait_arrivals("old")
    rotating = asyncio.create_task(channel.rotate(grace=30))
    await asyncio.sleep(0)
    assert channel.connections == 2
    with pytest.raises(ValueError, match="already"):
        await channel.rotate(old)
    assert channel.rotations == 1 and channel.connections == 2
    assert await call_once(channel, "unary_unary", "new") == ["new"]
    echo_server.open_gate("old")
    assert (await call).message == "m"
    assert (await asyncio.wait_for(rotating, timeout=5)).completed == 1
    await channel.close()


async def test_a_factory_handing_back_the_grpc_channel_in_use_is_refused(
    echo_server: EchoServer, logged: Any
) -> None:
    raw = grpc.aio.insecure_channel(echo_server.target)
    channel = aio.wrap(raw, factory=lambda: raw)
    with pytest.raises(ValueError, match="already"):
        await channel.rotate()
    assert channel.rotations == 0
    assert await call_once(channel, "unary_unary") == ["m"]
    await channel.close()
    failed = logged("max_age rotation failed")
    raw = grpc.aio.insecure_channel(echo_server.target)
    aged = aio.wrap(raw, factory=lambda: raw, max_age=0.01, max_age_jitter=0)
    await asyncio.wait_for(failed.seen.wait(), timeout=5)
    assert aged.rotations == 0
    assert await call_once(aged, "unary_unary") == ["m"]
    await aged.close()


async def test_a_max_age_channel_dropped_without_close_is_collected(
    echo_server: EchoServer,
) -> None:
    built: list[weakref.ref[grpc.aio.Channel]] = []

    def factory() -> grpc.aio.Channel:
        raw = grpc.aio.insecure_channel(echo_server.target)
        built.append(weakref.ref(raw))
        return raw

    channel = aio.wrap(factory(), factory=factory, max_age=30, max_age_jitter=0)
    del channel  # its age timer is due in 30s: it must not keep the channel alive until then
    gc.collect()
    assert len(built) == 1 and built[0]() is None, "the age timer keeps the channel alive"
