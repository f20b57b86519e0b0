"""The two ways calls are created: direct construction (fast path) and the class-swap fallback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from graceful_grpc import DrainTimeoutError, aio
from graceful_grpc.aio import _call_factory
from graceful_grpc.testing import EchoServer

from .calls import KINDS, finish, start


def test_direct_path_is_available_with_the_installed_grpc() -> None:
    # If grpc.aio's internals change shape, this fails loudly instead of silently costing ~3% CPU.
    assert _call_factory.DIRECT_AVAILABLE


@pytest.mark.parametrize("kind", KINDS)
async def test_own_channel_builds_translating_calls_directly(
    echo_server: EchoServer, kind: str
) -> None:
    channel = aio.insecure_channel(echo_server.target)
    call = start(channel, kind)
    base = type(call).__mro__[1]
    assert type(call).__name__ == base.__name__  # our subclass of grpc's own call class
    assert base.__module__ == "grpc.aio._call"
    await finish(call, kind)
    await channel.close()


@pytest.fixture
def fallback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_call_factory, "_DIRECT", None)


@pytest.fixture
async def fallback_channel(
    echo_server: EchoServer, fallback_only: None
) -> AsyncIterator[aio.GracefulChannel]:
    channel = aio.insecure_channel(echo_server.target)
    yield channel
    await channel.close(grace=0)


@pytest.mark.parametrize("kind", KINDS)
async def test_fallback_tracks_and_translates(
    echo_server: EchoServer, fallback_channel: aio.GracefulChannel, kind: str
) -> None:
    ok = start(fallback_channel, kind, message="ok")
    assert await finish(ok, kind) == ["ok"]
    stuck = start(fallback_channel, kind, gate="never")
    await echo_server.wait_arrivals("never")
    assert fallback_channel.in_flight == 1
    report = await fallback_channel.close(grace=0)
    assert len(report.cancelled) == 1
    with pytest.raises(DrainTimeoutError) as info:
        await finish(stuck, kind)
    assert info.value.code() == grpc.StatusCode.CANCELLED
    assert fallback_channel.in_flight == 0
