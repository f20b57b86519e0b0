"""One graceful channel per event loop, under one logical connection.

A grpc.aio channel belongs to the event loop it was created on. temporalio's client works from any
loop (a sync activity calling ``asyncio.run(client.workflow_service...)`` from a thread pool is a
common pattern), so the integration keeps one ``GracefulChannel`` per loop, created on first use
from that loop. ``close()`` drains the channels of every loop still running and releases those of
loops that have stopped or closed (nothing can run on them any more).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable

from ... import ChannelClosedError, DrainReport
from ...aio import GracefulChannel

__all__ = ("LoopChannels", "combine_reports")

_RELEASED = DrainReport(
    closed=True, drained=True, waited=0.0, completed=0, cancelled=(), abandoned_holds=0
)
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
                    raise ChannelClosedError("the Temporal client's graceful channels are closed")
                channel = self._channels[loop] = self._factory()
                if self._first is None:
                    self._first = channel
            return channel

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
        running = asyncio.get_running_loop()
        closes = []
        for loop, channel in channels:
            if loop is running:
                closes.append(channel.close(grace))
            elif loop.is_running() and not loop.is_closed():
                closes.append(_close_on(loop, channel, grace))
            else:
                closes.append(_released())
        return combine_reports(await asyncio.gather(*closes))

    def _release_stopped(self) -> None:
        for loop in [loop for loop in self._channels if loop.is_closed()]:
            del self._channels[loop]


async def _close_on(
    loop: asyncio.AbstractEventLoop, channel: GracefulChannel, grace: float | None
) -> DrainReport:
    """Closes ``channel`` on its own (running) loop; bounded in case that loop stops first."""
    future = asyncio.run_coroutine_threadsafe(channel.close(grace), loop)
    deadline = (channel.drain_timeout if grace is None else grace) + _CROSS_LOOP_MARGIN
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), deadline)
    except TimeoutError:
        return DrainReport(
            closed=False,
            drained=False,
            waited=deadline,
            completed=0,
            cancelled=(),
            abandoned_holds=channel.holds,
        )


async def _released() -> DrainReport:
    return _RELEASED


def combine_reports(reports: list[DrainReport]) -> DrainReport:
    """One report for several channels: closed and drained only if every one was."""
    if len(reports) == 1:
        return reports[0]
    return DrainReport(
        closed=all(r.closed for r in reports),
        drained=all(r.drained for r in reports),
        waited=max((r.waited for r in reports), default=0.0),
        completed=sum(r.completed for r in reports),
        cancelled=tuple(c for r in reports for c in r.cancelled),
        abandoned_holds=sum(r.abandoned_holds for r in reports),
    )
