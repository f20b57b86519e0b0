"""Pure-Python twin of the C module ``graceful_grpc._counter``.

Both implementations behave identically: same methods, exceptions, messages and repr. A lock
makes ``incr``/``decr`` atomic across threads, as the C version's atomics do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, final

__all__ = ("Counter",)

_MAX = 2**63 - 1  # the C version's long long limit


@final
class Counter:
    """A thread-safe non-negative counter with a callback on reaching zero."""

    __slots__ = ("_lock", "_on_zero", "_value")

    def __init__(self) -> None:
        self._value = 0
        self._on_zero: Callable[[], object] | None = None
        self._lock = threading.Lock()

    @property
    def value(self) -> int:
        """The current value."""
        return self._value

    @property
    def on_zero(self) -> Callable[[], object] | None:
        """Called with no arguments after each decrement that reaches zero, or None."""
        return self._on_zero

    @on_zero.setter
    def on_zero(self, callback: Callable[[], object] | None) -> None:
        if callback is not None and not callable(callback):
            raise TypeError("on_zero must be callable or None")
        self._on_zero = callback

    @on_zero.deleter
    def on_zero(self) -> None:
        self._on_zero = None

    def incr(self) -> None:
        """Add one to the value."""
        with self._lock:
            if self._value == _MAX:
                raise OverflowError("Counter.incr() would overflow")
            self._value += 1

    def decr(self) -> None:
        """Subtract one; raise ValueError at zero; call on_zero on reaching zero."""
        with self._lock:
            if self._value == 0:
                raise ValueError("Counter.decr() called at zero")
            self._value -= 1
            reached_zero = self._value == 0
        if reached_zero:
            callback = self._on_zero
            if callback is not None:
                callback()

    def done(self, call: Any, /) -> None:
        """decr() taking (and ignoring) one argument, for call.add_done_callback."""
        self.decr()

    def __repr__(self) -> str:
        return f"<Counter value={self._value}>"
