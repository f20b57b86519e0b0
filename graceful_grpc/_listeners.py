"""Listener lists for the public hooks (drains, rotations, shutdown steps)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from ._log import logger

__all__ = ("Listeners",)

T = TypeVar("T")


class Listeners(Generic[T]):
    """Callables told of each event of one kind; their exceptions are logged, never raised.

    Any exception short of ``KeyboardInterrupt`` and ``SystemExit``: a listener is a plain
    function, so a ``CancelledError`` (or ``GeneratorExit``) it raises is its own bug, not a
    cancellation of the drain, rotation or shutdown that told it; letting it through would
    cancel that instead.
    """

    __slots__ = ("_kind", "_listeners")

    def __init__(self, kind: str) -> None:
        """``kind`` names the listeners in errors and logs, e.g. ``"drain"``."""
        self._kind = kind
        self._listeners: list[Callable[[T], object]] = []

    def add(self, listener: Callable[[T], object]) -> None:
        """Raises TypeError if ``listener`` is not callable, ValueError if it (or one equal to
        it) is already added: it would be told of each event twice."""
        if not callable(listener):
            raise TypeError(f"{self._kind} listener must be callable, got {listener!r}")
        if listener in self._listeners:
            raise ValueError(f"{self._kind} listener {listener!r} is already added")
        self._listeners.append(listener)

    def remove(self, listener: Callable[[T], object]) -> None:
        """Raises ValueError if ``listener`` was not added."""
        try:
            self._listeners.remove(listener)
        except ValueError:
            raise ValueError(f"{self._kind} listener {listener!r} was not added") from None

    def notify(self, event: T) -> None:
        """Calls each listener with ``event``, in the order added."""
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:
                logger.exception("%s listener %r failed", self._kind, listener)
