"""ZeroWatch: waiters on several event loops (an InFlightTracker shared by loops)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest

from graceful_grpc._counting import Counter
from graceful_grpc._zero_watch import ZeroWatch

MAIN = threading.main_thread()


class _Watch(ZeroWatch):
    """Tells when a waiter on another thread has subscribed: it re-checks ``idle()`` then."""

    __slots__ = ("subscribed",)

    def __init__(self, counter: Counter) -> None:
        super().__init__(counter)
        self.subscribed = threading.Event()

    def idle(self) -> bool:
        if threading.current_thread() is not MAIN and set.__len__(self._waiters):
            self.subscribed.set()
        return super().idle()


class _Waiters(set[asyncio.Future[None]]):
    """The watch's waiter set, forcing one interleaving of two threads: once the last waiter has
    left and its thread has seen the set empty, ``on_empty`` runs before that thread goes on."""

    def __init__(self, on_empty: Callable[[], None]) -> None:
        super().__init__()
        self.on_empty: Callable[[], None] | None = on_empty

    def __len__(self) -> int:
        size = super().__len__()
        if size == 0 and self.on_empty is not None and threading.current_thread() is MAIN:
            hook, self.on_empty = self.on_empty, None
            hook()
        return size


@pytest.fixture
def other_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="other loop")
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


async def test_a_waiter_subscribing_on_another_loop_as_the_last_one_leaves_is_woken(
    other_loop: asyncio.AbstractEventLoop,
) -> None:
    counter = Counter()
    counter.incr()
    watch = _Watch(counter)
    other: list[asyncio.Future[bool]] = []

    def subscribe_on_the_other_loop() -> None:
        coroutine = watch.wait_for(2)
        other.append(asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, other_loop)))
        assert watch.subscribed.wait(5), "the other loop's waiter did not subscribe"

    waiters = _Waiters(subscribe_on_the_other_loop)
    watch._waiters = waiters  # the fault injection: the interleaving, forced
    leaving = asyncio.create_task(watch.wait())
    await asyncio.sleep(0)  # subscribed
    leaving.cancel()  # the last waiter of this loop leaves while the other one subscribes
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert len(other) == 1
    counter.decr()
    assert await asyncio.wait_for(other[0], timeout=5) is True
