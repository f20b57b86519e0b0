"""Hypothesis state machines over a real graceful channel, checked against a model after every step.

``ChannelModel`` is the drain core: calls of all four kinds, holds, handles and closes in any
order. ``RotatingChannelModel`` is the same machine with rotation and cancel-on-drain on top:
``rotate()`` (run as a task, so rotations overlap and the machine keeps stepping), ``max_age`` (the
channel rotates itself), the ``cancel_on_drain`` option and ``channel.cancel_on_drain(call)``.

Hypothesis state machines are synchronous, so each machine run owns an event loop running in a
background thread, and every rule and check is a coroutine submitted to it. The loop keeps running
between rules, so drain deadlines pass in real time, as they would in production; each check reads
the channel in one synchronous step on the loop, so nothing moves under it. Each run has its own
real Echo server and channel.

The model follows the channel's connections by generation: a call's generation is the channel's
``rotations`` when it started (the connection it runs on), and rotation number ``r`` retires
generation ``r - 1``. The model learns of every rotation, also those ``max_age`` makes, from a
rotation listener, which the channel calls synchronously inside the rotation - so the model's
snapshot of the calls in flight on the old connection is exact. The channel interrupts
cancel-on-drain calls synchronously too (as a rotation or drain starts, as a call is marked or
admitted while draining), so the model knows exactly which calls it interrupts; what it cannot
know exactly (a deadline racing a caller's own cancellation) it bounds.

The machines have a fixed seed and no example database: every run of the suite draws the same
sequences of rules (``derandomize`` would too, but explores far less: it draws mostly the first
rule). What the channel does at each step may still vary with timing, so the rules only ever
depend on what the model decided, never on what the channel did (Hypothesis rejects data
generation that changes between runs).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import itertools
import threading
import weakref
from collections import Counter
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from graceful_grpc import ChannelClosedError, ChannelState, DrainReport, DrainTimeoutError, aio
from graceful_grpc.aio import GracefulChannel, Hold
from graceful_grpc.testing import EchoServer

from .support.calls import KINDS, METHOD, PassingInterceptor, finish, start

T = TypeVar("T")

# How late a caller the drain aborted (or interrupted) may be answered, after its deadline. The
# channel answers within a loop iteration or two; 0.25 s leaves room for a 2-core machine under a
# load average of 10 (0.1 s overran there), and is still far below any hang or missed deadline.
ANSWER_SLACK = 0.25
# A deadline computed by the channel a moment before the model reads the clock (max_age).
CLOCK_SLOP = 0.001
BAD_METADATA: dict[str, Any] = {
    "non-str key": ((42, 42),),
    "str value for -bin key": (("k-bin", "v"),),
}
# cancel_on_drain option -> (the option's value, the call kinds whose methods it names)
CANCEL_ON_DRAIN: dict[str, tuple[Any, frozenset[str]]] = {
    "none": (None, frozenset()),
    "server stream": ([METHOD["unary_stream"]], frozenset({"unary_stream"})),
    "streaming methods": (
        lambda method: method.endswith("Stream"),
        frozenset({"unary_stream", "stream_unary", "stream_stream"}),
    ),
}
GRACES = (0.0, 0.05, 0.1, 0.2)
STATE_ORDER = {ChannelState.OPEN: 0, ChannelState.DRAINING: 1, ChannelState.CLOSED: 2}
STEP_TIMEOUT = 5.0  # bounds every await of a rule; far above what a correct step takes


@dataclass(eq=False)
class ModelHold:
    hold: Hold
    context: contextvars.Context  # code run in it is held by this hold and the ones it was taken in
    taken_in: ModelHold | None
    released_by_model: bool = False  # the model's release() ended it (the drain had not)
    release_called: bool = False

    def lineage(self) -> list[ModelHold]:
        return [self, *(self.taken_in.lineage() if self.taken_in is not None else ())]


@dataclass(eq=False)
class ModelCall:
    kind: str
    mode: str  # "gate": in flight until the model opens its gate; "delay": finishes soon; "bad"
    call: Any
    caller: asyncio.Task[Any]
    gate: str = ""
    owner_cancelled: bool = False
    during_drain: bool = False  # admitted while the connection was DRAINING
    generation: int = 0  # the channel's rotations when it started: the connection it runs on
    cancel_on_drain: bool = False  # by its method, or marked while in flight
    done_rotations: int | None = None  # the channel's rotations when grpc reported it done
    done_at: float = 0.0  # loop time of that
    interrupted: int | None = None  # the model's event number when the channel interrupted it
    interrupted_at: float = 0.0  # loop time of that
    answered: list[float] = field(default_factory=list)  # loop time the caller got its answer


@dataclass
class Drain:
    """What the model knows about the drain once the last handle is closing."""

    in_flight: list[ModelCall]  # on every connection, as the drain started
    started: int  # the model's event number
    started_at: float  # loop time
    earliest_deadline: float  # loop time: the abort may not come before this
    latest_deadline: float  # loop time: callers are answered by this + ANSWER_SLACK
    task: asyncio.Task[Any]  # the close() that started the drain
    ended_at: float | None = None
    report: DrainReport | None = None
    admitted: list[ModelCall] = field(default_factory=list)
    generation: int = 0  # the connection current as it started
    heard: DrainReport | None = None  # what the drain listener got for it


@dataclass(eq=False)
class Rotation:
    """What the model knows about one rotation and the drain of the connection it retired."""

    number: int  # the channel's rotations after it; it retired generation number - 1
    event: int  # the model's event number
    in_flight: list[ModelCall]  # on the old connection as the rotation happened
    earliest_deadline: float  # of the old connection's drain; only ever brought forward
    latest_deadline: float
    task: asyncio.Task[Any] | None  # the rule's rotate(), or None: max_age rotated
    started_at: float = 0.0  # loop time
    report: DrainReport | None = None
    ended_at: float | None = None
    checked: bool = False


@dataclass
class Tally:
    """How the calls a report covers ended, as their callers saw it; ``either`` could be any."""

    completed: int = 0
    cancelled: int = 0
    interrupted: int = 0
    either: int = 0
    cancelled_kinds: Counter[str] = field(default_factory=Counter)
    interrupted_kinds: Counter[str] = field(default_factory=Counter)
    seen: list[str] = field(default_factory=list)  # for failure messages

    def check(self, report: DrainReport, total: int) -> None:
        counts = (report.completed, len(report.cancelled), len(report.interrupted))
        assert sum(counts) == total, (report, total)
        for got, least in zip(
            counts, (self.completed, self.cancelled, self.interrupted), strict=True
        ):
            assert least <= got <= least + self.either, (report, self)
        assert self.cancelled_kinds <= Counter(info.kind for info in report.cancelled), report
        assert self.interrupted_kinds <= Counter(info.kind for info in report.interrupted), report
        assert report.drained == (not report.cancelled and not report.abandoned_holds), report


def answer(task: asyncio.Task[Any]) -> str:
    """What a caller got, with the status code of grpc errors."""
    if not task.done():
        return "pending"
    if task.cancelled():
        return "CancelledError"
    error = task.exception()
    if error is None:
        return "ok"
    if isinstance(error, DrainTimeoutError):
        return "DrainTimeoutError"
    if isinstance(error, ChannelClosedError):
        assert error.code() is grpc.StatusCode.UNAVAILABLE, error
        return "ChannelClosedError"
    if isinstance(error, grpc.aio.AioRpcError):
        return f"rpc {error.code().name}"
    return f"local {type(error).__name__}"


@seed(20261127)  # with database=None: every run explores the same sequences
class ChannelModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.loop_thread = threading.Thread(target=self.loop.run_forever, name="model loop")
        self.loop_thread.start()
        self.server = EchoServer()
        self.run(self.server.start())
        self.handles: list[GracefulChannel] = []
        self.calls: list[ModelCall] = []
        self.holds: list[ModelHold] = []
        self.idle_waiters: list[asyncio.Future[bool]] = []  # some on the other loop
        self.drain: Drain | None = None
        self.last_state = ChannelState.OPEN
        self.policy = "held"
        self.interrupt_kinds: frozenset[str] = frozenset()  # of the cancel_on_drain option
        self.rotation_log: list[Rotation] = []  # rotation number r at index r - 1
        self.rule_rotation: tuple[float, float] | None = None  # (grace, loop time) of rotate()
        self.drain_reports: list[DrainReport] = []  # every report the drain listener got
        self.events = itertools.count()  # orders interrupts, rotations and the drain's start
        self.gates = 0
        self.steps = 0  # rules run: deterministic, unlike what the channel did
        self.factory_hands_out = "new"  # what the model's rotation factory returns (see below)
        self.built: list[grpc.aio.Channel] = []  # by that factory, the newest last
        self._other_loop: asyncio.AbstractEventLoop | None = None  # for waiters on a second loop
        self._other_thread: threading.Thread | None = None
        self.stray: list[GracefulChannel] = []  # handed out by a misbehaving factory

    # -- plumbing -------------------------------------------------------------------------------

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = STEP_TIMEOUT) -> T:
        """Runs ``coroutine`` on the machine's loop; fails the step if it takes over ``timeout``."""
        bounded = asyncio.wait_for(coroutine, timeout)
        return asyncio.run_coroutine_threadsafe(bounded, self.loop).result(timeout + 1)

    @property
    def channel(self) -> GracefulChannel:
        return self.handles[0]

    def state(self) -> ChannelState:
        return self.channel.state

    def active(self, hold: ModelHold) -> bool:
        return not hold.released_by_model and self.state() is not ChannelState.CLOSED

    def held_by(self, index: int | None) -> ModelHold | None:
        if index is None or not self.holds:
            return None
        return self.holds[index % len(self.holds)]

    def admits(self, handle: GracefulChannel, held: ModelHold | None) -> bool:
        """The model's admission decision, from the state observed right before the attempt."""
        if not handle.closed:
            return True
        if self.state() is ChannelState.CLOSED:
            return False
        if self.policy == "all":
            return True
        if self.policy == "none":
            return False
        return held is not None and self._held(held)

    def _held(self, hold: ModelHold) -> bool:
        return any(self.active(other) for other in hold.lineage())

    def admitted(self, call: ModelCall) -> None:
        self.calls.append(call)
        if self.drain is not None and self.state() is ChannelState.DRAINING:
            call.during_drain = True
            self.drain.admitted.append(call)
            if call.cancel_on_drain:  # a cancel-on-drain call admitted while draining
                self.interrupt(call)

    def interrupt(self, call: ModelCall) -> None:
        """The channel has just interrupted ``call`` (it was in flight): its caller gets
        ChannelClosedError within ANSWER_SLACK."""
        if call.interrupted is None:
            call.interrupted = next(self.events)
            call.interrupted_at = self.loop.time()

    def answer_by(self, call: ModelCall) -> float | None:
        """Loop time by which the caller of ``call`` must have its answer, if the model knows."""
        bounds = []
        if call.interrupted is not None:
            bounds.append(call.interrupted_at)
        if call.generation < len(self.rotation_log):
            bounds.append(self.rotation_log[call.generation].latest_deadline)
        if self.drain is not None:
            bounds.append(self.drain.latest_deadline)
        return min(bounds) + ANSWER_SLACK if bounds else None

    async def wait_answered(self, calls: Iterable[ModelCall], why: str) -> None:
        """Waits for the callers of ``calls`` that are due an answer, each until its
        ``answer_by()``; fails if one is still waiting then."""
        due = [(call, by) for call in calls if (by := self.answer_by(call)) is not None]
        waiting = [call.caller for call, _ in due if not call.caller.done()]
        if waiting:
            until = max(by for _, by in due)
            await asyncio.wait(waiting, timeout=max(0.0, until - self.loop.time()))
        now = self.loop.time()
        hung = [(c.kind, c.mode) for c, by in due if by <= now and not c.caller.done()]
        assert hung == [], f"callers still waiting {ANSWER_SLACK}s after {why}: {hung}"

    def may_have_timed_out(self, call: ModelCall) -> bool:
        """Whether a drain deadline that applies to ``call`` had passed when its caller was
        answered."""
        if call.generation < len(self.rotation_log):  # on a connection a rotation retired
            return call.answered[0] >= self.rotation_log[call.generation].earliest_deadline
        return self.state() is ChannelState.CLOSED

    def tally(self, calls: list[ModelCall], since: int) -> Tally:
        """How ``calls`` ended, for a report that counts interrupts from event ``since`` on."""
        tally = Tally()
        for call in calls:
            result = answer(call.caller)
            tally.seen.append(f"{call.kind} {call.mode} {result} interrupted={call.interrupted}")
            if call.owner_cancelled or call.mode == "bad":  # its own end raced the channel's
                tally.either += 1
            elif result == "DrainTimeoutError":
                if self.aborted_before(call, since):
                    tally.either += 1
                else:
                    tally.cancelled += 1
                    tally.cancelled_kinds[call.kind] += 1
            elif result == "ChannelClosedError":
                assert call.interrupted is not None
                if call.interrupted >= since:
                    tally.interrupted += 1
                    tally.interrupted_kinds[call.kind] += 1
                else:  # interrupted before, but grpc had not reported it done yet
                    tally.completed += 1
            else:
                tally.completed += 1
        return tally

    def aborted_before(self, call: ModelCall, since: int) -> bool:
        """Whether a rotation's deadline may have aborted ``call`` before the drain's event
        ``since`` (grpc reports an intercepted call done a step after its abort)."""
        drain = self.drain
        if call.generation >= len(self.rotation_log) or drain is None or since != drain.started:
            return False
        return self.rotation_log[call.generation].earliest_deadline <= drain.started_at

    async def settle(self) -> None:
        """Ends every rule: once the drain is over, every caller and idle waiter is answered in
        time, and the report agrees with the model; so do the reports of rotations."""
        await self.settle_rotations()
        drain = self.drain
        if drain is None or not drain.task.done() or drain.report is not None:
            return
        assert drain.ended_at is not None
        callers = [call.caller for call in self.calls if not call.caller.done()]
        waiting = callers + [waiter for waiter in self.idle_waiters if not waiter.done()]
        answer_by = max(drain.ended_at, drain.latest_deadline) + ANSWER_SLACK
        if waiting:
            await asyncio.wait(waiting, timeout=max(0.0, answer_by - self.loop.time()))
        hung = [(call.kind, call.mode) for call in self.calls if not call.caller.done()]
        assert hung == [], f"callers still waiting {ANSWER_SLACK}s after the drain: {hung}"
        assert all(waiter.done() and waiter.result() for waiter in self.idle_waiters)
        drain.report = report = drain.task.result()
        self.check_report(drain, report)
        await self.check_every_rotation_reported(answer_by)

    def check_report(self, drain: Drain, report: DrainReport) -> None:
        assert report.closed
        assert drain.ended_at is not None
        assert drain.ended_at <= drain.latest_deadline + ANSWER_SLACK, "close() overran"
        covered = drain.in_flight + drain.admitted
        self.tally(covered, drain.started).check(report, len(covered))
        if report.abandoned_holds:
            assert self.drain_deadline_passed(drain), "holds abandoned before the deadline"
        abandoned = [hold for hold in self.holds if not hold.released_by_model]
        assert report.abandoned_holds == len(abandoned), report
        # The listener hears the drain of the connection current at the close (the old ones'
        # calls are in their rotations' reports): the last report, once every one has closed.
        assert self.drain_reports, "drain listener not called"
        drain.heard = heard = self.drain_reports[-1]
        current = [call for call in drain.in_flight if call.generation == drain.generation]
        if heard is report:  # no old connection was draining
            assert len(current) == len(drain.in_flight), (heard, drain.in_flight)
        else:
            own = current + drain.admitted
            self.tally(own, drain.started).check(heard, len(own))
            assert heard.abandoned_holds == report.abandoned_holds, (heard, report)

    def drain_deadline_passed(self, drain: Drain) -> bool:
        return drain.ended_at is not None and drain.ended_at >= drain.earliest_deadline

    # -- rotations (only RotatingChannelModel rotates; these keep the books of any machine) -----

    def rotated(self, rotations: int) -> None:
        """The channel's rotation listener: runs inside the rotation, synchronously."""
        now = self.loop.time()
        if self.rule_rotation is not None:  # rotate() of a rule; it read the clock first
            (grace, at), self.rule_rotation = self.rule_rotation, None
            task = asyncio.current_task()
        else:  # max_age; the channel read the clock a moment ago
            grace, at, task = self.channel.drain_timeout, now - CLOCK_SLOP, None
        old, event = rotations - 1, next(self.events)  # before the interrupts it makes
        in_flight = [
            call
            for call in self.calls
            if call.generation == old
            and (call.done_rotations is None or call.done_rotations >= rotations)
        ]
        for call in in_flight:
            if call.cancel_on_drain:
                self.interrupt(call)
        assert len(self.rotation_log) == old, (self.rotation_log, rotations)
        self.rotation_log.append(
            Rotation(rotations, event, in_flight, at + grace, now + grace + 0.01, task, now)
        )

    def drained(self, report: DrainReport) -> None:
        """The channel's drain listener."""
        self.drain_reports.append(report)

    def bring_rotations_forward(self, earliest: float, latest: float) -> None:
        for rotation in self.rotation_log:
            rotation.earliest_deadline = min(rotation.earliest_deadline, earliest)
            rotation.latest_deadline = min(rotation.latest_deadline, latest)

    async def settle_rotations(self) -> None:
        """Checks the report of each rotate() of a rule that has returned."""
        for rotation in self.rotation_log:
            if rotation.checked or rotation.task is None or not rotation.task.done():
                continue
            rotation.report = rotation.task.result()  # re-raises what the task asserted
            assert rotation.report is not None and rotation.ended_at is not None
            await self.wait_answered(rotation.in_flight, f"rotation {rotation.number}")
            self.check_rotation_report(rotation, rotation.report)
            assert rotation.ended_at <= self.rotation_due(rotation), "rotate() overran"

    def rotation_due(self, rotation: Rotation) -> float:
        """Loop time by which a rotation's drain must have ended: its deadline, or as soon as
        no call is left on the old connection, whichever comes first; plus ANSWER_SLACK."""
        due = rotation.latest_deadline
        if all(call.done_rotations is not None for call in rotation.in_flight):
            due = min(due, max((call.done_at for call in rotation.in_flight), default=0.0))
        return max(due, rotation.started_at) + ANSWER_SLACK

    def check_rotation_report(self, rotation: Rotation, report: DrainReport) -> None:
        rotation.checked = True
        assert report.closed and report.abandoned_holds == 0, report
        self.tally(rotation.in_flight, rotation.event).check(report, len(rotation.in_flight))
        if report.cancelled:
            assert self.loop.time() >= rotation.earliest_deadline, "aborted before the grace"
        assert any(seen is report for seen in self.drain_reports), "drain listener not called"

    async def check_every_rotation_reported(self, answer_by: float) -> None:
        """Once the drain is over: every old connection has drained and reported; the reports of
        ``max_age`` rotations (which the model cannot tell apart) agree with them together."""
        assert self.channel.connections == 0
        assert len(self.rotation_log) == self.channel.rotations
        tasks = [rotation.task for rotation in self.rotation_log if rotation.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.0, answer_by - self.loop.time()))
        await self.settle_rotations()
        assert all(rotation.checked for rotation in self.rotation_log if rotation.task)
        assert self.drain is not None
        known = [self.drain.heard, *(rotation.report for rotation in self.rotation_log)]
        by_age = [r for r in self.drain_reports if not any(r is k for k in known)]
        aged = [rotation for rotation in self.rotation_log if rotation.task is None]
        assert len(by_age) == len(aged), (by_age, aged)
        assert sorted(r.completed + len(r.cancelled) + len(r.interrupted) for r in by_age) == (
            sorted(len(rotation.in_flight) for rotation in aged)
        )
        together = Tally()
        for rotation in aged:
            tally = self.tally(rotation.in_flight, rotation.event)
            together.completed += tally.completed
            together.cancelled += tally.cancelled
            together.interrupted += tally.interrupted
            together.either += tally.either
            together.cancelled_kinds += tally.cancelled_kinds
            together.interrupted_kinds += tally.interrupted_kinds
        merged = DrainReport(
            closed=True,
            drained=all(r.drained for r in by_age),
            waited=0.0,
            completed=sum(r.completed for r in by_age),
            cancelled=tuple(info for r in by_age for info in r.cancelled),
            abandoned_holds=sum(r.abandoned_holds for r in by_age),
            interrupted=tuple(info for r in by_age for info in r.interrupted),
        )
        together.check(merged, sum(len(rotation.in_flight) for rotation in aged))
        for report in by_age:
            assert report.closed and report.abandoned_holds == 0, report
            assert report.drained == (not report.cancelled), report

    def hand_out(self, interceptors: Any) -> Any:
        """The model's rotation factory: a new grpc channel of its own, or what the rules ask."""
        bad = self.factory_hands_out
        if bad == "None":
            return None
        if bad == "42":
            return 42
        if bad == "a GracefulChannel":
            graceful = aio.insecure_channel(self.server.target)
            self.stray.append(graceful)
            return graceful
        if bad == "the channel in use":
            return self.built[-1]  # every connection comes from this factory: the newest is current
        raw = grpc.aio.insecure_channel(
            self.server.target,
            options=[("grpc.use_local_subchannel_pool", 1)],
            interceptors=interceptors,
        )
        self.built.append(raw)
        return raw

    # -- rules ----------------------------------------------------------------------------------

    @initialize(policy=st.sampled_from(["held", "all", "none"]), intercepted=st.booleans())
    def open_channel(self, policy: str, intercepted: bool) -> None:
        self.policy = policy
        self.run(self._open_channel(policy, intercepted))

    async def _open_channel(
        self,
        policy: str,
        intercepted: bool,
        *,
        drain_timeout: float = STEP_TIMEOUT,
        cancel_on_drain: str = "none",
        max_age: float | None = None,
        model_factory: bool = False,
        raising_listener: str | None = None,
    ) -> None:
        # On the loop: a grpc.aio channel belongs to the loop it is created on.
        option, self.interrupt_kinds = CANCEL_ON_DRAIN[cancel_on_drain]
        interceptors = [PassingInterceptor()] if intercepted else None
        options: dict[str, Any] = {
            "drain_timeout": drain_timeout,
            "admit_during_drain": policy,
            "cancel_on_drain": option,
            "max_age": max_age,
        }
        if model_factory:  # wrap(factory=...): a factory the rules can make misbehave

            def factory() -> Any:
                return self.hand_out(interceptors)

            channel = aio.wrap(factory(), factory=factory, **options)
        else:
            channel = aio.insecure_channel(self.server.target, interceptors=interceptors, **options)
        if raising_listener is not None:  # first: the model's own listeners are told after it
            error = RAISED[raising_listener]

            def raising(event: object) -> None:
                raise error()

            channel.add_rotation_listener(raising)
            channel.add_drain_listener(raising)
        channel.add_rotation_listener(self.rotated)
        channel.add_drain_listener(self.drained)
        self.handles.append(channel)

    @rule(
        kind=st.sampled_from(KINDS),
        mode=st.sampled_from(["gate", "gate", "delay", "bad"]),
        handle=st.integers(0, 7),
        held=st.none() | st.integers(0, 15),
        delay_ms=st.sampled_from([0, 5, 20]),
        bad=st.sampled_from(sorted(BAD_METADATA)),
    )
    def start(
        self, kind: str, mode: str, handle: int, held: int | None, delay_ms: int, bad: str
    ) -> None:
        self.run(
            self._start(kind, mode, self.handles[handle % len(self.handles)], held, delay_ms, bad)
        )

    async def _start(
        self,
        kind: str,
        mode: str,
        handle: GracefulChannel,
        held: int | None,
        delay_ms: int,
        bad: str,
    ) -> None:
        model = self.launch(kind, mode, handle, self.held_by(held), delay_ms, bad)
        if model is None:
            pass
        elif mode == "gate":
            await self.arrived(model)
        elif mode == "bad":
            await asyncio.wait({model.caller})
            result = answer(model.caller)
            assert result == "local TypeError", result
        await self.answer_interrupted()
        await self.settle()

    def launch(
        self,
        kind: str,
        mode: str,
        handle: GracefulChannel,
        hold: ModelHold | None,
        delay_ms: int = 0,
        bad: str = "",
    ) -> ModelCall | None:
        """Starts a call (synchronously, on the loop) and records it; None if refused."""
        expected = self.admits(handle, hold)
        self.gates += 1
        gate = f"g{self.gates}" if mode == "gate" else ""
        metadata = BAD_METADATA[bad] if mode == "bad" else None
        delay = delay_ms if mode == "delay" else 0
        context = hold.context.copy() if hold is not None else contextvars.Context()
        try:
            call = context.run(
                functools.partial(start, gate=gate, metadata=metadata, delay_ms=delay),
                handle,
                kind,
            )
        except ChannelClosedError:
            assert not expected, "the channel refused a call it must admit"
            return None
        assert expected, f"the channel admitted a call it must refuse ({self.state()})"
        answered: list[float] = []
        caller = asyncio.create_task(self._caller(call, kind, answered))  # not the starter's task
        model = ModelCall(
            kind,
            mode,
            call,
            caller,
            gate,
            generation=self.channel.rotations,
            cancel_on_drain=kind in self.interrupt_kinds,
        )
        model.answered = answered
        call.add_done_callback(functools.partial(self._call_done, model))
        self.admitted(model)
        return model

    def _call_done(self, model: ModelCall, call: Any) -> None:
        model.done_rotations = self.channel.rotations
        model.done_at = self.loop.time()

    async def _caller(self, call: Any, kind: str, answered: list[float]) -> list[str]:
        try:
            return await finish(call, kind)
        finally:  # here, not in a done-callback: that runs a loop step after the task is done
            answered.append(self.loop.time())

    async def arrived(self, call: ModelCall) -> None:
        """Waits until the server holds the gated call, or it ended (a drain ended it)."""
        arrived = asyncio.ensure_future(self.server.wait_arrivals(call.gate))
        await asyncio.wait({arrived, call.caller}, return_when=asyncio.FIRST_COMPLETED)
        arrived.cancel()

    async def answer_interrupted(self) -> None:
        """Every caller the channel interrupted gets ChannelClosedError within ANSWER_SLACK."""
        interrupted = [call for call in self.calls if call.interrupted is not None]
        await self.wait_answered(interrupted, "their call was interrupted")

    @rule(index=st.integers(0, 63))
    def finish(self, index: int) -> None:
        self.steps += 1
        self.run(self._finish(index))

    async def _finish(self, index: int) -> None:
        pending = [call for call in self.calls if call.gate and not call.caller.done()]
        if not pending:
            return
        call = pending[index % len(pending)]
        self.server.open_gate(call.gate)
        await asyncio.wait({call.caller})
        result = answer(call.caller)
        assert result in ("ok", "DrainTimeoutError", "ChannelClosedError"), result
        await self.settle()

    @rule(index=st.integers(0, 63))
    def cancel_caller(self, index: int) -> None:
        self.steps += 1
        self.run(self._cancel_caller(index))

    async def _cancel_caller(self, index: int) -> None:
        pending = [call for call in self.calls if not call.caller.done()]
        if not pending:
            return
        call = pending[index % len(pending)]
        call.owner_cancelled = True
        call.caller.cancel()
        await asyncio.wait({call.caller})
        await self.settle()

    @rule(
        handle=st.integers(0, 7),
        held=st.none() | st.integers(0, 15),
        from_thread=st.booleans(),
    )
    def take_hold(self, handle: int, held: int | None, from_thread: bool) -> None:
        self.steps += 1
        self.run(self._take_hold(self.handles[handle % len(self.handles)], held, from_thread))

    async def _take_hold(
        self, handle: GracefulChannel, held: int | None, from_thread: bool
    ) -> None:
        parent = self.held_by(held)
        expected = self.admits(handle, parent)
        context = parent.context.copy() if parent is not None else contextvars.Context()
        taken: list[Hold | BaseException] = []

        def take() -> None:
            try:
                taken.append(context.run(handle.hold))
            except BaseException as error:
                taken.append(error)

        _run_here_or_in_thread(take, from_thread)
        result = taken[0]
        if isinstance(result, ChannelClosedError):
            assert not expected, "the channel refused a hold it must admit"
        else:
            assert isinstance(result, Hold), result
            assert expected, f"the channel admitted a hold it must refuse ({self.state()})"
            self.holds.append(ModelHold(result, context, parent))
        await self.settle()

    @rule(index=st.integers(0, 63), threads=st.sampled_from([0, 1, 4]))
    def release_hold(self, index: int, threads: int) -> None:
        self.steps += 1
        self.run(self._release_hold(index, threads))

    async def _release_hold(self, index: int, threads: int) -> None:
        unreleased = [hold for hold in self.holds if not hold.release_called]
        if not unreleased:
            return
        model = unreleased[index % len(unreleased)]
        model.release_called = True
        # Nothing else runs on the loop until this rule awaits: the drain cannot abandon the hold
        # while it is released here (or in threads, joined before the rule awaits).
        if not model.hold.released:
            model.released_by_model = True
        if threads == 0:
            model.hold.release()
        else:  # racing releases: the hold must still end once
            start_line = threading.Barrier(threads)

            def release() -> None:
                start_line.wait(timeout=STEP_TIMEOUT)
                model.hold.release()

            workers = [threading.Thread(target=release) for _ in range(threads)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(timeout=STEP_TIMEOUT)
        assert model.hold.released
        await asyncio.sleep(0)  # a drain woken by the release may finish now
        await self.settle()

    @rule(handle=st.integers(0, 7))
    def share(self, handle: int) -> None:
        self.steps += 1
        self.run(self._share(self.handles[handle % len(self.handles)]))

    async def _share(self, handle: GracefulChannel) -> None:
        try:
            shared = handle.share()
        except ChannelClosedError:
            assert handle.closed
        else:
            assert not handle.closed
            assert shared.state is ChannelState.OPEN
            self.handles.append(shared)
        await self.settle()

    @precondition(lambda self: self.steps >= 8)  # let work pile up before the first close
    @rule(handle=st.integers(0, 7), grace=st.sampled_from(GRACES))
    def close(self, handle: int, grace: float) -> None:
        self.steps += 1
        self.run(self._close(self.handles[handle % len(self.handles)], grace))

    async def _close(self, handle: GracefulChannel, grace: float) -> None:
        last = not handle.closed and sum(not other.closed for other in self.handles) == 1

        async def closing() -> DrainReport:
            if last:
                in_flight = [call for call in self.calls if not call.call.done()]
                earliest = self.loop.time() + grace
                task = asyncio.current_task()
                assert task is not None
                self.drain = Drain(
                    in_flight, next(self.events), self.loop.time(), earliest, earliest + 0.01, task
                )
                self.drain.generation = self.channel.rotations
                for call in in_flight:  # the drain interrupts them as it starts
                    if call.cancel_on_drain:
                        self.interrupt(call)
            elif self.drain is not None and self.drain.report is None:
                earliest = self.loop.time() + grace
                self.drain.earliest_deadline = min(self.drain.earliest_deadline, earliest)
                self.drain.latest_deadline = min(self.drain.latest_deadline, earliest + 0.01)
            if self.drain is not None and self.drain.report is None:
                self.bring_rotations_forward(
                    self.drain.earliest_deadline, self.drain.latest_deadline
                )
            try:
                return await handle.close(grace)
            finally:
                # Here, not in a done-callback: that runs a loop step after the task is done.
                if last and self.drain is not None:
                    self.drain.ended_at = self.loop.time()

        drain_before = self.drain
        task = asyncio.create_task(closing())
        await asyncio.sleep(0)
        assert handle.closed
        if not last and drain_before is None:
            report = await task
            assert not report.closed and report.completed == 0
        elif drain_before is not None and drain_before.report is not None:
            assert await task is drain_before.report  # repeat closes get the final report
        await self.answer_interrupted()
        await self.settle()

    @rule()
    def await_drain(self) -> None:
        self.steps += 1
        self.run(self._await_drain())

    async def _await_drain(self) -> None:
        if self.drain is None or self.drain.report is not None:
            return
        late = self.drain.latest_deadline + ANSWER_SLACK - self.loop.time()
        await asyncio.wait({self.drain.task}, timeout=max(0.0, late))
        assert self.drain.task.done(), "the drain overran its deadline"
        await self.settle()

    @rule()
    def wait_idle(self) -> None:
        self.steps += 1
        self.run(self._wait_idle())

    async def _wait_idle(self) -> None:
        idle = self.channel.in_flight == 0 and self.channel.holds == 0
        waiter = asyncio.create_task(self.channel.wait_idle())
        self.idle_waiters.append(waiter)
        await asyncio.sleep(0)
        if idle:
            assert waiter.done() and waiter.result()
        await self.settle()

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def state_only_moves_forward(self) -> None:
        self.run(self._state_only_moves_forward())

    async def _state_only_moves_forward(self) -> None:
        state = self.state()
        assert STATE_ORDER[state] >= STATE_ORDER[self.last_state], (self.last_state, state)
        self.last_state = state
        if state is not ChannelState.OPEN:
            assert all(handle.closed for handle in self.handles)

    @invariant()
    def in_flight_matches_the_model(self) -> None:
        self.run(self._in_flight_matches_the_model())

    async def _in_flight_matches_the_model(self) -> None:
        not_done = [call for call in self.calls if not call.call.done()]
        assert self.channel.in_flight == len(not_done), (self.channel.in_flight, not_done)
        for call in self.calls:
            if call.caller.done():  # a caller that was answered left no call on the books
                assert call.call.done(), (call.kind, call.mode, answer(call.caller))

    @invariant()
    def holds_match_the_model(self) -> None:
        self.run(self._holds_match_the_model())

    async def _holds_match_the_model(self) -> None:
        if self.state() is ChannelState.CLOSED:
            assert self.channel.holds == 0
        else:
            assert self.channel.holds == sum(not hold.released_by_model for hold in self.holds)

    @invariant()
    def closed_means_idle(self) -> None:
        self.run(self._closed_means_idle())

    async def _closed_means_idle(self) -> None:
        if self.state() is ChannelState.CLOSED:
            assert self.channel.in_flight == 0
            assert self.drain is not None

    @invariant()
    def connections_match_the_rotations(self) -> None:
        self.run(self._connections_match_the_rotations())

    async def _connections_match_the_rotations(self) -> None:
        # Each old connection reports (drain listener) in the same step as it stops counting;
        # the close's own report comes last, once every connection has closed.
        connections, rotations = self.channel.connections, self.channel.rotations
        assert rotations == len(self.rotation_log)
        retired = len(self.drain_reports)
        if self.state() is not ChannelState.CLOSED:
            assert connections == 1 + rotations - retired >= 1, (connections, rotations, retired)
        elif self.drain is not None and self.drain.task.done():
            assert connections == 0, connections
        else:  # CLOSED: the current connection counts no more; the close may have reported
            assert connections in (rotations - retired, rotations - retired + 1), (
                connections,
                rotations,
                retired,
            )

    @invariant()
    def every_answer_is_typed(self) -> None:
        self.run(self._every_answer_is_typed())

    async def _every_answer_is_typed(self) -> None:
        for call in self.calls:
            result = answer(call.caller)
            if call.owner_cancelled:
                assert result == "CancelledError", result
            elif result == "CancelledError":
                raise AssertionError(f"a bare CancelledError reached a {call.kind} caller")
            elif result == "DrainTimeoutError":
                assert self.may_have_timed_out(call), "DrainTimeoutError before its deadline"
            elif result == "ChannelClosedError":
                assert call.interrupted is not None, f"a {call.kind} caller was interrupted"
            elif call.mode == "bad":
                assert result == "local TypeError", result
            else:
                assert result in ("ok", "pending"), result
                assert result == "pending" or call.interrupted is None, "interrupted, yet ok"

    @invariant()
    def nobody_hangs(self) -> None:
        self.run(self._nobody_hangs())

    async def _nobody_hangs(self) -> None:
        # Only callers already due: waiting for the others would end every drain and rotation
        # before the next rule, and the machine would never see them overlap.
        now = self.loop.time()
        overdue = [
            (call.kind, call.mode)
            for call in self.calls
            if not call.caller.done() and (by := self.answer_by(call)) is not None and by <= now
        ]
        assert overdue == [], f"callers still waiting {ANSWER_SLACK}s after their deadline"

    def teardown(self) -> None:
        try:
            for index, handle in enumerate(self.handles):
                if not handle.closed:
                    self.close(index, 0.0)
            if self.drain is not None and self.drain.report is None:
                self.await_drain()
        finally:
            self.run(self._stop())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.loop_thread.join(timeout=STEP_TIMEOUT)
            self.loop.close()
            if self._other_loop is not None and self._other_thread is not None:
                self._other_loop.call_soon_threadsafe(self._other_loop.stop)
                self._other_thread.join(timeout=STEP_TIMEOUT)
                self._other_loop.close()

    async def _stop(self) -> None:
        await self.server.stop(0)
        mine: list[asyncio.Future[Any]] = [call.caller for call in self.calls]
        mine += self.idle_waiters
        mine += [rotation.task for rotation in self.rotation_log if rotation.task is not None]
        if self.drain is not None:
            mine.append(self.drain.task)
        leftover = [task for task in mine if not task.done()]
        for task in leftover:
            task.cancel()
        if leftover:
            await asyncio.wait(leftover, timeout=1)
        for stray in self.stray:
            await stray.close(grace=0)
        await self.loop.shutdown_asyncgens()
        # Drop the grpc objects here, on their loop's thread: not later, in the main thread's
        # garbage collection, after their loop has closed.
        self.calls.clear()
        self.holds.clear()
        self.idle_waiters.clear()
        self.built.clear()
        self.stray.clear()
        self.rotation_log.clear()
        self.handles.clear()
        self.drain = None
        gc.collect()


ROTATE_GRACES = (None, 0.0, 0.05, 0.1, 0.2)  # None: the channel's drain_timeout
RAISED: dict[str, type[BaseException]] = {
    "CancelledError": asyncio.CancelledError,
    "RuntimeError": RuntimeError,
}
# What a misbehaving factory hands out, and the error rotate() must refuse it with.
BAD_FACTORY: dict[str, type[Exception]] = {
    "None": TypeError,
    "42": TypeError,
    "a GracefulChannel": TypeError,
    "the channel in use": ValueError,
}


@seed(20261128)
class RotatingChannelModel(ChannelModel):
    """The drain-core machine with rotation (``rotate()`` and ``max_age``) and cancel-on-drain
    (the option, and ``channel.cancel_on_drain(call)``)."""

    @initialize(
        policy=st.sampled_from(["held", "all", "none"]),
        intercepted=st.booleans(),
        drain_timeout=st.sampled_from([0.1, 0.5]),  # also rotate()'s default grace
        cancel_on_drain=st.sampled_from(sorted(CANCEL_ON_DRAIN)),
        max_age=st.sampled_from([None, None, 0.05, 0.2]),
        raising_listener=st.sampled_from([None, *sorted(RAISED)]),
    )
    def open_channel(
        self,
        policy: str,
        intercepted: bool,
        drain_timeout: float,
        cancel_on_drain: str,
        max_age: float | None,
        raising_listener: str | None,
    ) -> None:
        self.policy = policy
        self.run(
            self._open_channel(
                policy,
                intercepted,
                drain_timeout=drain_timeout,
                cancel_on_drain=cancel_on_drain,
                max_age=max_age,
                model_factory=True,
                raising_listener=raising_listener,
            )
        )

    @rule(handle=st.integers(0, 7), bad=st.sampled_from(sorted(BAD_FACTORY)))
    def rotate_with_a_bad_factory(self, handle: int, bad: str) -> None:
        self.steps += 1
        self.run(self._rotate_with_a_bad_factory(self.handles[handle % len(self.handles)], bad))

    async def _rotate_with_a_bad_factory(self, handle: GracefulChannel, bad: str) -> None:
        # In one loop step: a max_age rotation cannot run while the factory misbehaves.
        before = (self.channel.rotations, self.channel.connections, len(self.built))
        self.factory_hands_out = bad
        try:
            await handle.rotate()
        except ChannelClosedError:
            assert self.state() is not ChannelState.OPEN or handle.closed
        except BAD_FACTORY[bad]:
            assert self.state() is ChannelState.OPEN and not handle.closed
        else:
            raise AssertionError(f"rotate() took {bad} from its factory")
        finally:
            self.factory_hands_out = "new"
        assert (self.channel.rotations, self.channel.connections, len(self.built)) == before
        await self.settle()

    @rule(handle=st.integers(0, 7))
    def rotate_onto_the_channel_in_use(self, handle: int) -> None:
        self.steps += 1
        self.run(self._rotate_onto_the_channel_in_use(self.handles[handle % len(self.handles)]))

    async def _rotate_onto_the_channel_in_use(self, handle: GracefulChannel) -> None:
        before = (self.channel.rotations, self.channel.connections)
        try:
            await handle.rotate(self.built[-1])  # every connection comes from the factory
        except ChannelClosedError:
            assert self.state() is not ChannelState.OPEN or handle.closed
        except ValueError:
            assert self.state() is ChannelState.OPEN and not handle.closed
        else:
            raise AssertionError("rotate() onto the grpc channel in use")
        assert (self.channel.rotations, self.channel.connections) == before
        await self.settle()

    @rule()
    def wait_idle_on_another_loop(self) -> None:
        self.steps += 1
        self.run(self._wait_idle_on_another_loop())

    async def _wait_idle_on_another_loop(self) -> None:
        if self._other_loop is None:
            self._other_loop = asyncio.new_event_loop()
            self._other_thread = threading.Thread(
                target=self._other_loop.run_forever, name="model's other loop"
            )
            self._other_thread.start()
        waiting = asyncio.run_coroutine_threadsafe(self.channel.wait_idle(), self._other_loop)
        self.idle_waiters.append(asyncio.wrap_future(waiting))
        await self.settle()

    @rule()
    def drop_a_max_age_channel(self) -> None:
        self.steps += 1
        self.run(self._drop_a_max_age_channel())

    async def _drop_a_max_age_channel(self) -> None:
        target = self.server.target
        raw = grpc.aio.insecure_channel(target)
        dropped = aio.wrap(raw, factory=lambda: grpc.aio.insecure_channel(target), max_age=0.01)
        collected = weakref.ref(raw)
        del raw, dropped  # reference counting frees it at once (no gc.collect(): it is slow)
        assert collected() is None, "a max_age channel dropped without close() lives on"
        await self.settle()

    @rule(
        handle=st.integers(0, 7),
        grace=st.sampled_from(ROTATE_GRACES),
        racing=st.none() | st.sampled_from(KINDS),
    )
    def rotate(self, handle: int, grace: float | None, racing: str | None) -> None:
        self.steps += 1
        self.run(self._rotate(self.handles[handle % len(self.handles)], grace, racing))

    async def _rotate(
        self, handle: GracefulChannel, grace: float | None, racing: str | None
    ) -> None:
        rotating = asyncio.create_task(self._rotating(handle, grace))
        # Started in the same loop step, before rotate() runs: on the connection it retires.
        raced = self.launch(racing, "gate", handle, None) if racing is not None else None
        await asyncio.sleep(0)  # rotate() ran to its first suspension (or raised)
        if rotating.done():
            rotating.result()  # re-raises what it asserted
        if raced is not None:
            await self.arrived(raced)
        await self.answer_interrupted()
        await self.settle()

    async def _rotating(self, handle: GracefulChannel, grace: float | None) -> DrainReport | None:
        admits = self.state() is ChannelState.OPEN and not handle.closed
        number = self.channel.rotations + 1
        seconds = self.channel.drain_timeout if grace is None else grace
        self.rule_rotation = (seconds, self.loop.time())  # for the rotation listener
        try:
            report = await handle.rotate(grace=grace)
        except ChannelClosedError:
            assert not admits, "rotate() refused on an OPEN channel"
            self.rule_rotation = None
            return None
        assert admits, f"rotate() rotated a {self.last_state.value} channel"
        rotation = self.rotation_log[number - 1]
        assert rotation.task is asyncio.current_task()
        rotation.ended_at = self.loop.time()
        return report

    @rule()
    def await_rotation(self) -> None:
        self.steps += 1
        self.run(self._await_rotation())

    async def _await_rotation(self) -> None:
        pending = [r for r in self.rotation_log if r.task is not None and not r.task.done()]
        if not pending:
            return
        rotation = pending[0]
        assert rotation.task is not None
        # Its calls may end meanwhile (delay mode): the due time is re-read as they do.
        while not rotation.task.done() and self.loop.time() < self.rotation_due(rotation):
            await asyncio.wait({rotation.task}, timeout=0.01)
        assert rotation.task.done(), "the old connection's drain overran"
        await self.settle()

    @precondition(lambda self: self.steps >= 4)  # sooner than the drain core: rotations pile up
    @rule(handle=st.integers(0, 7), grace=st.sampled_from(GRACES))
    def close(self, handle: int, grace: float) -> None:
        self.steps += 1
        self.run(self._close(self.handles[handle % len(self.handles)], grace))

    @rule(index=st.integers(0, 63), handle=st.integers(0, 7))
    def mark_cancel_on_drain(self, index: int, handle: int) -> None:
        self.steps += 1
        self.run(self._mark_cancel_on_drain(index, self.handles[handle % len(self.handles)]))

    async def _mark_cancel_on_drain(self, index: int, handle: GracefulChannel) -> None:
        if not self.calls:
            return
        pending = [call for call in self.calls if not call.call.done()]
        model = (pending or self.calls)[index % len(pending or self.calls)]
        in_flight = not model.call.done()
        assert handle.cancel_on_drain(model.call) is model.call
        if in_flight:
            model.cancel_on_drain = True
            retired = model.generation < self.channel.rotations
            if retired or self.state() is not ChannelState.OPEN:  # its drain has started
                self.interrupt(model)
        await self.answer_interrupted()
        await self.settle()


def _run_here_or_in_thread(function: Any, in_thread: bool) -> None:
    if not in_thread:
        function()
        return
    worker = threading.Thread(target=function)
    worker.start()
    worker.join(timeout=STEP_TIMEOUT)
    assert not worker.is_alive()


MACHINE_SETTINGS = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TestChannelModel = ChannelModel.TestCase
TestChannelModel.settings = MACHINE_SETTINGS

TestRotatingChannelModel = RotatingChannelModel.TestCase
TestRotatingChannelModel.settings = settings(
    MACHINE_SETTINGS, max_examples=200, stateful_step_count=40
)
