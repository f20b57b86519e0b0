"""Holds: leases that keep a connection open for a unit of work, and the "held" context."""

from __future__ import annotations

import contextvars
import warnings
from types import TracebackType
from typing import Protocol

__all__ = ("Hold", "HoldOwner", "is_held")

# The holds taken in this context and the tasks created from it. A tuple, so that copying a context
# into a new task shares nothing mutable; released holds are skipped when read.
_HELD: contextvars.ContextVar[tuple[Hold, ...]] = contextvars.ContextVar(
    "graceful_grpc_held", default=()
)


class HoldOwner(Protocol):
    """What a hold tells when it is released: the connection that counts it."""

    def release_hold(self, token: list[bool]) -> None:
        """Counts the hold with ``token`` as released (called once, by its release)."""


def is_held(owner: HoldOwner) -> bool:
    """Whether the running code is inside an unreleased hold on ``owner``."""
    return any(hold._owner is owner and hold._token for hold in _HELD.get())


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

    __slots__ = ("__weakref__", "_owner", "_token")

    def __init__(self, owner: HoldOwner, token: list[bool]) -> None:
        """Used by the connection. ``token`` holds one item while the hold is unreleased; whoever
        pops it (``release()``, or the connection abandoning the hold at the drain deadline) ends
        the hold, exactly once even when threads race, since ``list.pop`` is atomic."""
        self._owner = owner
        self._token = token
        held = _HELD.get()
        _HELD.set((*(hold for hold in held if hold._token), self))

    @property
    def released(self) -> bool:
        """Whether the hold has ended: released, or abandoned at the drain deadline."""
        return not self._token

    def release(self) -> None:
        """Ends the hold. Idempotent; safe from any task or thread."""
        try:
            self._token.pop()
        except IndexError:  # already released, or abandoned by the drain
            return
        held = _HELD.get()
        if self in held:
            _HELD.set(tuple(hold for hold in held if hold is not self))
        self._owner.release_hold(self._token)

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
