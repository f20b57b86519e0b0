"""The connection that a channel's handles share: admission, call tracking, and the drain."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

from grpc import aio

from .._counting import Counter
from .._zero_watch import ZeroWatch
from ..errors import ChannelClosedError
from ..report import CallInfo, CallKind, DrainReport
from ..state import ChannelState
from ._abortable import mark_aborted
from ._hold import Hold, is_held

__all__ = ("AdmitPolicy", "CallSite", "Connection")

logger = logging.getLogger("graceful_grpc")

AdmitPolicy = Literal["held", "all", "none"]
ADMIT_POLICIES: tuple[AdmitPolicy, ...] = ("held", "all", "none")

_monotonic = time.monotonic


class CallSite(NamedTuple):
    """What a multicallable calls: recorded with each of its calls, for drain reports."""

    method: str
    kind: CallKind


class Connection:
    """One grpc.aio channel shared by one or more GracefulChannel handles.

    The connection is OPEN while any handle is open; closing the last handle starts the drain.
    """

    def __init__(
        self, raw: aio.Channel, *, drain_timeout: float, admit_during_drain: AdmitPolicy
    ) -> None:
        self.raw = raw
        self.drain_timeout = drain_timeout
        self.admit_during_drain = admit_during_drain
        self.state = ChannelState.OPEN
        self.open_handles = 0
        self.in_flight = Counter()
        self.holds = Counter()
        # id(call) -> (weak reference, site, start time). Weak, as grpc.aio's own registry: a call
        # its owner dropped must stay collectable, so that grpc cancels it on collection.
        self._calls: dict[int, tuple[weakref.ref[Any], CallSite, float]] = {}
        self.idle = ZeroWatch(self.in_flight, self.holds)
        self._drain: asyncio.Task[DrainReport] | None = None
        self._deadline: asyncio.Timeout | None = None  # the running drain's timeout
        self._deadline_at = 0.0  # loop time; only ever moved earlier
        self._grace = 0.0  # the grace that set _deadline_at, for messages
        self._admitted_while_draining = 0
        self.drain_listeners: list[Callable[[DrainReport], object]] = []

    # -- admission ---------------------------------------------------------------------------

    def admit(self) -> None:
        """Admits a call or hold from a closed handle or while draining, or raises.

        Raises:
            ChannelClosedError: per ``admit_during_drain``.
        """
        if self.state is ChannelState.CLOSED:
            raise ChannelClosedError("graceful_grpc channel is closed")
        policy = self.admit_during_drain
        if policy == "all" or (policy == "held" and is_held(self)):
            if self.state is ChannelState.DRAINING:
                self._admitted_while_draining += 1
            return
        raise ChannelClosedError(
            "graceful_grpc channel is closed or draining and admits no new work "
            + ("from code that holds no hold" if policy == "held" else "at all")
        )

    def track(self, call: Any, site: CallSite) -> Any:
        """Counts ``call`` in flight until grpc reports it done; returns it unchanged."""
        self.in_flight.incr()
        self._calls[id(call)] = (weakref.ref(call), site, _monotonic())
        call.add_done_callback(self._call_done)
        return call

    def _call_done(self, call: Any) -> None:
        # grpc.aio hands done-callbacks the object it returned (intercepted calls included), also
        # when it cancels a collected call; an entry is removed before its id can be reused.
        # pop() rather than del, so an unusual call type can never raise inside grpc's callback.
        self._calls.pop(id(call), None)
        self.in_flight.decr()

    def hold(self) -> Hold:
        """Takes a hold (admission already checked by the caller)."""
        self.holds.incr()
        return Hold(self)

    def release_hold(self) -> None:
        """Called by ``Hold.release()``. Holds abandoned at the deadline are no longer counted."""
        if self.state is not ChannelState.CLOSED:
            self.holds.decr()

    # -- closing -------------------------------------------------------------------------------

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
        elif requested < self._deadline_at:
            self._deadline_at, self._grace = requested, grace
            if self._deadline is not None:
                self._deadline.reschedule(requested)
        return self._drain

    async def _run_drain(self, started: float, at_start: int) -> DrainReport:
        cancelled: tuple[CallInfo, ...] = ()
        abandoned = 0
        try:
            async with asyncio.timeout_at(self._deadline_at) as deadline:
                self._deadline = deadline
                await self.idle.wait()
        except TimeoutError:
            cancelled, abandoned = self._abort(self._grace)
        finally:
            self._deadline = None
            self.state = ChannelState.CLOSED
            await self.raw.close(None)
        report = DrainReport(
            closed=True,
            drained=not cancelled and not abandoned,
            waited=_monotonic() - started,
            completed=at_start + self._admitted_while_draining - len(cancelled),
            cancelled=cancelled,
            abandoned_holds=abandoned,
        )
        logger.info("graceful_grpc: drain finished: %s", report.summary())
        _notify(self.drain_listeners, report)
        return report

    def _abort(self, grace: float) -> tuple[tuple[CallInfo, ...], int]:
        """At the deadline: refuse new work, cancel what is in flight, abandon the holds."""
        self.state = ChannelState.CLOSED
        now = _monotonic()
        details = f"graceful_grpc drain deadline of {grace:g}s passed; call cancelled"
        cancelled: list[CallInfo] = []
        for reference, site, started in list(self._calls.values()):
            call = reference()
            if call is None or call.done():
                continue
            mark_aborted(call, details)
            if call.cancel():
                cancelled.append(CallInfo(site.method, site.kind, now - started))
        _log_cancelled(cancelled)
        abandoned = self.holds.value
        if abandoned:
            logger.warning("graceful_grpc: drain deadline passed, abandoned %d holds", abandoned)
        self.holds.on_zero = None
        for _ in range(abandoned):
            self.holds.decr()
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
