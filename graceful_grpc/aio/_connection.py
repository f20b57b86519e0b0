"""The connection that a channel's handles share, and the one owner of its drain's state machine.

Every decision about the connection's state - admitting a call or a hold, counting calls started
and finished, deciding that the drain is over, aborting what is left at the deadline, abandoning
holds - is made here, in synchronous methods that run to completion on the event loop (hold
releases may come from other threads; they only ever count down). The I/O of closing - waiting for
the connection to go idle and closing the grpc channel - is separate, in ``_run_drain``, and the
grpc channel is closed even when the drain itself is cancelled.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

from grpc import aio

from .._counting import Counter
from .._zero_watch import ZeroWatch
from ..errors import ChannelClosedError, DrainTimeoutError
from ..report import CallInfo, CallKind, DrainReport
from ..state import ChannelState
from ._abortable import Abort, abort, aborted
from ._hold import Hold, is_held
from ._method_filter import MethodPredicate

__all__ = ("AdmitPolicy", "CallSite", "Connection", "Handle")

logger = logging.getLogger("graceful_grpc")

AdmitPolicy = Literal["held", "all", "none"]
ADMIT_POLICIES: tuple[AdmitPolicy, ...] = ("held", "all", "none")

_monotonic = time.monotonic


class CallSite(NamedTuple):
    """What a multicallable calls: recorded with each of its calls, for drain reports.

    Attributes:
        method: The full method name.
        kind: The call kind.
        cancel_on_drain: Calls are interrupted when the drain starts (``cancel_on_drain``).
    """

    method: str
    kind: CallKind
    cancel_on_drain: bool = False


class Handle:
    """One owner's handle on a connection: what a GracefulChannel and its multicallables share.

    Attributes:
        connection: The connection.
        closed: ``close()`` was called on this handle. An open handle implies an OPEN connection,
            so it is the only check on the hot path.
    """

    __slots__ = ("closed", "connection")

    def __init__(self, connection: Connection) -> None:
        connection.open_handle()
        self.connection = connection
        self.closed = False

    def close(self) -> bool:
        """Closes the handle (once); True if it was the connection's last open handle."""
        if self.closed:
            return False
        self.closed = True
        return self.connection.close_handle()


class Connection:
    """One grpc.aio channel shared by one or more handles.

    The connection is OPEN while any handle is open; closing the last handle starts the drain.

    Attributes:
        cancel_on_drain: Which methods' calls the drain interrupts as it starts, or None.
    """

    def __init__(
        self,
        raw: aio.Channel,
        *,
        drain_timeout: float,
        admit_during_drain: AdmitPolicy,
        cancel_on_drain: MethodPredicate | None = None,
    ) -> None:
        self.raw = raw
        self.cancel_on_drain = cancel_on_drain
        self.drain_timeout = drain_timeout
        self.admit_during_drain = admit_during_drain
        self.state = ChannelState.OPEN
        self.in_flight = Counter()
        self.holds = Counter()
        self.idle = ZeroWatch(self.in_flight, self.holds)
        self.drain_listeners: list[Callable[[DrainReport], object]] = []
        self._open_handles = 0
        # id(call) -> (weak reference, site, start time). Weak, as grpc.aio's own registry: a call
        # its owner dropped must stay collectable, so that grpc cancels it on collection.
        self._calls: dict[int, tuple[weakref.ref[Any], CallSite, float]] = {}
        # id(token) -> token of every unreleased hold (see Hold): the drain abandons through them.
        self._hold_tokens: dict[int, list[bool]] = {}
        self._drain: asyncio.Task[DrainReport] | None = None
        self._deadline: asyncio.Timeout | None = None  # the running drain's timeout
        self._deadline_at = 0.0  # loop time; only ever moved earlier
        self._grace = 0.0  # the grace that set _deadline_at, for messages
        self._started_while_draining = 0
        self._interrupted: list[CallInfo] = []
        self._draining: asyncio.Event | None = None  # created by the first wait_draining()

    # -- handles -------------------------------------------------------------------------------

    def open_handle(self) -> None:
        """Counts a new handle (``Handle`` calls this)."""
        if self.state is not ChannelState.OPEN:
            raise ChannelClosedError("graceful_grpc channel is closed or draining")
        self._open_handles += 1

    def close_handle(self) -> bool:
        """Counts a handle closed; True if it was the last one (the drain is to start)."""
        self._open_handles -= 1
        return self._open_handles == 0

    # -- admission and counting ----------------------------------------------------------------

    def admit(self, what: str) -> None:
        """Admits a call or hold from a closed handle or while draining, or raises.

        Args:
            what: ``"call"`` or ``"hold"``, for the error message.

        Raises:
            ChannelClosedError: per ``admit_during_drain``.
        """
        if self.state is ChannelState.CLOSED:
            raise ChannelClosedError(f"graceful_grpc channel is closed: no new {what}")
        policy = self.admit_during_drain
        if policy == "all" or (policy == "held" and is_held(self)):
            return
        raise ChannelClosedError(
            f"graceful_grpc channel is closed or draining and admits no new {what} "
            + ("from code that holds no hold" if policy == "held" else "at all")
        )

    def site(self, method: str, kind: CallKind) -> CallSite:
        """The CallSite of a new multicallable (its ``cancel_on_drain`` decided once, here)."""
        interrupt = self.cancel_on_drain is not None and bool(self.cancel_on_drain(method))
        return CallSite(method, kind, interrupt)

    def track(self, call: Any, site: CallSite) -> Any:
        """Counts ``call`` in flight until grpc reports it done; returns it unchanged."""
        self.in_flight.incr()
        self._calls[id(call)] = (weakref.ref(call), site, _monotonic())
        call.add_done_callback(self._call_done)
        return call

    def track_admitted(self, call: Any, site: CallSite) -> Any:
        """``track()`` for a call that passed ``admit()``: one the drain's report counts too.
        A cancel-on-drain call started while draining is interrupted at once."""
        draining = self.state is ChannelState.DRAINING
        if draining:
            self._started_while_draining += 1
        self.track(call, site)
        if draining and site.cancel_on_drain:
            self._interrupt(call, site, self._calls[id(call)][2])
        return call

    def mark_cancel_on_drain(self, call: Any) -> None:
        """Marks a call already started as cancel-on-drain (interrupted now if draining).

        Raises:
            ValueError: ``call`` was not started on this connection (a call that has ended
                already is accepted: there is nothing left to interrupt).
        """
        entry = self._calls.get(id(call))
        if entry is None or entry[0]() is not call:
            if call.done():
                return
            raise ValueError(f"{call!r} was not started on this graceful_grpc channel")
        reference, site, started = entry
        site = site._replace(cancel_on_drain=True)
        self._calls[id(call)] = (reference, site, started)
        if self.state is ChannelState.DRAINING:
            self._interrupt(call, site, started)

    def _call_done(self, call: Any) -> None:
        # grpc.aio hands done-callbacks the object it returned (intercepted calls included), also
        # when it cancels a collected call; an entry is removed before its id can be reused. The
        # pop makes the count exactly-once; it never raises inside grpc's callback.
        if self._calls.pop(id(call), None) is not None:
            self.in_flight.decr()

    def hold(self) -> Hold:
        """Takes a hold (admission already checked by the caller)."""
        token = [True]
        self.holds.incr()
        self._hold_tokens[id(token)] = token
        return Hold(self, token)

    def release_hold(self, token: list[bool]) -> None:
        """Counts a hold released (``Hold.release()`` calls this once, having ended it)."""
        self._hold_tokens.pop(id(token), None)
        self.holds.decr()

    # -- the drain -----------------------------------------------------------------------------

    def drain(self, grace: float) -> asyncio.Task[DrainReport]:
        """Starts the drain with deadline ``grace`` seconds from now, or brings a running drain's
        deadline forward to it (never back). Returns the drain's task."""
        loop = asyncio.get_running_loop()
        requested = loop.time() + grace
        if self._drain is None:
            # All of this happens now, not when the task first runs: from here on every new call
            # goes through admit() (and is counted there, never also in the starting count), and
            # a shorter grace asked for before the task runs is not lost.
            self.state = ChannelState.DRAINING
            self._deadline_at, self._grace = requested, grace
            logger.info(
                "graceful_grpc: draining channel: %d calls in flight, %d holds, deadline %.3fs",
                self.in_flight.value,
                self.holds.value,
                grace,
            )
            self._drain = loop.create_task(
                self._run_drain(_monotonic(), self.in_flight.value), name="graceful_grpc drain"
            )
            if self._draining is not None:
                self._draining.set()
            for reference, site, started in list(self._calls.values()):
                call = reference()
                if site.cancel_on_drain and call is not None:
                    self._interrupt(call, site, started)
        elif requested < self._deadline_at:
            self._deadline_at, self._grace = requested, grace
            if self._deadline is not None:
                self._deadline.reschedule(requested)
        return self._drain

    async def wait_draining(self) -> None:
        """Returns once the drain has started (at once if it has)."""
        if self.state is not ChannelState.OPEN:
            return
        if self._draining is None:
            self._draining = asyncio.Event()
        await self._draining.wait()

    def _interrupt(self, call: Any, site: CallSite, started: float) -> None:
        """Ends a cancel-on-drain call: its callers get ChannelClosedError, nothing timed out."""
        if call.done():
            return
        reason = Abort(
            functools.partial(
                ChannelClosedError,
                f"graceful_grpc channel is draining: call to {site.method} interrupted "
                "(cancel_on_drain)",
            )
        )
        if abort(call, reason):
            self._interrupted.append(CallInfo(site.method, site.kind, _monotonic() - started))

    @property
    def drain_task(self) -> asyncio.Task[DrainReport] | None:
        """The drain's task, once it has started."""
        return self._drain

    async def _run_drain(self, started: float, at_start: int) -> DrainReport:
        cancelled: tuple[CallInfo, ...] = ()
        abandoned = 0
        try:
            async with asyncio.timeout_at(self._deadline_at) as deadline:
                self._deadline = deadline
                await self.idle.wait()
                while not self._close_if_idle():  # held code started work as we woke up
                    await self.idle.wait()
        except TimeoutError:
            cancelled, abandoned = self._abort()
        except BaseException:  # the drain itself was cancelled: nothing may stay open
            self._abort()
            raise
        finally:
            self._deadline = None
            await asyncio.shield(self.raw.close(None))
        interrupted = tuple(self._interrupted)
        report = DrainReport(
            closed=True,
            drained=not cancelled and not abandoned,
            waited=_monotonic() - started,
            completed=at_start + self._started_while_draining - len(cancelled) - len(interrupted),
            cancelled=cancelled,
            abandoned_holds=abandoned,
            interrupted=interrupted,
        )
        logger.info("graceful_grpc: drain finished: %s", report.summary())
        _notify(self.drain_listeners, report)
        return report

    def _close_if_idle(self) -> bool:
        """CLOSED if nothing is in flight and no hold is out; whether it is."""
        if not self.idle.idle():
            return False
        self.state = ChannelState.CLOSED
        return True

    def _abort(self) -> tuple[tuple[CallInfo, ...], int]:
        """At the deadline: refuse new work, cancel what is in flight, abandon the holds."""
        self.state = ChannelState.CLOSED
        now = _monotonic()
        reason = Abort(
            functools.partial(
                DrainTimeoutError,
                f"graceful_grpc drain deadline of {self._grace:g}s passed; call cancelled",
            )
        )
        cancelled: list[CallInfo] = []
        for reference, site, started in list(self._calls.values()):
            call = reference()
            if call is None or call.done() or aborted(call):  # ended, or interrupted already
                continue
            if abort(call, reason):
                cancelled.append(CallInfo(site.method, site.kind, now - started))
        _log_cancelled(cancelled)
        abandoned = 0
        for token in list(self._hold_tokens.values()):
            try:
                token.pop()  # a release racing on another thread pops it, or we do: never both
            except IndexError:
                continue
            self._hold_tokens.pop(id(token), None)
            self.holds.decr()
            abandoned += 1
        if abandoned:
            logger.warning("graceful_grpc: drain deadline passed, abandoned %d holds", abandoned)
        self.idle.notify()
        return tuple(cancelled), abandoned


def _notify(listeners: list[Callable[[DrainReport], object]], report: DrainReport) -> None:
    """Calls each drain listener; a listener's exception is logged, never raised into close()."""
    for listener in tuple(listeners):
        try:
            listener(report)
        except Exception:
            logger.exception("graceful_grpc: drain listener %r failed", listener)


def _log_cancelled(cancelled: list[CallInfo]) -> None:
    """One WARNING per method (not per call: a mass abort must not flood the log)."""
    by_method: dict[tuple[str, str], list[float]] = {}
    for info in cancelled:
        by_method.setdefault((info.kind, info.method), []).append(info.age)
    for (kind, method), ages in by_method.items():
        logger.warning(
            "graceful_grpc: drain deadline passed, cancelled %d %s call(s) of %s "
            "(in flight up to %.3fs)",
            len(ages),
            kind,
            method,
            max(ages),
        )
