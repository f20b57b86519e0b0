"""Helpers of the rotation tests: a recording factory of grpc channels, and a load of callers."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import grpc

from graceful_grpc import aio
from graceful_grpc.testing import EchoServer

from .calls import KINDS, call_once

__all__ = ("Load", "Recording", "peer_of", "recording_channel")


class Recording:
    """A factory of grpc channels to one target that keeps every channel it built."""

    def __init__(self, target: str | Callable[[], str]) -> None:
        self._target = target
        self.built: list[grpc.aio.Channel] = []

    def __call__(self) -> grpc.aio.Channel:
        target = self._target() if callable(self._target) else self._target
        raw = grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        self.built.append(raw)
        return raw


def recording_channel(target: str, **options: Any) -> tuple[aio.GracefulChannel, Recording]:
    factory = Recording(target)
    return aio.wrap(factory(), factory=factory, **options), factory


def peer_of(server: EchoServer, message: str) -> str:
    peers = {seen.peer for seen in server.invocations if seen.message == message}
    assert len(peers) == 1, peers
    return peers.pop()


class Load:
    """Callers that mix the four call kinds in a loop and count every failure."""

    def __init__(self, channel: aio.GracefulChannel, callers: int = 8) -> None:
        self.channel = channel
        self.failures: list[str] = []
        self.succeeded = 0
        self.most_connections = 0
        self._stop = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._run(KINDS[i % len(KINDS)], i)) for i in range(callers)
        ]

    async def _run(self, kind: str, caller: int) -> None:
        for n in itertools.count():
            if self._stop.is_set():
                return
            message = f"{caller}.{n}"
            try:
                got = await asyncio.wait_for(call_once(self.channel, kind, message), timeout=10)
            except Exception as error:  # every failure is a finding
                self.failures.append(f"{kind}: {error!r}")
                continue
            if got != [message]:
                self.failures.append(f"{kind}: {got!r} != {[message]!r}")
            self.succeeded += 1
            self.most_connections = max(self.most_connections, self.channel.connections)

    async def wait_calls(self, count: int) -> None:
        target = self.succeeded + count
        while self.succeeded < target and not self.failures:
            await asyncio.wait(self._tasks, timeout=0.01)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), timeout=20)
