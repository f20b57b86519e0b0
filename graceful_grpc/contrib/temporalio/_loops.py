"""One graceful channel per event loop, under one logical connection.

A grpc.aio channel belongs to the event loop it was created on. temporalio's client works from any
loop (a sync activity calling ``asyncio.run(client.workflow_service...)`` from a thread pool is a
common pattern), so the integration keeps one ``GracefulChannel`` per loop, created on first use
from that loop. ``close()`` drains the channels of every loop still running and releases those of
loops that have stopped or closed (nothing can run on them any more); ``rotate()`` moves the
channels of every running loop to new connections, and later loops' channels to new settings.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import grpc

from ... import ChannelClosedError, ChannelState, DrainReport
from ...aio import GracefulChannel

__all__ = ("LoopChannels", "combine_reports")

_NOTHING = DrainReport(
    closed=True, drained=True, waited=0.0, completed=0, cancelled=(), abandoned_holds=0
)
_CLOSED = "the Temporal client's graceful channels are closed"
_CROSS_LOOP_MARGIN = 1.0  # seconds a running loop gets beyond the drain deadline to report


class LoopChannels:
    """The graceful channels of one logical connection, one per event loop.

    Args:
        factory: Creates a new ``GracefulChannel``; called on the loop that will use it.
    """

    def __init__(self, factory: Callable[[], GracefulChannel]) -> None:
        self._factory = factory
        self._channels: dict[asyncio.AbstractEventLoop, GracefulChannel] = {}
        self._first: GracefulChannel | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()

    def current(self) -> GracefulChannel:
        """The channel of the running event loop, created on first use.

        Without a running loop, the channel of the first loop that used this connection.

        Raises:
            AssertionError: called in a forked child (as temporalio's own client).
            ChannelClosedError: ``close()`` was called and this loop has no channel yet.
        """
        if os.getpid() != self._pid:
            raise AssertionError(
                f"Cannot use client across forks (original PID is {self._pid}, "
                f"current is {os.getpid()}); connect a new client in the child"
            )
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._lock:
            self._release_stopped()
            if loop is None:
                if self._first is None:
                    raise RuntimeError("the client has not been used from any event loop yet")
                return self._first
            channel = self._channels.get(loop)
            if channel is None:
                if self._closed:
                    raise ChannelClosedError(
                        "the Temporal client's graceful channels are closed", "closed"
                    )
                channel = self._channels[loop] = self._factory()
                if self._first is None:
                    self._first = channel
            return channel

    def drain_timeout(self, default: float) -> float:
        """The ``drain_timeout`` of the first loop's channel, or ``default`` if there is none."""
        with self._lock:
            return default if self._first is None else self._first.drain_timeout

    def loops(self) -> int:
        """How many event loops have a channel that is not yet released."""
        with self._lock:
            self._release_stopped()
            return len(self._channels)

    async def close(self, grace: float | None = None) -> DrainReport:
        """Closes every loop's channel; no new channel is created afterwards.

        The running loop's channel and those of loops still running in other threads drain (each
        up to ``grace``, or its ``drain_timeout``); channels of loops that no longer run are
        released.

        Returns:
            One report for all channels (see ``combine_reports``).
        """
        with self._lock:
            self._closed = True
            channels = list(self._channels.items())

        async def close(channel: GracefulChannel) -> DrainReport:
            return await channel.close(grace)

        return combine_reports(await _on_each_loop(channels, close, grace))

    def rotate(
        self,
        factory: Callable[[], GracefulChannel],
        new_raw: Callable[[], grpc.aio.Channel],
        grace: float | None = None,
    ) -> Awaitable[DrainReport]:
        """Rotates every loop's channel to a grpc channel from ``new_raw``; loops that get their
        first channel from now on get it from ``factory``.

        ``new_raw`` is called on each channel's own loop. The running loop's channel switches
        before this first suspends; those of loops running in other threads as soon as their
        loop gets to it. Channels that are draining or closed are left alone, and channels of
        loops that no longer run are released (their loop gets a new one from ``factory`` if it
        runs again).

        Returns:
            What to await for one report for the old connections (see ``combine_reports``).

        Raises:
            ChannelClosedError: ``close()`` was called (raised at once, before anything
                changes).
        """
        with self._lock:
            if self._closed:
                raise ChannelClosedError(
                    "the Temporal client's graceful channels are closed", "closed"
                )
            self._factory = factory
            channels = list(self._channels.items())
            for loop in [loop for loop, _ in channels if not loop.is_running()]:
                del self._channels[loop]
            if self._first is not None and self._first not in self._channels.values():
                self._first = next(iter(self._channels.values()), None)

        async def rotate(channel: GracefulChannel) -> DrainReport:
            if channel.state is not ChannelState.OPEN:
                return _NOTHING
            return await channel.rotate(new_raw(), grace=grace)

        running = [(loop, c) for loop, c in channels if loop.is_running()]

        async def rotate_all() -> DrainReport:
            return combine_reports(await _on_each_loop(running, rotate, grace))

        return rotate_all()

    def _release_stopped(self) -> None:
        for loop in [loop for loop in self._channels if loop.is_closed()]:
            del self._channels[loop]


async def _on_each_loop(
    channels: list[tuple[asyncio.AbstractEventLoop, GracefulChannel]],
    operation: Callable[[GracefulChannel], Coroutine[Any, Any, DrainReport]],
    grace: float | None,
) -> list[DrainReport]:
    """Runs ``operation`` on each channel on its own loop, and returns their reports.

    The running loop's channel is operated on directly and first, before any suspension; channels
    of loops running in other threads through those loops; channels of loops that no longer run
    are released (their report is that of an empty drain).
    """
    running = asyncio.get_running_loop()
    elsewhere: list[Awaitable[DrainReport]] = []
    here: GracefulChannel | None = None
    for loop, channel in channels:
        if loop is running:
            here = channel
        elif loop.is_running() and not loop.is_closed():
            elsewhere.append(_on_loop(loop, channel, operation(channel), grace))
        else:
            elsewhere.append(_released())
    others = asyncio.gather(*elsewhere)
    try:
        reports = [] if here is None else [await operation(here)]
    except BaseException:
        await asyncio.gather(others, return_exceptions=True)
        raise
    return reports + list(await others)


async def _on_loop(
    loop: asyncio.AbstractEventLoop,
    channel: GracefulChannel,
    operation: Coroutine[Any, Any, DrainReport],
    grace: float | None,
) -> DrainReport:
    """Runs ``operation`` on ``channel``'s own (running) loop; bounded in case that loop stops
    first, and unharmed if that loop cancels it as it shuts down (``asyncio.run`` ending)."""
    future = asyncio.run_coroutine_threadsafe(operation, loop)
    deadline = (channel.drain_timeout if grace is None else grace) + _CROSS_LOOP_MARGIN
    started = time.monotonic()
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), deadline)
    except TimeoutError:
        pass
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():  # this task is cancelled, not the operation
            raise
    # Its report is lost with it: what the channel shows now is all there is to say.
    return DrainReport(
        closed=channel.state is ChannelState.CLOSED,
        drained=False,
        waited=time.monotonic() - started,
        completed=0,
        cancelled=(),
        abandoned_holds=channel.holds,
    )


async def _released() -> DrainReport:
    return _NOTHING


def combine_reports(reports: list[DrainReport]) -> DrainReport:
    """One report for several channels: closed and drained only if every one was; ``waited``
    the longest; calls and holds summed."""
    if len(reports) == 1:
        return reports[0]
    return DrainReport(
        closed=all(r.closed for r in reports),
        drained=all(r.drained for r in reports),
        waited=max((r.waited for r in reports), default=0.0),
        completed=sum(r.completed for r in reports),
        cancelled=tuple(c for r in reports for c in r.cancelled),
        abandoned_holds=sum(r.abandoned_holds for r in reports),
        interrupted=tuple(c for r in reports for c in r.interrupted),
    )
