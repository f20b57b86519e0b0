"""A Hypothesis state machine over a real graceful channel: calls of all four kinds, holds, handles
and closes in any order, checked against a model after every step.

Hypothesis state machines are synchronous, so each machine run owns an event loop running in a
background thread, and every rule and check is a coroutine submitted to it. The loop keeps running
between rules, so drain deadlines pass in real time, as they would in production; each check reads
the channel in one synchronous step on the loop, so nothing moves under it. Each run has its own
real Echo server and channel.

The machine has a fixed seed and no example database: every run of the suite draws the same
sequences of rules (``derandomize`` would too, but explores far less: it draws mostly the first
rule). What the channel does at each step may still vary with timing, so the rules only ever
depend on what the model decided, never on what the channel did (Hypothesis rejects data
generation that changes between runs).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections import Counter
from collections.abc import Coroutine
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

from .calls import KINDS, PassingInterceptor, finish, start

T = TypeVar("T")

# How late a caller the drain aborted may be answered, after the drain deadline.
ANSWER_SLACK = 0.1
BAD_METADATA: dict[str, Any] = {
    "non-str key": ((42, 42),),
    "str value for -bin key": (("k-bin", "v"),),
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


@dataclass
class Drain:
    """What the model knows about the drain once the last handle is closing."""

    in_flight_at_start: int
    earliest_deadline: float  # loop time: the abort may not come before this
    latest_deadline: float  # loop time: callers are answered by this + ANSWER_SLACK
    task: asyncio.Task[Any]  # the close() that started the drain
    ended_at: float | None = None
    report: DrainReport | None = None
    admitted: list[ModelCall] = field(default_factory=list)


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
        self.idle_waiters: list[asyncio.Task[bool]] = []
        self.drain: Drain | None = None
        self.last_state = ChannelState.OPEN
        self.policy = "held"
        self.gates = 0
        self.steps = 0  # rules run: deterministic, unlike what the channel did

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

    async def settle(self) -> None:
        """Ends every rule: once the drain is over, every caller and idle waiter is answered in
        time, and the report agrees with the model."""
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

    def check_report(self, drain: Drain, report: DrainReport) -> None:
        assert report.closed
        assert drain.ended_at is not None
        assert drain.ended_at <= drain.latest_deadline + ANSWER_SLACK, "close() overran"
        rpcs = drain.in_flight_at_start + len(drain.admitted)
        assert report.completed + len(report.cancelled) == rpcs, (report, rpcs)
        aborted = [call for call in self.calls if answer(call.caller) == "DrainTimeoutError"]
        racing = [call for call in self.calls if call.owner_cancelled]
        assert len(aborted) <= len(report.cancelled) <= len(aborted) + len(racing), report
        if report.cancelled or report.abandoned_holds:
            assert self.drain_deadline_passed(drain), "aborted before the deadline"
        abandoned = [hold for hold in self.holds if not hold.released_by_model]
        assert report.abandoned_holds == len(abandoned), report
        assert report.drained == (not report.cancelled and not report.abandoned_holds)
        reported = Counter(info.kind for info in report.cancelled)
        assert Counter(call.kind for call in aborted) <= reported, report

    def drain_deadline_passed(self, drain: Drain) -> bool:
        return drain.ended_at is not None and drain.ended_at >= drain.earliest_deadline

    # -- rules ----------------------------------------------------------------------------------

    @initialize(policy=st.sampled_from(["held", "all", "none"]), intercepted=st.booleans())
    def open_channel(self, policy: str, intercepted: bool) -> None:
        self.policy = policy
        self.run(self._open_channel(policy, intercepted))

    async def _open_channel(self, policy: str, intercepted: bool) -> None:
        # On the loop: a grpc.aio channel belongs to the loop it is created on.
        self.handles.append(
            aio.insecure_channel(
                self.server.target,
                interceptors=[PassingInterceptor()] if intercepted else None,
                drain_timeout=STEP_TIMEOUT,
                admit_during_drain=policy,  # type: ignore[arg-type]
            )
        )

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
        hold = self.held_by(held)
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
            return
        assert expected, f"the channel admitted a call it must refuse ({self.state()})"
        caller = asyncio.create_task(finish(call, kind))  # a task other than the starter's
        model = ModelCall(kind, mode, call, caller, gate)
        self.admitted(model)
        if mode == "gate":  # until the server holds it, or it ended (the drain aborted it)
            arrived = asyncio.ensure_future(self.server.wait_arrivals(gate))
            await asyncio.wait({arrived, caller}, return_when=asyncio.FIRST_COMPLETED)
            arrived.cancel()
        elif mode == "bad":
            await asyncio.wait({caller})
            result = answer(caller)
            assert result == "local TypeError", result
        await self.settle()

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
        assert answer(call.caller) in ("ok", "DrainTimeoutError"), answer(call.caller)
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
                in_flight = sum(not call.call.done() for call in self.calls)
                earliest = self.loop.time() + grace
                task = asyncio.current_task()
                assert task is not None
                self.drain = Drain(in_flight, earliest, earliest + 0.01, task)
                task.add_done_callback(self._drain_ended)
            elif self.drain is not None and self.drain.report is None:
                earliest = self.loop.time() + grace
                self.drain.earliest_deadline = min(self.drain.earliest_deadline, earliest)
                self.drain.latest_deadline = min(self.drain.latest_deadline, earliest + 0.01)
            return await handle.close(grace)

        drain_before = self.drain
        task = asyncio.create_task(closing())
        await asyncio.sleep(0)
        assert handle.closed
        if not last and drain_before is None:
            report = await task
            assert not report.closed and report.completed == 0
        elif drain_before is not None and drain_before.report is not None:
            assert await task is drain_before.report  # repeat closes get the final report
        await self.settle()

    def _drain_ended(self, task: asyncio.Task[Any]) -> None:
        assert self.drain is not None
        self.drain.ended_at = self.loop.time()

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
                assert self.state() is ChannelState.CLOSED
            elif call.mode == "bad":
                assert result == "local TypeError", result
            else:
                assert result in ("ok", "pending"), result

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

    async def _stop(self) -> None:
        await self.server.stop(0)
        mine: list[asyncio.Task[Any]] = [call.caller for call in self.calls]
        mine += self.idle_waiters
        if self.drain is not None:
            mine.append(self.drain.task)
        leftover = [task for task in mine if not task.done()]
        for task in leftover:
            task.cancel()
        if leftover:
            await asyncio.wait(leftover, timeout=1)
        await self.loop.shutdown_asyncgens()


def _run_here_or_in_thread(function: Any, in_thread: bool) -> None:
    if not in_thread:
        function()
        return
    worker = threading.Thread(target=function)
    worker.start()
    worker.join(timeout=STEP_TIMEOUT)
    assert not worker.is_alive()


TestChannelModel = ChannelModel.TestCase
TestChannelModel.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
