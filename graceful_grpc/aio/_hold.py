"""Holds: leases that keep a channel open for a unit of work, the one registry that owns them, and
the "held" context.

A hold ends exactly once, released by its owner, abandoned at the drain deadline, or released as it
is garbage-collected, whichever comes first even on different threads: ending it is popping its
one-item token, which is atomic, and only the registry does that.

Nothing but its owner keeps a hold alive: the "held" context and the registry refer to it weakly.
So a hold its owner dropped without releasing it is collected (at once, by reference counting,
unless it is in a reference cycle), which releases it - a drain waiting for it stops waiting - and
warns (``ResourceWarning``, shown with ``-W default`` or ``-X dev``) with the file and line where it
was taken, as Python reports a coroutine never awaited.

Every hold records the line that took it: its caller's file and line, which costs little (with
it, a ``hold()`` and its ``release()`` take about 8% more instructions: 21.0k instead of 19.4k,
callgrind). The whole stack as well only in debug mode, as it costs eight times that (157k): when
the channel is made on a loop in asyncio's debug mode (``asyncio.run(..., debug=True)``,
``PYTHONASYNCIODEBUG=1``, ``-X dev``), or with ``GRACEFUL_GRPC_DEBUG_HOLDS=1`` in the environment
(read at import). The stack is then in the warning and in the drain's log of abandoned holds.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import traceback
import warnings
import weakref
from collections.abc import Callable
from types import FrameType, TracebackType

from .._counting import Counter
from ..errors import ChannelClosedError

__all__ = ("DEBUG_HOLDS_VARIABLE", "Hold", "HoldRegistry", "is_held")

DEBUG_HOLDS_VARIABLE = "GRACEFUL_GRPC_DEBUG_HOLDS"
"""Set to a value other than ``0`` to record the whole stack where each hold is taken."""

_DEBUG_HOLDS = os.environ.get(DEBUG_HOLDS_VARIABLE, "") not in ("", "0")

# Weak references to the holds taken in this context and the tasks created from it. A tuple, so
# that copying a context into a new task shares nothing mutable; ended holds are skipped when read.
_HELD: contextvars.ContextVar[tuple[weakref.ref[Hold], ...]] = contextvars.ContextVar(
    "graceful_grpc_held", default=()
)


def is_held(registry: HoldRegistry) -> bool:
    """Whether the running code is inside an unreleased hold of ``registry``."""
    for reference in _HELD.get():
        hold = reference()
        if hold is not None and hold._registry is registry and hold._token:
            return True
    return False


def _debugging() -> bool:
    """Whether holds taken now record their stack (read once per channel: ``HoldRegistry``)."""
    if _DEBUG_HOLDS:
        return True
    try:
        return asyncio.get_running_loop().get_debug()
    except RuntimeError:  # no loop in this thread
        return False


class HoldRegistry:
    """The holds of one channel: their count, the token of each unreleased one, and closing.

    Holds may be taken and released on any thread, so taking one and closing (refusing new holds)
    exclude each other under the registry's lock; a release only ever counts down.

    Attributes:
        count: Holds outstanding (taken and not yet ended).
        debug: Its holds record the stack where they are taken: ``GRACEFUL_GRPC_DEBUG_HOLDS``, or
            asyncio's debug mode on the loop running as the registry was made.
    """

    __slots__ = ("_closed", "_lock", "_tokens", "count", "debug")

    def __init__(self) -> None:
        self.count = Counter()
        self.debug = _debugging()
        # id(token) -> the token and its hold (weakly) of every hold not yet ended
        self._tokens: dict[int, tuple[list[bool], weakref.ref[Hold]]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def take(self, caller: FrameType) -> Hold:
        """Takes a hold (admission is the caller's decision) for code running in ``caller``'s
        frame, which it records as where the hold was taken. Safe from any thread.

        Raises:
            ChannelClosedError: the registry is closed (a thread can race the close).
        """
        token = [True]
        with self._lock:
            if self._closed:
                raise ChannelClosedError("graceful_grpc channel is closed: no new hold", "closed")
            hold = Hold(self, token, caller)
            self.count.incr()
            self._tokens[id(token)] = (token, weakref.ref(hold))
        return hold

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

    def close_and_abandon(self) -> list[str]:
        """Closes the registry and ends every hold still out; returns where each one it ended was
        taken (``Hold.taken_at``; in debug mode with the stack)."""
        with self._lock:
            self._closed = True
            entries = list(self._tokens.values())
        abandoned = []
        for token, reference in entries:
            if self.end(token):
                hold = reference()
                abandoned.append("an unknown place" if hold is None else hold._describe())
        return abandoned


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

    Keep a reference while the work runs: nothing else keeps a hold alive, and one that is
    garbage-collected before it is released is released then, with a ``ResourceWarning`` naming
    the line that took it.
    """

    __slots__ = ("__weakref__", "_file", "_line", "_module", "_registry", "_stack", "_token")

    def __init__(self, registry: HoldRegistry, token: list[bool], caller: FrameType) -> None:
        """Used by the registry; ``token`` holds one item while the hold is unreleased;
        ``caller`` is the frame of the code taking it (read here, not kept)."""
        self._registry = registry
        self._file = caller.f_code.co_filename
        self._line = caller.f_lineno
        self._module: str | None = caller.f_globals.get("__name__")
        self._stack = (
            traceback.StackSummary.extract(traceback.walk_stack(caller), lookup_lines=False)
            if registry.debug
            else None
        )
        self._token = token  # last: a hold whose __init__ failed has none, and __del__ skips it
        held = _HELD.get()
        _HELD.set((*_live(held), weakref.ref(self)) if held else (weakref.ref(self),))

    @property
    def taken_at(self) -> str:
        """Where the hold was taken: ``"file:line"`` of the code that called ``hold()``."""
        return f"{self._file}:{self._line}"

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
        if held:
            for reference in held:
                if reference() is self:
                    _HELD.set(_live(held))
                    break
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
        token = getattr(self, "_token", None)  # none: never fully made
        # Ended first, so that a drain waiting for it stops waiting; no warning if it had ended
        # (abandoned at the deadline, perhaps just now on another thread).
        if not token or not self._registry.end(token):
            return
        warnings.warn_explicit(
            "graceful_grpc Hold taken here was never released: released as it was "
            "garbage-collected (release it, or take it with `with channel.hold():`)"
            + self._stack_text(),
            ResourceWarning,
            self._file,
            self._line,
            module=self._module,
            source=self,
        )

    def _describe(self) -> str:
        """Where it was taken, for the drain's log: ``taken_at``, with the stack in debug mode."""
        return self.taken_at + self._stack_text()

    def _stack_text(self) -> str:
        if self._stack is None:
            return ""
        lines = "".join(traceback.format_list(self._stack[::-1]))  # walked from the caller out
        return f"\nHold taken at (most recent call last):\n{lines.rstrip()}"

    def __repr__(self) -> str:
        state = "released" if self.released else "active"
        return f"<Hold {state}, taken at {self.taken_at}>"


def _live(held: tuple[weakref.ref[Hold], ...]) -> tuple[weakref.ref[Hold], ...]:
    """``held`` without the holds that have ended (released, abandoned or collected)."""
    live = []
    for reference in held:
        hold = reference()
        if hold is not None and hold._token:
            live.append(reference)
    return tuple(live)
