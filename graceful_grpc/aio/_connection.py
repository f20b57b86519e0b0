"""The state all handles of a graceful channel share, and the one owner of every decision on it.

Admitting a call or a hold (from a closed handle, or while draining), whether a handle's close
starts the drain, rotation, interrupting cancel-on-drain calls, deciding a drain is over, aborting
what is left at a deadline, abandoning holds: each is decided here, in synchronous methods that run
to completion on the event loop. Holds are owned by the ``HoldRegistry`` (``_hold``), which may be
used from other threads. The waiting and the closing of grpc channels is one routine for rotation
and close (``_run_drain``), whose last part - closing the grpc channel and reporting - is shielded,
so a grpc channel is closed and every awaiter gets the report even when the drain is cancelled.
"""

from __future__ import annotations

import asyncio
import collections
import time
import weakref
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from grpc import aio

from .._counting import Counter
from .._listeners import Listeners
from .._log import logger
from .._zero_watch import ZeroWatch
from ..errors import ChannelClosedError
from ..state import ChannelState
from ._drain import Drain, interrupted, is_cancel_on_drain
from ._hold import Hold, HoldRegistry, is_held
from ._link import CallSite, Link, LiveCall, site_of
from ._options import ChannelOptions

__all__ = ("CallSite", "Connection", "Handle")

if TYPE_CHECKING:
    import random

    from ..report import CallKind, DrainReport

ChannelFactory = Callable[[], aio.Channel]

_monotonic = time.monotonic


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


class Connection:
    """The shared state of a channel's handles: the current grpc channel (link), old links still
    draining after rotations, the holds, and the state machine OPEN -> DRAINING -> CLOSED.

    The channel is OPEN while any handle is open; closing the last handle starts the drain of
    every link under one deadline.

    Attributes:
        options: The channel's options.
        current: The link new calls go to.
        factory: Builds the grpc channel of a rotation, or None.
        rotations: Rotations so far.
        state: The channel's state.
    """

    def __init__(
        self, raw: aio.Channel, options: ChannelOptions, factory: ChannelFactory | None
    ) -> None:
        self.options = options
        self.factory = factory
        self.state = ChannelState.OPEN
        self.holds = HoldRegistry()
        self.in_flight = Counter()  # calls on every link
        self.current = Link(raw, self.in_flight)
        self.idle = ZeroWatch(self.in_flight, self.holds.count)
        self.rotations = 0
        self.drain_listeners: Listeners[DrainReport] = Listeners("drain")
        self.rotation_listeners: Listeners[int] = Listeners("rotation")
        self._retiring: dict[Link, Drain] = {}
        self._open_handles = 0
        self._drain: Drain | None = None  # the channel's drain, once started
        self._draining: asyncio.Event | None = None  # created by the first wait_draining()
        self._random: random.Random | None = None  # for max_age jitter, made when first needed
        self._age_timer: asyncio.TimerHandle | None = None
        if options.max_age is not None:
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
        """Counts a new handle (``Handle`` calls this).

        Raises:
            ChannelClosedError: the channel is not OPEN.
        """
        if self.state is not ChannelState.OPEN:
            raise ChannelClosedError("graceful_grpc channel is closed or draining", "closed")
        self._open_handles += 1

    def close(self, handle: Handle, grace: float) -> asyncio.Future[DrainReport] | None:
        """Closes ``handle`` (once). Returns the drain's result if the drain has started - now,
        as this was the last open handle, or earlier - else None.

        With a drain running, ``grace`` brings its deadline forward (never back).
        """
        if not handle.closed:
            handle.closed = True
            self._open_handles -= 1
        if self._open_handles and self._drain is None:
            return None
        return self._start_or_hasten_drain(grace)

    # -- admission -----------------------------------------------------------------------------

    def admit(self, what: str) -> None:
        """Admits a call or hold from a closed handle (the channel is then draining or closed), or
        raises.

        Args:
            what: ``"call"`` or ``"hold"``, for the error message.

        Raises:
            ChannelClosedError: CLOSED (reason ``"closed"``), or refused by
                ``admit_during_drain`` (reason ``"draining"``).
        """
        if self.state is ChannelState.CLOSED:
            raise ChannelClosedError(f"graceful_grpc channel is closed: no new {what}", "closed")
        policy = self.options.admit_during_drain
        if policy == "all" or (policy == "held" and is_held(self.holds)):
            return
        raise ChannelClosedError(
            f"graceful_grpc channel is draining and admits no new {what} "
            + ("from code that holds no hold" if policy == "held" else "at all"),
            "draining",
        )

    def hold(self, handle: Handle, caller: FrameType) -> Hold:
        """Takes a hold through ``handle`` for code running in frame ``caller``. Safe from any
        thread.

        Raises:
            ChannelClosedError: as ``admit()`` when ``handle`` is closed; CLOSED.
        """
        if handle.closed:
            self.admit("hold")
        return self.holds.take(caller)

    def site(self, method: str, kind: CallKind) -> CallSite:
        """The CallSite of a new multicallable (its ``cancel_on_drain`` decided once, here)."""
        predicate = self.options.cancel_on_drain
        return CallSite(method, kind, predicate is not None and bool(predicate(method)))

    def track_admitted(self, call: Any, site: CallSite) -> Any:
        """Tracks, on the current link, a call that passed ``admit()``: one the drain's report
        counts too. A cancel-on-drain call started while draining is interrupted at once."""
        link = self.current
        link.track(call, site)
        if self._drain is not None and self.state is ChannelState.DRAINING:
            self._drain.admitted += 1
            if site.cancel_on_drain:
                live = LiveCall(call, site, _monotonic())
                link.end(live, interrupted("interrupted"), link.interrupted)
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
            live = link.mark_cancel_on_drain(call)
            if live is None:
                continue
            if self.state is not ChannelState.OPEN:
                link.end(live, interrupted("interrupted"), link.interrupted)
            elif link in self._retiring:
                link.end(live, interrupted("rotated"), link.interrupted)
            return
        if not call.done():
            site = site_of(call)
            raise ValueError(
                "cancel_on_drain(): the call was not started on this graceful_grpc channel "
                "(nor on any graceful channel: a grpc.aio channel's own call?)"
                if site is None
                else f"cancel_on_drain(): the {site.kind} call of {site.method} was started on "
                "another graceful_grpc channel, not on this one"
            )

    # -- rotation ------------------------------------------------------------------------------

    def rotate(
        self, handle: Handle, raw: aio.Channel | None, grace: float
    ) -> asyncio.Future[DrainReport]:
        """From now on new calls go to ``raw`` (None: one from the factory); the old link drains on
        its own, for at most ``grace`` seconds. Returns the old link's drain result.

        Raises:
            ChannelClosedError: the channel is DRAINING or CLOSED, or ``handle`` is closed.
            TypeError: ``raw`` is None and there is no factory, or the factory failed its check.
            ValueError: ``raw`` is the current grpc channel or an old one still draining.
        """
        if self.state is not ChannelState.OPEN:
            raise ChannelClosedError(
                f"cannot rotate a {self.state.value} graceful_grpc channel: it accepts no new "
                "connection",
                "closed" if self.state is ChannelState.CLOSED else "draining",
            )
        if handle.closed:
            raise ChannelClosedError(
                "cannot rotate through a closed graceful_grpc channel handle", "closed"
            )
        if raw is None:
            if self.factory is None:
                raise TypeError(
                    "rotate() needs new_channel: this channel was made with wrap() without a "
                    "factory"
                )
            raw = self.factory()
        return self._rotate_to(raw, grace)

    def _rotate_to(self, raw: aio.Channel, grace: float) -> asyncio.Future[DrainReport]:
        if any(raw is link.raw for link in (self.current, *self._retiring)):
            raise ValueError(
                "cannot rotate onto a grpc channel this graceful channel already uses: "
                "a rotation needs a new one"
            )
        loop = asyncio.get_running_loop()
        old = self.current
        self.current = Link(raw, self.in_flight)
        self.rotations += 1
        drain = Drain("old connection drained", old, (old,), loop.time() + grace, grace)
        self._retiring[old] = drain
        old.end_all(interrupted("rotated"), old.interrupted, is_cancel_on_drain)
        self._start(drain, "graceful_grpc rotation drain")
        logger.info(
            "rotated to a new connection (%d); %d calls drain on the old one, deadline %.3fs",
            self.rotations,
            drain.counted[old][0],
            grace,
        )
        self.rotation_listeners.notify(self.rotations)
        return drain.result

    def _schedule_age_rotation(self, loop: asyncio.AbstractEventLoop) -> None:
        max_age, jitter = self.options.max_age, self.options.max_age_jitter
        assert max_age is not None
        if self._random is None:
            import random  # here: the module costs import time every channel would pay

            self._random = random.Random()
        # The timer holds the connection weakly: a channel dropped without close() is collected
        # (as grpc.aio's own), and its timer then does nothing.
        self._age_timer = loop.call_later(
            max_age * (1 + self._random.uniform(-jitter, jitter)),
            _age_rotation_due,
            weakref.ref(self),
        )

    def age_rotation_due(self) -> None:
        """The ``max_age`` timer fired: rotate (if OPEN) and schedule the next one."""
        self._age_timer = None
        if self.state is not ChannelState.OPEN:
            return
        loop = asyncio.get_running_loop()
        try:
            if self.factory is None:  # refused by ChannelOptions.checked(): never happens
                raise TypeError("max_age without a factory")
            self._rotate_to(self.factory(), self.options.drain_timeout)
        except Exception:
            logger.exception("max_age rotation failed; the old connection stays")
        self._schedule_age_rotation(loop)

    # -- the drain -----------------------------------------------------------------------------

    def _start_or_hasten_drain(self, grace: float) -> asyncio.Future[DrainReport]:
        loop = asyncio.get_running_loop()
        requested = loop.time() + grace
        drain = self._drain
        if drain is None:
            # All of this happens now, not when the task first runs: from here on every new call
            # goes through admit() (and is counted there, never also in the starting count), and
            # a shorter grace asked for before the task runs is not lost.
            self.state = ChannelState.DRAINING
            if self._age_timer is not None:
                self._age_timer.cancel()
                self._age_timer = None
            logger.info(
                "draining channel: %d calls in flight, %d holds, deadline %.3fs",
                self.in_flight.value,
                self.holds.count.value,
                grace,
            )
            links = (self.current, *self._retiring)
            drain = self._drain = Drain("drain finished", self.current, links, requested, grace)
            self._start(drain, "graceful_grpc drain")
            if self._draining is not None:
                self._draining.set()
            for link in links:
                link.end_all(interrupted("interrupted"), link.interrupted, is_cancel_on_drain)
        else:
            drain.bring_forward(requested, grace)
        for retiring in self._retiring.values():
            retiring.bring_forward(drain.deadline_at, drain.grace)
        return drain.result

    async def wait_draining(self) -> None:
        """Returns once the drain has started (at once if it has)."""
        if self.state is not ChannelState.OPEN:
            return
        if self._draining is None:
            self._draining = asyncio.Event()
        await self._draining.wait()

    def _start(self, drain: Drain, name: str) -> None:
        drain.task = asyncio.get_running_loop().create_task(self._run_drain(drain), name=name)
        drain.task.add_done_callback(self._drain_task_done)

    async def _run_drain(self, drain: Drain) -> None:
        """The one drain routine: wait until ``drain`` is done or its deadline passes, abort what
        is left then (or at once if cancelled), and close and report in ``_close_and_report``."""
        drain.running = True
        abandoned = 0
        try:
            async with asyncio.timeout_at(drain.deadline_at) as timeout:
                drain.timeout = timeout
                await self._until_done(drain)
        except TimeoutError:
            abandoned = self._abort(drain)
        except BaseException:  # the drain itself was cancelled: nothing may stay open
            abandoned = self._abort(drain, everything=True)
            raise
        finally:
            drain.timeout = None
            await asyncio.shield(self._close_and_report(drain, abandoned))

    async def _until_done(self, drain: Drain) -> None:
        if drain is not self._drain:
            await drain.own.wait_empty()  # an old link: its calls
            return
        await self.idle.wait()  # the channel: every call and hold
        while not self.holds.close_if(self.idle.idle):  # held code started work as we woke up
            await self.idle.wait()
        self.state = ChannelState.CLOSED

    def _abort(self, drain: Drain, *, everything: bool = False) -> int:
        """At ``drain``'s deadline (or as it is cancelled): cancel what is left on its link; for the
        channel's drain also refuse new work and abandon the holds (and, cancelled, end the old
        links' drains now too). Returns how many holds were abandoned."""
        drain.abort(drain.own)
        if drain is not self._drain:
            return 0
        taken_at = self.holds.close_and_abandon()
        abandoned = len(taken_at)
        self.state = ChannelState.CLOSED
        if abandoned:
            logger.warning(
                "drain deadline passed, abandoned %d holds, taken at: %s",
                abandoned,
                _places(taken_at),
            )
        if everything:
            now = asyncio.get_running_loop().time()
            for retiring in self._retiring.values():
                retiring.bring_forward(now, 0.0)
        self.idle.notify()
        return abandoned

    async def _close_and_report(self, drain: Drain, abandoned: int) -> None:
        """The shielded last part of every drain: close the grpc channel, wait for the old links'
        drains (the channel's drain), report. Sets ``drain.result`` whatever happens."""
        try:
            await drain.own.raw.close(None)
            if drain is self._drain:
                await asyncio.gather(*(d.result for d in self._retiring.values()))
        finally:
            self._retiring.pop(drain.own, None)
            report = drain.report(abandoned)
            drain.log(report)
            # Listeners hear of each grpc channel's drain once: old ones at their rotation's end,
            # so the channel's drain tells them of its own link's calls only.
            heard = report if len(drain.counted) == 1 else drain.report(abandoned, (drain.own,))
            self.drain_listeners.notify(heard)
            drain.result.set_result(report)

    def _drain_task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled():
            task.exception()  # retrieved: a failed drain was logged where it failed
            return
        drain = self._drain if self._drain is not None and self._drain.task is task else None
        drain = drain or next((d for d in self._retiring.values() if d.task is task), None)
        if drain is not None and not drain.running:
            # Cancelled before its first step (its body never ran): abort and close now.
            abandoned = self._abort(drain, everything=True)
            closing = asyncio.ensure_future(self._close_and_report(drain, abandoned))
            closing.add_done_callback(_retrieve)


def _age_rotation_due(connection: weakref.ref[Connection]) -> None:
    alive = connection()
    if alive is not None:
        alive.age_rotation_due()


def _loop_of(raw: aio.Channel) -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        loop = getattr(raw, "_loop", None)  # grpc.aio channels keep the loop they were made on
        if not isinstance(loop, asyncio.AbstractEventLoop):
            raise RuntimeError("max_age needs an event loop: create the channel in one") from None
        return loop


def _places(taken_at: list[str], most: int = 10) -> str:
    """Where abandoned holds were taken, each place once with its count, at most ``most``."""
    counts = collections.Counter(taken_at)
    places = [place if n == 1 else f"{place} (x{n})" for place, n in counts.most_common(most)]
    rest = len(counts) - len(places)
    return "; ".join(places) + (f"; and {rest} more places" if rest else "")


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
