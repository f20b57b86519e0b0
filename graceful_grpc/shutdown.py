"""ShutdownSequence: stop intake, let work finish, close connections last - under one budget.

The generic form of Temporal's own fix for results lost at shutdown: steps run in order, each
within min(its own timeout, what remains of the budget); a failing or overrunning step is recorded
and the later steps still run, so the channel still closes. A step that will not stop when
cancelled is abandoned, still running, so that the budget holds. A second signal forces the rest.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from ._listeners import Listeners
from ._log import logger
from ._validation import check_seconds
from .aio import GracefulChannel, GracefulServer
from .report import DrainReport

__all__ = ("ShutdownReport", "ShutdownSequence", "StepResult")

Outcome = Literal["ok", "timeout", "error", "abandoned"]

# How the sequence was started, as a signal's log line names it (signals by their own name).
_TRIGGERS = {"run": "run()", "force": "force()"}

# How long a step cancelled for overrunning may take to stop before it is abandoned, still running.
_STOP_GRACE = 0.01


@dataclass(frozen=True, slots=True)
class StepResult:
    """How one step went.

    Attributes:
        name: The step's name.
        outcome: ``"ok"``; ``"timeout"`` (it overran its time, or was cut short by a forced
            shutdown, and stopped when cancelled; for a channel or server step: its drain did not
            drain - calls cancelled or holds abandoned at its grace); ``"abandoned"`` (it overran
            and did not stop when cancelled: it is left running); or ``"error"`` (it raised, or
            was cancelled from elsewhere).
        duration: Seconds the step took.
        error: The exception it raised, for ``"error"``.
        drain: The DrainReport of a step that closes a GracefulChannel or stops a
            GracefulServer, or that any other step returned; None otherwise.
    """

    name: str
    outcome: Outcome
    duration: float
    error: BaseException | None = None
    drain: DrainReport | None = None


@dataclass(frozen=True, slots=True)
class ShutdownReport:
    """What the sequence did.

    Attributes:
        steps: One result per step, in order.
        duration: Seconds from start to end.
        forced: A second signal (or ``force()``) cut the sequence short.
        trigger: What started it: a signal name, ``"run"``, or ``"force"``.
    """

    steps: tuple[StepResult, ...]
    duration: float
    forced: bool
    trigger: str

    def __getitem__(self, name: str) -> StepResult:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    @property
    def ok(self) -> bool:
        """Every step finished in time without error."""
        return all(step.outcome == "ok" for step in self.steps)


@dataclass(slots=True)
class _Step:
    name: str
    action: Callable[[], Awaitable[Any]]
    timeout: float | None


class ShutdownSequence:
    """Runs shutdown steps in order under one time budget, once, on a signal or ``run()``.

    Example:
        seq = ShutdownSequence(timeout=60.0)
        seq.add("stop worker", worker.shutdown, timeout=30.0)
        seq.add("close channel", client.service_client.channel.close)
        seq.install_signal_handlers()
        report = await seq.wait()

    A channel step (``add_channel``, or ``add`` with a ``GracefulChannel``'s bound ``close`` or a
    ``functools.partial`` of it without arguments) is called with
    ``grace=min(channel.drain_timeout, the step's time)``, so it returns its DrainReport within the
    budget rather than being cut off; when forced, with ``grace=0``. A server step (``add_server``,
    or ``add`` with a ``GracefulServer``'s bound ``stop``) is called the same way. A lambda around
    ``close`` is an ordinary step: use ``add_channel`` for it.

    A step that overruns is cancelled; one that does not stop then (it swallows the cancellation)
    is abandoned - left running, recorded as ``"abandoned"`` and logged - so that the later steps,
    above all the channel closes, still run on time: the sequence takes at most its budget plus a
    few milliseconds.

    Args:
        timeout: The budget for all steps together, in seconds.

    Raises:
        ValueError: ``timeout`` not positive and finite.
    """

    def __init__(self, timeout: float) -> None:
        self._budget = check_seconds(timeout, "timeout", positive=True)
        self._steps: list[_Step] = []
        self._forced = False
        self._force_event: asyncio.Event | None = None
        self._run: asyncio.Task[ShutdownReport] | None = None
        self._trigger_event: asyncio.Event | None = None
        self._trigger = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._signals: list[int] = []
        self._step_listeners: Listeners[StepResult] = Listeners("shutdown step")
        self._previous_handlers: dict[int, Any] = {}
        self._abandoned: set[asyncio.Future[Any]] = set()  # kept referenced while they run

    @property
    def started(self) -> bool:
        """Whether the sequence has started."""
        return self._run is not None

    @property
    def forced(self) -> bool:
        """Whether the sequence was forced (second signal or ``force()``)."""
        return self._forced

    def add(
        self, name: str, step: Callable[[], Awaitable[Any]], *, timeout: float | None = None
    ) -> None:
        """Appends a step: an async callable taking no arguments.

        Raises:
            ValueError: duplicate ``name``, ``timeout`` not positive and finite, or the sequence
                has started.
        """
        if self.started:
            raise ValueError("cannot add steps to a ShutdownSequence that has started")
        if any(existing.name == name for existing in self._steps):
            raise ValueError(f"duplicate step name {name!r}")
        if not callable(step):
            raise TypeError(f"step {name!r} must be an async callable")
        seconds = None if timeout is None else check_seconds(timeout, "timeout", positive=True)
        self._steps.append(_Step(name, step, seconds))

    def add_channel(
        self, name: str, channel: GracefulChannel, *, timeout: float | None = None
    ) -> None:
        """Appends a step that closes ``channel`` with a grace taken from the budget.

        The same as ``add(name, channel.close, timeout=timeout)``.

        Raises:
            TypeError: ``channel`` is not a GracefulChannel.
            ValueError: as ``add``.
        """
        if not isinstance(channel, GracefulChannel):
            raise TypeError(f"channel must be a GracefulChannel, got {type(channel).__name__}")
        self.add(name, channel.close, timeout=timeout)

    def add_server(
        self, name: str, server: GracefulServer, *, timeout: float | None = None
    ) -> None:
        """Appends a step that stops ``server`` with a grace taken from the budget:
        ``server.stop(grace=min(server.drain_timeout, the step's time))``, ``grace=0`` when
        forced. The same as ``add(name, server.stop, timeout=timeout)``.

        Raises:
            TypeError: ``server`` is not a GracefulServer.
            ValueError: as ``add``.
        """
        if not isinstance(server, GracefulServer):
            raise TypeError(f"server must be a GracefulServer, got {type(server).__name__}")
        self.add(name, server.stop, timeout=timeout)

    def add_step_listener(self, listener: Callable[[StepResult], object]) -> None:
        """Calls ``listener(result)`` as each step finishes, in order.

        An exception from a listener (any short of KeyboardInterrupt and SystemExit,
        CancelledError included) is logged on logger ``graceful_grpc`` and never stops the
        sequence.

        Raises:
            TypeError: ``listener`` is not callable.
            ValueError: ``listener`` (or one equal to it) is already added.
        """
        self._step_listeners.add(listener)

    def remove_step_listener(self, listener: Callable[[StepResult], object]) -> None:
        """Removes a listener added with ``add_step_listener``.

        Raises:
            ValueError: ``listener`` was not added.
        """
        self._step_listeners.remove(listener)

    def install_signal_handlers(
        self, signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT)
    ) -> None:
        """On the running loop: the first signal starts the sequence, the next one forces it.

        Every signal is checked before any handler is installed.

        Raises:
            TypeError: ``signals`` is not an iterable of ints, or holds a bool.
            ValueError: a number that is no signal, or one that cannot be caught (SIGKILL,
                SIGSTOP).
        """
        checked = _check_signals(signals)
        loop = self._bind_loop()
        installed: list[int] = []
        try:
            for signum in checked:
                previous = signal.getsignal(signum)
                loop.add_signal_handler(signum, self._on_signal, signum)
                self._previous_handlers.setdefault(signum, previous)
                installed.append(signum)
        except BaseException:  # e.g. not the main thread: leave nothing half installed
            for signum in installed:
                loop.remove_signal_handler(signum)
                previous = self._previous_handlers.pop(signum, None)
                if previous is not None:
                    signal.signal(signum, previous)
            raise
        self._signals += installed

    def remove_signal_handlers(self) -> None:
        """Removes the handlers and restores the Python-level handlers the signals had before
        (asyncio alone would leave the default action). A handler that was installed outside
        Python cannot be restored; such a signal gets its default action."""
        if self._loop is not None:
            for signum in self._signals:
                self._loop.remove_signal_handler(signum)
                previous = self._previous_handlers.pop(signum, None)
                if previous is not None:
                    signal.signal(signum, previous)
        self._signals.clear()

    async def run(self) -> ShutdownReport:
        """Starts the sequence now (if not already started) and returns its report."""
        self._start("run")
        assert self._run is not None
        return await asyncio.shield(self._run)

    async def wait(self) -> ShutdownReport:
        """Waits for the sequence to be started (by a signal or ``run()``) and to finish."""
        self._bind_loop()
        assert self._trigger_event is not None
        await self._trigger_event.wait()
        assert self._run is not None
        return await asyncio.shield(self._run)

    def force(self) -> None:
        """Cuts the sequence short: the current step stops, the rest get zero time, and channels
        close with ``grace=0``. Starts the sequence if it has not started."""
        self._forced = True
        if not self.started:
            self._start("force")
        if self._force_event is not None:
            self._force_event.set()

    # -- internals -------------------------------------------------------------------------------

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._trigger_event = asyncio.Event()
            self._force_event = asyncio.Event()
        elif self._loop is not loop:
            raise RuntimeError("ShutdownSequence is bound to another event loop")
        return loop

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if not self.started:
            logger.info("%s received: shutting down", name)
            self._start(name)
            return
        started_by = _TRIGGERS.get(self._trigger, self._trigger)
        if self._run is not None and self._run.done():
            logger.info(
                "%s received after the shutdown (started by %s) finished: ignored", name, started_by
            )
        elif self._forced:
            logger.warning(
                "%s received while shutting down (started by %s): already forcing", name, started_by
            )
        else:
            logger.warning(
                "%s received while shutting down (started by %s): forcing", name, started_by
            )
            self.force()

    def _start(self, trigger: str) -> None:
        if self.started:
            return
        loop = self._bind_loop()
        self._trigger = trigger
        self._run = loop.create_task(self._run_steps(), name="graceful_grpc shutdown")
        assert self._trigger_event is not None
        self._trigger_event.set()

    async def _run_steps(self) -> ShutdownReport:
        started = time.monotonic()
        deadline = started + self._budget
        results = []
        for step in self._steps:
            remaining = 0.0 if self._forced else max(0.0, deadline - time.monotonic())
            allowed = remaining if step.timeout is None else min(step.timeout, remaining)
            result = await self._run_step(step, allowed)
            results.append(result)
            self._step_listeners.notify(result)
        report = ShutdownReport(
            steps=tuple(results),
            duration=time.monotonic() - started,
            forced=self._forced,
            trigger=self._trigger,
        )
        logger.info(
            "shutdown finished in %.3fs (%s): %s",
            report.duration,
            "forced" if report.forced else "in order",
            ", ".join(f"{s.name}={s.outcome}" for s in report.steps),
        )
        return report

    async def _run_step(self, step: _Step, allowed: float) -> StepResult:
        logger.info("shutdown step %r (up to %.3fs)", step.name, allowed)
        started = time.monotonic()
        channel = _drained_owner(step.action)
        try:
            if channel is not None:
                return await self._close_channel(step, channel, allowed, started)
            value = await self._until_forced(step.action(), allowed)
        except TimeoutError:
            logger.warning("shutdown step %r ran out of time", step.name)
            return StepResult(step.name, "timeout", time.monotonic() - started)
        except _Abandoned:
            logger.warning(
                "shutdown step %r ran out of time and did not stop when "
                "cancelled; abandoned, still running",
                step.name,
            )
            return StepResult(step.name, "abandoned", time.monotonic() - started)
        except asyncio.CancelledError as error:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the sequence itself is being cancelled
            logger.warning("shutdown step %r was cancelled", step.name)
            return StepResult(step.name, "error", time.monotonic() - started, error=error)
        except Exception as error:
            logger.warning("shutdown step %r failed: %r", step.name, error)
            return StepResult(step.name, "error", time.monotonic() - started, error=error)
        drain = value if isinstance(value, DrainReport) else None
        return StepResult(step.name, "ok", time.monotonic() - started, drain=drain)

    async def _close_channel(
        self, step: _Step, channel: GracefulChannel | GracefulServer, allowed: float, started: float
    ) -> StepResult:
        """Closes a channel, or stops a server (the same drain under a grace)."""
        close = channel.close if isinstance(channel, GracefulChannel) else channel.stop
        grace = 0.0 if self._forced else min(channel.drain_timeout, allowed)
        closing = asyncio.ensure_future(close(grace=grace))
        assert self._force_event is not None
        forced = asyncio.ensure_future(self._force_event.wait())
        try:
            await asyncio.wait({closing, forced}, return_when=asyncio.FIRST_COMPLETED)
            if not closing.done():  # forced mid-drain: bring the deadline forward to now
                await close(grace=0)
            report = await closing
        except Exception as error:
            return StepResult(step.name, "error", time.monotonic() - started, error=error)
        finally:
            forced.cancel()
        outcome: Outcome = "ok" if report.drained else "timeout"
        return StepResult(step.name, outcome, time.monotonic() - started, drain=report)

    async def _until_forced(self, awaitable: Awaitable[Any], allowed: float) -> Any:
        """Awaits ``awaitable`` for at most ``allowed`` seconds, or until forced.

        Raises:
            TimeoutError: it overran and stopped when cancelled.
            _Abandoned: it overran and did not stop within ``_STOP_GRACE`` of its cancellation.
        """
        task = asyncio.ensure_future(awaitable)
        assert self._force_event is not None
        forced = asyncio.ensure_future(self._force_event.wait())
        try:
            done, _ = await asyncio.wait(
                {task, forced}, timeout=allowed, return_when=asyncio.FIRST_COMPLETED
            )
            if task not in done:
                task.cancel()
                stopped, _ = await asyncio.wait({task}, timeout=_STOP_GRACE)
                if not stopped:
                    self._abandoned.add(task)
                    task.add_done_callback(self._abandoned.discard)
                    raise _Abandoned
                raise TimeoutError
            return task.result()
        finally:
            forced.cancel()


def _check_signals(signals: Iterable[int]) -> list[int]:
    if isinstance(signals, int | str | bytes) or not isinstance(signals, Iterable):
        raise TypeError(f"signals must be an iterable of signal numbers, got {signals!r}")
    catchable = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}
    checked = []
    for signum in signals:
        if isinstance(signum, bool) or not isinstance(signum, int):
            raise TypeError(f"signals must be signal numbers, got {signum!r}")
        if signum not in catchable:
            raise ValueError(f"{signum!r} is not a signal that can be caught")
        checked.append(int(signum))
    return checked


class _Abandoned(Exception):
    """A step overran and did not stop when cancelled."""


def _drained_owner(action: Callable[[], Awaitable[Any]]) -> GracefulChannel | GracefulServer | None:
    """The channel or server, if ``action`` is a GracefulChannel's bound ``close`` or a
    GracefulServer's bound ``stop`` (or a partial of one that passes no arguments)."""
    if isinstance(action, functools.partial) and not action.args and not action.keywords:
        action = action.func
    owner = getattr(action, "__self__", None)
    function = getattr(action, "__func__", None)
    if isinstance(owner, GracefulChannel) and function is GracefulChannel.close:
        return owner
    if isinstance(owner, GracefulServer) and function is GracefulServer.stop:
        return owner
    return None
