"""Microbenchmarks without network: the wrapper's added CPU per call, and the counters."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

from graceful_grpc import _counter_py, aio

from .stats import iqr, median

__all__ = ("counter_pair_ns", "counter_threads", "wrapper_overhead_real_us", "wrapper_overhead_us")


class FakeCall:
    """Just enough of a grpc.aio call: done-callbacks that fire when the test says so."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[Any], None]] = []

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        self._callbacks.append(callback)

    def done(self) -> bool:
        return False

    def cancel(self) -> bool:
        return False

    def finish(self) -> None:
        for callback in self._callbacks:
            callback(self)


class _FakeMultiCallable:
    def __call__(self, request: Any, **kwargs: Any) -> FakeCall:
        return FakeCall()


class FakeChannel(grpc.aio.Channel):
    """A grpc.aio.Channel whose unary_unary returns FakeCall objects."""

    async def __aenter__(self) -> FakeChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def close(self, grace: float | None = None) -> None:
        return None

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return grpc.ChannelConnectivity.READY

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        return None

    async def channel_ready(self) -> None:
        return None

    def unary_unary(self, *args: Any, **kwargs: Any) -> Any:
        return _FakeMultiCallable()

    unary_stream = stream_unary = stream_stream = unary_unary


def _time_calls(multicallable: Any, calls: int) -> float:
    start = time.process_time()
    for _ in range(calls):
        multicallable(None).finish()
    return (time.process_time() - start) / calls


def wrapper_overhead_us(rounds: int, calls: int) -> dict[str, Any]:
    """Added CPU per call of GracefulChannel's multicallable over the raw one (fake call).

    A fake call is not a grpc.aio call, so it takes the path of intercepted and foreign calls:
    its class is swapped for the answering subclass after construction, and its start watched
    through its attributes. grpc.aio's own calls are built as that subclass directly; their
    added cost is the real-call figure (and, by instruction count, ``benchmarks.callgrind``).
    """
    raw = FakeChannel().unary_unary("/bench/Unary")
    graceful = aio.wrap(FakeChannel()).unary_unary("/bench/Unary")
    added: list[float] = []
    for _ in range(rounds):
        pair = [("raw", raw), ("graceful", graceful)]
        random.shuffle(pair)
        times = {name: _time_calls(mc, calls) for name, mc in pair}
        added.append((times["graceful"] - times["raw"]) * 1e6)
    return {"added_us_median": median(added), "added_us_iqr": iqr(added), "rounds": added}


def wrapper_overhead_real_us(rounds: int, calls: int) -> dict[str, Any]:
    """Added CPU per unary call over raw grpc.aio, with real grpc call objects but no network.

    Each call is created on a channel to an address nobody listens on and cancelled at once
    (which runs its done-callbacks), so the figure is creation + tracking + completion.
    """
    import asyncio

    async def run() -> list[float]:
        raw_channel = grpc.aio.insecure_channel("127.0.0.1:9")
        graceful_channel = aio.insecure_channel("127.0.0.1:9")
        raw: Any = raw_channel.unary_unary("/bench/Unary")
        graceful = graceful_channel.unary_unary("/bench/Unary")

        async def time_calls(multicallable: Any) -> float:
            start = time.process_time()
            for index in range(calls):
                multicallable(b"").cancel()
                if index % 500 == 0:
                    await asyncio.sleep(0)  # let the cancelled calls' tasks finish
            await asyncio.sleep(0)
            return (time.process_time() - start) / calls

        added = []
        for _ in range(rounds):
            pair = [("raw", raw), ("graceful", graceful)]
            random.shuffle(pair)
            times = {name: await time_calls(mc) for name, mc in pair}
            added.append((times["graceful"] - times["raw"]) * 1e6)
        await raw_channel.close()
        await graceful_channel.close()
        return added

    added = asyncio.run(run())
    return {"added_us_median": median(added), "added_us_iqr": iqr(added), "rounds": added}


class LockedInt:
    """The hand-rolled alternative: an int behind a threading.Lock."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def incr(self) -> None:
        with self._lock:
            self.value += 1

    def decr(self) -> None:
        with self._lock:
            self.value -= 1


def _counters() -> dict[str, Any]:
    from graceful_grpc import _counting

    counters: dict[str, Any] = {"python": _counter_py.Counter(), "lock": LockedInt()}
    if _counting.COUNTER_IMPLEMENTATION == "c":
        counters["c"] = _counting.Counter()
    return counters


def _empty_loop_ns(pairs: int) -> float:
    start = time.perf_counter()
    for _ in range(pairs):
        pass
    return (time.perf_counter() - start) / pairs * 1e9


def counter_pair_ns(rounds: int, pairs: int) -> dict[str, Any]:
    """ns per incr()+decr() pair: C counter, Python twin, and a Lock-protected int.

    Calls are written ``counter.incr()`` (on CPython 3.11 that is faster than calling a cached
    bound builtin method); the cost of the empty loop is subtracted.
    """
    candidates = _counters()
    results: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        order = list(candidates.items())
        random.shuffle(order)
        for name, counter in order:
            start = time.perf_counter()
            for _ in range(pairs):
                counter.incr()
                counter.decr()
            elapsed = (time.perf_counter() - start) / pairs * 1e9
            results[name].append(elapsed - _empty_loop_ns(pairs))
    return {name: {"ns_median": median(v), "ns_iqr": iqr(v)} for name, v in results.items()}


def counter_threads(pairs: int) -> dict[str, Any]:
    """Two threads hammering one counter (C, and the Lock-protected int): is any update lost?"""
    results = {}
    for name, counter in _counters().items():
        if name == "python":
            continue
        errors: list[BaseException] = []

        def hammer(counter: Any = counter, errors: list[BaseException] = errors) -> None:
            try:
                for _ in range(pairs):
                    counter.incr()
                    counter.decr()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=hammer) for _ in range(2)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        results[name] = {
            "pairs_per_thread": pairs,
            "final_value": counter.value,
            "errors": len(errors),
            "seconds": time.perf_counter() - start,
        }
    return results
