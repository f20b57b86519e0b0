"""The connection that a channel's handles share, and the one owner of its state machine.

Every decision about the connection's state - admitting a call or a hold, counting calls started
and finished, moving new calls to a new grpc channel (rotation), deciding that a drain is over,
interrupting cancel-on-drain calls, aborting what is left at a deadline, abandoning holds - is made
here, in synchronous methods that run to completion on the event loop (hold releases may come from
other threads; they only ever count down). The I/O - waiting for calls to end and closing grpc
channels - is separate, in ``_run_drain`` and ``_retire``, and a grpc channel is closed even when
its drain is cancelled.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from grpc import aio

from .._counting import Counter
from .._listeners import Listeners
from .._zero_watch import ZeroWatch
from ..errors import ChannelClosedError, DrainTimeoutError
from ..report import CallInfo, CallKind, DrainReport
from ..state import ChannelState
from ._abortable import Abort
from ._hold import Hold, is_held
from ._link import CallSite, Link, LiveCall
from ._method_filter import MethodPredicate

__all__ = ("AdmitPolicy", "CallSite", "Connection", "Handle")

logger = logging.getLogger("graceful_grpc")

AdmitPolicy = Literal["held", "all", "none"]
ADMIT_POLICIES: tuple[AdmitPolicy, ...] = ("held", "all", "none")

ChannelFactory = Callable[[], aio.Channel]

_monotonic = time.monotonic


def _every(site: CallSite) -> bool:
    return True


def _cancel_on_drain(site: CallSite) -> bool:
    return site.cancel_on_drain


def _interrupted(why: str) -> Abort:
    return Abort(
        functools.partial(
            ChannelClosedError, f"graceful_grpc channel is draining ({why}): call interrupted"
        )
    )


def _deadline_passed(grace: float) -> Abort:
    return Abort(
        functools.partial(
            DrainTimeoutError, f"graceful_grpc drain deadline of {grace:g}s passed; call cancelled"
        )
    )


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


@dataclass(slots=True)
class _Retirement:
    """An old link draining after a rotation."""

    task: asyncio.Task[DrainReport] | None
    deadline_at: float  # loop time; only ever moved earlier
    timeout: asyncio.Timeout | None = None


class Connection:
    """The logical channel: one current grpc channel (link), the old ones still draining after
    rotations, the holds, and the state machine OPEN -> DRAINING -> CLOSED.

    The connection is OPEN while any handle is open; closing the last handle starts the drain of
    every link under one deadline.

    Attributes:
        current: The link new calls go to.
        cancel_on_drain: Which methods' calls a drain interrupts as it starts, or None.
        factory: Builds the grpc channel of a rotation, or None.
        rotations: Rotations so far.
    """

    def __init__(
        self,
        raw: aio.Channel,
        *,
        drain_timeout: float,
        admit_during_drain: AdmitPolicy,
        cancel_on_drain: MethodPredicate | None = None,
        factory: ChannelFactory | None = None,
        max_age: float | None = None,
        max_age_jitter: float = 0.0,
    ) -> None:
        self.drain_timeout = drain_timeout
        self.admit_during_drain = admit_during_drain
        self.cancel_on_drain = cancel_on_drain
        self.factory = factory
        self.state = ChannelState.OPEN
        self.in_flight = Counter()  # calls on every link
        self.holds = Counter()
        self.idle = ZeroWatch(self.in_flight, self.holds)
        self.current = Link(raw, self.in_flight)
        self.rotations = 0
        self.drain_listeners: Listeners[DrainReport] = Listeners("drain")
        self.rotation_listeners: Listeners[int] = Listeners("rotation")
        self._retiring: dict[Link, _Retirement] = {}
        self._open_handles = 0
        # id(token) -> token of every unreleased hold (see Hold): the drain abandons through them.
        self._hold_tokens: dict[int, list[bool]] = {}
        # Holds may be taken on other threads: taking one and deciding CLOSED exclude each other.
        self._hold_lock = threading.Lock()
        self._drain: asyncio.Task[DrainReport] | None = None
        self._deadline: asyncio.Timeout | None = None  # the running drain's timeout
        self._deadline_at = 0.0  # loop time; only ever moved earlier
        self._grace = 0.0  # the grace that set _deadline_at, for messages
        self._started_while_draining = 0
        self._draining: asyncio.Event | None = None  # created by the first wait_draining()
        self._max_age = max_age
        self._max_age_jitter = max_age_jitter
        self._random = random.Random()
        self._age_timer: asyncio.TimerHandle | None = None
        if max_age is not None:
            self._schedule_age_rotation(_loop_of(raw))

    @property
    def raw(self) -> aio.Channel:
        """The current grpc channel."""
        return self.current.raw

    @property
    def connections(self) -> int:
        """grpc channels open: the current one (until the drain closes it) and old ones draining."""
        return len(self._retiring) + (self.state is not ChannelState.CLOSED)

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

    def track_admitted(self, call: Any, site: CallSite) -> Any:
        """Tracks, on the current link, a call that passed ``admit()``: one the drain's report
        counts too. A cancel-on-drain call started while draining is interrupted at once."""
        draining = self.state is ChannelState.DRAINING
        if draining:
            self._started_while_draining += 1
        link = self.current
        link.track(call, site)
        if draining and site.cancel_on_drain:
            live = LiveCall(call, site, _monotonic())
            link.end(live, _interrupted("closing"), link.interrupted)
        return call

    def mark_cancel_on_drain(self, call: Any) -> None:
        """Marks a call already started as cancel-on-drain; interrupted now if its link drains.

        Raises:
            TypeError: ``call`` is not a grpc.aio call.
            ValueError: ``call`` was not started on this connection (a call that has ended
                already is accepted: there is nothing left to interrupt).
        """
        if not isinstance(call, aio.Call):
            raise TypeError(f"cancel_on_drain() takes a grpc.aio call, got {call!r}")
        for link in (self.current, *self._retiring):
            live = link.find(call)
            if live is None:
                continue
            site = live.site._replace(cancel_on_drain=True)
            link.resite(call, site)
            if link in self._retiring or self.state is not ChannelState.OPEN:
                link.end(live._replace(site=site), _interrupted("marked"), link.interrupted)
            return
        if not call.done():
            raise ValueError(f"{call!r} was not started on this graceful_grpc channel")

    def hold(self) -> Hold:
        """Takes a hold (admission already checked by the caller). Safe from any thread.

        Raises:
            ChannelClosedError: the connection is CLOSED (a thread can race the close).
        """
        token = [True]
        with self._hold_lock:  # against the drain deciding CLOSED on the loop meanwhile
            if self.state is ChannelState.CLOSED:
                raise ChannelClosedError("graceful_grpc channel is closed: no new hold")
            self.holds.incr()
            self._hold_tokens[id(token)] = token
        return Hold(self, token)

    def release_hold(self, token: list[bool]) -> None:
        """Counts a hold released (``Hold.release()`` calls this once, having ended it)."""
        self._hold_tokens.pop(id(token), None)
        self.holds.decr()

    # -- rotation ------------------------------------------------------------------------------

    def new_raw(self) -> aio.Channel:
        """A new grpc channel from the factory.

        Raises:
            TypeError: there is no factory.
        """
        if self.factory is None:
            raise TypeError(
                "rotate() needs new_channel: this channel was made with wrap() without a factory"
            )
        return self.factory()

    def check_rotatable(self) -> None:
        """Raises ChannelClosedError unless the connection is OPEN."""
        if self.state is not ChannelState.OPEN:
            raise ChannelClosedError(
                f"cannot rotate a {self.state.value} graceful_grpc channel: it accepts no new "
                "connection"
            )

    def rotate(self, raw: aio.Channel, grace: float) -> asyncio.Task[DrainReport]:
        """From now on new calls go to ``raw``; the old link drains on its own, for at most
        ``grace`` seconds. Returns the old link's drain.

        Raises:
            ChannelClosedError: the connection is DRAINING or CLOSED.
            ValueError: ``raw`` is the current grpc channel or an old one still draining.
        """
        self.check_rotatable()
        if any(raw is link.raw for link in (self.current, *self._retiring)):
            raise ValueError(
                "cannot rotate onto a grpc channel this graceful channel already uses: "
                "a rotation needs a new one"
            )
        loop = asyncio.get_running_loop()
        old = self.current
        self.current = Link(raw, self.in_flight)
        self.rotations += 1
        at_start = len(old)
        retirement = _Retirement(None, loop.time() + grace)
        self._retiring[old] = retirement
        old.end_all(_interrupted("rotated"), old.interrupted, _cancel_on_drain)
        retirement.task = loop.create_task(
            self._retire(old, retirement, grace, at_start), name="graceful_grpc rotation drain"
        )
        logger.info(
            "graceful_grpc: rotated to a new connection (%d); %d calls drain on the old one, "
            "deadline %.3fs",
            self.rotations,
            at_start,
            grace,
        )
        self.rotation_listeners.notify(self.rotations)
        return retirement.task

    async def _retire(
        self, link: Link, retirement: _Retirement, grace: float, at_start: int
    ) -> DrainReport:
        started = _monotonic()
        try:
            async with asyncio.timeout_at(retirement.deadline_at) as timeout:
                retirement.timeout = timeout
                await link.wait_empty()
        except TimeoutError:
            link.end_all(_deadline_passed(grace), link.cancelled, _every)
            _log_cancelled(link.cancelled)
        except BaseException:  # the drain itself was cancelled: nothing may stay open
            link.end_all(_deadline_passed(grace), link.cancelled, _every)
            raise
        finally:
            retirement.timeout = None
            try:
                await asyncio.shield(link.raw.close(None))
            finally:
                del self._retiring[link]
        cancelled, interrupted = tuple(link.cancelled), tuple(link.interrupted)
        report = DrainReport(
            closed=True,
            drained=not cancelled,
            waited=_monotonic() - started,
            completed=at_start - len(cancelled) - len(interrupted),
            cancelled=cancelled,
            abandoned_holds=0,
            interrupted=interrupted,
        )
        logger.info("graceful_grpc: old connection drained: %s", report.summary())
        self.drain_listeners.notify(report)
        return report

    def _schedule_age_rotation(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._max_age is not None
        jitter = self._random.uniform(-self._max_age_jitter, self._max_age_jitter)
        # The timer holds the connection weakly: a channel dropped without close() is collected
        # (as grpc.aio's own), and its timer then does nothing.
        self._age_timer = loop.call_later(
            self._max_age * (1 + jitter), _age_rotation_due, weakref.ref(self)
        )

    def age_rotation_due(self) -> None:
        """The ``max_age`` timer fired: rotate (if OPEN) and schedule the next one."""
        self._age_timer = None
        if self.state is not ChannelState.OPEN:
            return
        loop = asyncio.get_running_loop()
        try:
            self.rotate(self.new_raw(), self.drain_timeout).add_done_callback(_retrieve)
        except Exception:
            logger.exception("graceful_grpc: max_age rotation failed; the old connection stays")
        self._schedule_age_rotation(loop)

    # -- the drain -----------------------------------------------------------------------------

    def drain(self, grace: float) -> asyncio.Task[DrainReport]:
        """Starts the drain of every link with deadline ``grace`` seconds from now, or brings a
        running drain's deadline forward to it (never back). Returns the drain's task."""
        loop = asyncio.get_running_loop()
        requested = loop.time() + grace
        if self._drain is None:
            # All of this happens now, not when the task first runs: from here on every new call
            # goes through admit() (and is counted there, never also in the starting count), and
            # a shorter grace asked for before the task runs is not lost.
            self.state = ChannelState.DRAINING
            self._deadline_at, self._grace = requested, grace
            if self._age_timer is not None:
                self._age_timer.cancel()
                self._age_timer = None
            logger.info(
                "graceful_grpc: draining channel: %d calls in flight, %d holds, deadline %.3fs",
                self.in_flight.value,
                self.holds.value,
                grace,
            )
            links = (self.current, *self._retiring)
            counted = {
                link: (len(link), len(link.cancelled), len(link.interrupted)) for link in links
            }
            self._drain = loop.create_task(
                self._run_drain(_monotonic(), self.current, counted),
                name="graceful_grpc drain",
            )
            if self._draining is not None:
                self._draining.set()
            for link in links:
                link.end_all(_interrupted("closing"), link.interrupted, _cancel_on_drain)
        elif requested < self._deadline_at:
            self._deadline_at, self._grace = requested, grace
            if self._deadline is not None:
                self._deadline.reschedule(requested)
        self._bring_retirements_forward(self._deadline_at)
        return self._drain

    def _bring_retirements_forward(self, when: float) -> None:
        for retirement in self._retiring.values():
            if when < retirement.deadline_at:
                retirement.deadline_at = when
                if retirement.timeout is not None:
                    retirement.timeout.reschedule(when)

    async def wait_draining(self) -> None:
        """Returns once the drain has started (at once if it has)."""
        if self.state is not ChannelState.OPEN:
            return
        if self._draining is None:
            self._draining = asyncio.Event()
        await self._draining.wait()

    @property
    def drain_task(self) -> asyncio.Task[DrainReport] | None:
        """The drain's task, once it has started."""
        return self._drain

    async def _run_drain(
        self, started: float, current: Link, counted: dict[Link, tuple[int, int, int]]
    ) -> DrainReport:
        abandoned = 0
        try:
            async with asyncio.timeout_at(self._deadline_at) as deadline:
                self._deadline = deadline
                await self.idle.wait()
                while not self._close_if_idle():  # held code started work as we woke up
                    await self.idle.wait()
        except TimeoutError:
            abandoned = self._abort()
        except BaseException:  # the drain itself was cancelled: nothing may stay open
            self._abort()
            raise
        finally:
            self._deadline = None
            retiring = [r.task for r in self._retiring.values() if r.task is not None]
            await asyncio.shield(self.current.raw.close(None))
            await asyncio.shield(asyncio.gather(*retiring, return_exceptions=True))
        waited = _monotonic() - started

        def report_of(links: list[Link], started_while_draining: int) -> DrainReport:
            cancelled = tuple(i for link in links for i in link.cancelled[counted[link][1] :])
            interrupted = tuple(i for link in links for i in link.interrupted[counted[link][2] :])
            at_start = sum(counted[link][0] for link in links) + started_while_draining
            return DrainReport(
                closed=True,
                drained=not cancelled and not abandoned,
                waited=waited,
                completed=at_start - len(cancelled) - len(interrupted),
                cancelled=cancelled,
                abandoned_holds=abandoned,
                interrupted=interrupted,
            )

        report = report_of(list(counted), self._started_while_draining)
        logger.info("graceful_grpc: drain finished: %s", report.summary())
        # Listeners hear of each grpc connection's drain once: old ones at their rotation's end.
        own = report if len(counted) == 1 else report_of([current], self._started_while_draining)
        self.drain_listeners.notify(own)
        return report

    def _close_if_idle(self) -> bool:
        """CLOSED if nothing is in flight and no hold is out; whether it is."""
        with self._hold_lock:
            if not self.idle.idle():
                return False
            self.state = ChannelState.CLOSED
            return True

    def _abort(self) -> int:
        """At the deadline: refuse new work, cancel what is in flight on every link, abandon the
        holds. Returns how many holds were abandoned."""
        with self._hold_lock:
            self.state = ChannelState.CLOSED
            tokens = list(self._hold_tokens.values())
        reason = _deadline_passed(self._grace)
        cancelled: list[CallInfo] = []
        for link in (self.current, *self._retiring):
            before = len(link.cancelled)
            link.end_all(reason, link.cancelled, _every)
            cancelled += link.cancelled[before:]
        _log_cancelled(cancelled)
        abandoned = 0
        for token in tokens:
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
        return abandoned


def _loop_of(raw: aio.Channel) -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        loop = getattr(raw, "_loop", None)  # grpc.aio channels keep the loop they were made on
        if not isinstance(loop, asyncio.AbstractEventLoop):
            raise RuntimeError("max_age needs an event loop: create the channel in one") from None
        return loop


def _age_rotation_due(connection: weakref.ref[Connection]) -> None:
    alive = connection()
    if alive is not None:
        alive.age_rotation_due()


def _retrieve(task: asyncio.Task[DrainReport]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a failed background drain was logged where it failed


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
