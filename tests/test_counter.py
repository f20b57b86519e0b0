"""The in-flight Counter: both implementations, one behaviour."""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graceful_grpc import _counter_py


def test_starts_at_zero_and_counts(counter_cls: Any) -> None:
    counter = counter_cls()
    assert counter.value == 0
    counter.incr()
    counter.incr()
    assert counter.value == 2
    counter.decr()
    assert counter.value == 1
    counter.done(object())
    assert counter.value == 0


def test_value_is_read_only(counter_cls: Any) -> None:
    counter = counter_cls()
    with pytest.raises(AttributeError):
        counter.value = 5


def test_decrement_at_zero_raises_and_stays_zero(counter_cls: Any) -> None:
    counter = counter_cls()
    with pytest.raises(ValueError, match=r"^Counter\.decr\(\) called at zero$"):
        counter.decr()
    with pytest.raises(ValueError, match=r"^Counter\.decr\(\) called at zero$"):
        counter.done(None)
    assert counter.value == 0
    counter.incr()
    assert counter.value == 1


def test_on_zero_fires_once_per_transition(counter_cls: Any) -> None:
    counter = counter_cls()
    fired: list[int] = []
    counter.on_zero = lambda: fired.append(counter.value)
    counter.incr()
    counter.incr()
    counter.decr()
    assert fired == []
    counter.decr()
    assert fired == [0]  # called after the value reached zero
    counter.incr()
    counter.done("call")
    assert fired == [0, 0]
    counter.incr()  # incrementing never fires it
    assert fired == [0, 0]


def test_on_zero_can_be_cleared_and_replaced(counter_cls: Any) -> None:
    counter = counter_cls()
    assert counter.on_zero is None
    first: list[str] = []
    counter.on_zero = lambda: first.append("first")
    counter.on_zero = None
    counter.incr()
    counter.decr()
    assert first == []
    counter.on_zero = lambda: first.append("second")
    del counter.on_zero
    assert counter.on_zero is None
    counter.incr()
    counter.decr()
    assert first == []


def test_on_zero_must_be_callable(counter_cls: Any) -> None:
    counter = counter_cls()
    with pytest.raises(TypeError, match=r"^on_zero must be callable or None$"):
        counter.on_zero = 42


def test_on_zero_exception_propagates_value_stays_decremented(counter_cls: Any) -> None:
    counter = counter_cls()

    def boom() -> None:
        raise RuntimeError("boom")

    counter.on_zero = boom
    counter.incr()
    with pytest.raises(RuntimeError, match="boom"):
        counter.decr()
    assert counter.value == 0
    with pytest.raises(ValueError, match="called at zero"):
        counter.decr()


def test_repr(counter_cls: Any) -> None:
    counter = counter_cls()
    counter.incr()
    assert repr(counter) == "<Counter value=1>"


def test_done_is_usable_as_a_done_callback(counter_cls: Any) -> None:
    counter = counter_cls()
    counter.incr()
    callback = counter.done
    callback("the call object")
    assert counter.value == 0


def test_done_keeps_no_reference_to_its_argument(counter_cls: Any) -> None:
    counter = counter_cls()
    obj = object()
    before = sys.getrefcount(obj)
    for _ in range(100_000):
        counter.incr()
        counter.done(obj)
    assert sys.getrefcount(obj) == before
    assert counter.value == 0


def test_on_zero_reference_is_released(counter_cls: Any) -> None:
    counter = counter_cls()

    def callback() -> None:
        pass

    before = sys.getrefcount(callback)
    for _ in range(10_000):
        counter.on_zero = callback
        counter.incr()
        counter.decr()
    counter.on_zero = None
    assert sys.getrefcount(callback) == before


def test_reference_cycle_through_on_zero_is_collected(counter_cls: Any) -> None:
    import gc
    import weakref

    class Owner:
        def __init__(self) -> None:
            self.counter = counter_cls()
            self.counter.on_zero = self.wake

        def wake(self) -> None:
            pass

    owner = Owner()
    ref = weakref.ref(owner)
    del owner
    gc.collect()
    assert ref() is None


def _hammer(
    counter: Any, pairs: int, errors: list[BaseException], start: threading.Barrier
) -> None:
    try:
        start.wait()
        incr, decr = counter.incr, counter.decr
        for _ in range(pairs):
            incr()
            decr()
    except BaseException as exc:  # recorded for the main thread
        errors.append(exc)


@pytest.mark.parametrize("pairs", [1_000_000])
def test_two_threads_lose_no_update(counter_cls: Any, pairs: int) -> None:
    if counter_cls is _counter_py.Counter:
        pairs //= 10  # the lock-based twin is ~20x slower; the property is the same
    counter = counter_cls()
    errors: list[BaseException] = []
    start = threading.Barrier(2)
    threads = [
        threading.Thread(target=_hammer, args=(counter, pairs, errors, start)) for _ in range(2)
    ]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # force as many interleavings as the interpreter allows
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
    assert errors == []
    assert counter.value == 0


_OPS = st.lists(st.sampled_from(["incr", "decr", "done", "set", "clear"]), max_size=60)


@given(ops=_OPS)
def test_both_implementations_agree_with_a_model(ops: list[str]) -> None:
    import importlib

    implementations: list[Any] = [_counter_py.Counter]
    with contextlib.suppress(ImportError):
        implementations.append(importlib.import_module("graceful_grpc._counter").Counter)
    traces = []
    for cls in implementations:
        counter = cls()
        fired: list[int] = []
        trace: list[object] = []
        model = 0
        for op in ops:
            if op == "set":
                counter.on_zero = lambda fired=fired: fired.append(1)
            elif op == "clear":
                counter.on_zero = None
            elif op == "incr":
                counter.incr()
                model += 1
            else:
                try:
                    counter.decr() if op == "decr" else counter.done(None)
                    model -= 1
                except ValueError as exc:
                    assert model == 0
                    trace.append(str(exc))
            assert counter.value == model
            trace.append((counter.value, len(fired), repr(counter)))
        traces.append(trace)
    assert all(trace == traces[0] for trace in traces)
