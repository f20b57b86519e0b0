"""Waiting, without polling, until a set of counters are all at zero."""

from __future__ import annotations

import asyncio
import contextlib

from ._counting import Counter
from ._validation import check_seconds

__all__ = ("ZeroWatch",)


class ZeroWatch:
    """Wakes its waiters when every watched counter is at zero.

    The watch is the only user of its counters' ``on_zero``: it is set only while someone waits, so
    the hot path pays nothing when nobody does. Waiters may wait on several event loops at once,
    and ``on_zero`` may fire on another thread (a hold released there); waking then goes through
    each waiter's loop thread-safely. A change that does not come through ``decr()`` reaching zero
    is announced with ``notify()``.
    """

    __slots__ = ("_counters", "_waiters")

    def __init__(self, *counters: Counter) -> None:
        self._counters = counters
        self._waiters: set[asyncio.Future[None]] = set()

    def idle(self) -> bool:
        """Whether every counter is at zero now."""
        return all(counter.value == 0 for counter in self._counters)

    async def wait(self) -> None:
        """Returns once every counter is at zero (at once if they already are)."""
        if self.idle():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        self._subscribe()
        try:
            if not self.idle():  # a counter may have reached zero while we subscribed
                await waiter
        finally:
            self._waiters.discard(waiter)
            if not self._waiters:
                self._unsubscribe()

    # Waiters may be on several loops (threads), so subscribing and unsubscribing interleave
    # without a lock: every subscriber sets ``on_zero`` (idempotent), and the last one to leave
    # re-checks after clearing it, so that a waiter who subscribed meanwhile is not left without.

    def _subscribe(self) -> None:
        for counter in self._counters:
            counter.on_zero = self.notify

    def _unsubscribe(self) -> None:
        for counter in self._counters:
            counter.on_zero = None
        if self._waiters:  # another thread's waiter subscribed as we cleared
            self._subscribe()
            self.notify()  # a counter may have reached zero while it was cleared

    async def wait_for(self, timeout: float | None) -> bool:  # noqa: ASYNC109 - public API shape
        """``wait()`` for at most ``timeout`` seconds (None: no limit); False if it timed out.

        Raises:
            ValueError: ``timeout`` negative, NaN or infinite.
        """
        seconds = None if timeout is None else check_seconds(timeout, "timeout")
        try:
            async with asyncio.timeout(seconds):
                await self.wait()
        except TimeoutError:
            return False
        return True

    def notify(self) -> None:
        """Wakes every waiter if every counter is at zero now. Safe from any thread."""
        if not self.idle():
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for waiter in list(self._waiters):
            loop = waiter.get_loop()
            if loop is running:
                _wake(waiter)
            else:
                with contextlib.suppress(RuntimeError):  # that loop closed: nobody waits there
                    loop.call_soon_threadsafe(_wake, waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
