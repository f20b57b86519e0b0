"""Holds: leases that keep a channel open for a unit of work, the one registry that owns them, and
the "held" context.

A hold ends exactly once, released by its owner or abandoned at the drain deadline, whichever
comes first even on different threads: ending it is popping its one-item token, which is atomic,
and only the registry does that.
"""

from __future__ import annotations

import contextvars
import threading
import warnings
from collections.abc import Callable
from types import TracebackType

from .._counting import Counter
from ..errors import ChannelClosedError

__all__ = ("Hold", "HoldRegistry", "is_held")

# The holds taken in this context and the tasks created from it. A tuple, so that copying a context
# into a new task shares nothing mutable; released holds are skipped when read.
_HELD: contextvars.ContextVar[tuple[Hold, ...]] = contextvars.ContextVar(
    "graceful_grpc_held", default=()
)


def is_held(registry: HoldRegistry) -> bool:
    """Whether the running code is inside an unreleased hold of ``registry``."""
    return any(hold._registry is registry and hold._token for hold in _HELD.get())


class HoldRegistry:
    """The holds of one channel: their count, the token of each unreleased one, and closing.

    Holds may be taken and released on any thread, so taking one and closing (refusing new holds)
    exclude each other under the registry's lock; a release only ever counts down.

    Attributes:
        count: Holds outstanding (taken and not yet ended).
    """

    __slots__ = ("_closed", "_lock", "_tokens", "count")

    def __init__(self) -> None:
        self.count = Counter()
        self._tokens: dict[int, list[bool]] = {}  # id(token) -> token of every unreleased hold
        self._lock = threading.Lock()
        self._closed = False

    def take(self) -> Hold:
        """Takes a hold (admission is the caller's decision). Safe from any thread.

        Raises:
            ChannelClosedError: the registry is closed (a thread can race the close).
        """
        token = [True]
        with self._lock:
            if self._closed:
                raise ChannelClosedError("graceful_grpc channel is closed: no new hold", "closed")
            self.count.incr()
            self._tokens[id(token)] = token
        return Hold(self, token)

    def end(self, token: list[bool]) -> bool:
        """Ends the hold of ``token``, unless it has ended already; whether this call ended it."""
        try:
            token.pop()
        except IndexError:  # released, or abandoned, already (perhaps on another thread)
            return False
        self._tokens.pop(id(token), None)
        self.count.decr()
        return True

    def close_if(self, idle: Callable[[], bool]) -> bool:
        """Closes the registry if ``idle()`` holds, in one step against threads taking holds."""
        with self._lock:
            if not idle():
                return False
            self._closed = True
            return True

    def close_and_abandon(self) -> int:
        """Closes the registry and ends every hold still out; returns how many it ended."""
        with self._lock:
            self._closed = True
            tokens = list(self._tokens.values())
        return sum(self.end(token) for token in tokens)


class Hold:
    """A lease keeping a graceful channel's connection open for one unit of work.

    While unreleased, the connection stays open through ``close()`` (until the drain deadline),
    even when no RPC is in flight, and code running inside it - the ``with`` block, code after
    ``ch.hold()`` in the same task, and tasks created from there - may still make calls while the
    channel drains. Obtain one from ``GracefulChannel.hold()``.

    Usage:
        async with channel.hold(): ...
        with channel.hold(): ...
        hold = channel.hold(); ...; hold.release()
    """

    __slots__ = ("__weakref__", "_registry", "_token")

    def __init__(self, registry: HoldRegistry, token: list[bool]) -> None:
        """Used by the registry; ``token`` holds one item while the hold is unreleased."""
        self._registry = registry
        self._token = token
        held = _HELD.get()
        _HELD.set((*(hold for hold in held if hold._token), self))

    @property
    def released(self) -> bool:
        """Whether the hold has ended: released, or abandoned at the drain deadline."""
        return not self._token

    def release(self) -> bool:
        """Ends the hold. Idempotent; safe from any task or thread.

        Returns:
            Whether this call ended it (False: it had ended already, released or abandoned).
        """
        if not self._registry.end(self._token):
            return False
        held = _HELD.get()
        if self in held:
            _HELD.set(tuple(hold for hold in held if hold is not self))
        return True

    def __enter__(self) -> Hold:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    async def __aenter__(self) -> Hold:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __del__(self) -> None:
        if getattr(self, "_token", None):
            warnings.warn(
                "graceful_grpc Hold was never released; releasing it now",
                ResourceWarning,
                stacklevel=1,
            )
            self.release()

    def __repr__(self) -> str:
        return f"<Hold {'released' if self.released else 'active'}>"
