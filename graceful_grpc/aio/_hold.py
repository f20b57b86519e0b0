"""Holds: leases that keep a connection open for a unit of work, and the "held" context."""

from __future__ import annotations

import contextvars
import warnings
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._connection import Connection

__all__ = ("Hold", "is_held")

# The holds taken in this context and the tasks created from it. A tuple, so that copying a context
# into a new task shares nothing mutable; released holds are skipped when read.
_HELD: contextvars.ContextVar[tuple[Hold, ...]] = contextvars.ContextVar(
    "graceful_grpc_held", default=()
)


class _HoldOwner(Protocol):
    def release_hold(self) -> None: ...


def is_held(connection: Connection) -> bool:
    """Whether the running code is inside an unreleased hold on ``connection``."""
    return any(hold._owner is connection and not hold._released for hold in _HELD.get())


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

    __slots__ = ("_owner", "_released")

    def __init__(self, owner: Connection) -> None:
        self._owner: _HoldOwner = owner
        self._released = False
        held = _HELD.get()
        _HELD.set((*(hold for hold in held if not hold._released), self))

    @property
    def released(self) -> bool:
        """Whether ``release()`` has been called."""
        return self._released

    def release(self) -> None:
        """Ends the hold. Idempotent; safe from any task or thread."""
        if self._released:
            return
        self._released = True
        held = _HELD.get()
        if self in held:
            _HELD.set(tuple(hold for hold in held if hold is not self))
        self._owner.release_hold()

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
        if not getattr(self, "_released", True):
            warnings.warn(
                "graceful_grpc Hold was never released; releasing it now",
                ResourceWarning,
                stacklevel=1,
            )
            self.release()

    def __repr__(self) -> str:
        return f"<Hold {'released' if self._released else 'active'}>"
