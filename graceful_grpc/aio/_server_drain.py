"""The server's books of running handlers and its drain: every state decision in one place.

The handler wrappers (``_server_handlers``) report each handler's start and real end here; the
drain (``stop()``) reads the books to decide whom to interrupt, whom to wait for and whom to
cancel. Decisions are synchronous and taken under one lock, because handlers written as plain
functions run on the server's thread pool; everything that waits (the health servicer, grpc's
own stop, the deadline) happens in ``ServerDrain._run``, one task per server.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .._listeners import Listeners
from .._log import logger
from ..report import CallInfo, CallKind, DrainReport
from ..state import ChannelState
from ._method_filter import MethodPredicate

__all__ = ("HEALTH_WATCH", "Handler", "ServerDrain")

HEALTH_WATCH = "/grpc.health.v1.Health/Watch"
"""grpc's health Watch stream: interrupted by default, once it has told its watcher the news."""

GOAWAY_SETTLE = 0.1
"""Seconds the drain allows a client from an answer's departure to its next request's arrival (a
round trip and the client's own time): answers of the handlers that finish later are held until
grpc's stop has sent its GOAWAY (see ``ServerDrain._settle``)."""
SETTLE_MAX = 0.25
GRPC_STOP_BOUND = 1.0
"""At the deadline, the longest the drain waits for grpc's stop (without grace) to finish."""
"""The longest the drain holds answers back (while handlers on the thread pool keep answering)."""


@dataclass(eq=False, slots=True)
class Handler:
    """One running handler, from its start to its coroutine's (or function's) real end.

    Attributes:
        method: The full method name.
        kind: Which of the four RPC kinds.
        started: ``time.monotonic()`` at its start.
        task: The task running it; None for a plain function on the server's thread pool.
        interruptible: Its method is cancel-on-drain.
        notify_first: Interrupt it only after its next write (a health Watch tells its watcher
            NOT_SERVING first).
        wrote_since_drain: It wrote a message after the drain began.
        sending: It is inside a guarded ``write()`` / ``send_initial_metadata()`` now.
        interrupt_pending: The drain wants it interrupted when that send (or, for a health
            Watch or a plain function, its next write) is done.
        interrupted: The drain interrupted it (it ends with UNAVAILABLE).
        cancelled: The drain cancelled it at the deadline.
        ended: Its coroutine (or function) has ended and it left the books.
    """

    method: str
    kind: CallKind
    started: float
    task: asyncio.Task[Any] | None
    interruptible: bool
    notify_first: bool
    wrote_since_drain: bool = False
    sending: bool = False
    interrupt_pending: bool = False
    interrupted: bool = False
    cancelled: bool = False
    ended: bool = field(default=False)

    def info(self, now: float) -> CallInfo:
        return CallInfo(self.method, self.kind, now - self.started)


class ServerDrain:
    """The handler books and the drain of one GracefulServer.

    Args:
        drain_timeout: Default deadline of ``stop()``.
        unready_delay: Seconds to keep serving after the health servicer says NOT_SERVING.
        health: A health servicer (sync or aio) with ``enter_graceful_shutdown()``, or None.
        cancel_on_drain: Which methods are interrupted when the drain starts (None: none but
            the health Watch).
        stop_grpc: grpc's ``Server.stop(grace)``.
        handlers_done: Called once every handler has ended (or was cancelled at the deadline):
            the server lets go of its ``holds`` channels there. Returns futures (closes) that
            the drain then waits for, until its deadline. It must not raise.
    """

    def __init__(
        self,
        *,
        drain_timeout: float,
        unready_delay: float,
        health: Any,
        cancel_on_drain: MethodPredicate | None,
        stop_grpc: Callable[[float], Awaitable[None]],
        handlers_done: Callable[[], Iterable[asyncio.Future[Any]]] | None = None,
    ) -> None:
        self.drain_timeout = drain_timeout
        self.unready_delay = unready_delay
        self._health = health
        self._cancel_on_drain = cancel_on_drain
        self._stop_grpc = stop_grpc
        self._handlers_done = handlers_done
        self.listeners: Listeners[DrainReport] = Listeners("drain")
        self._lock = threading.Lock()
        self._handlers: set[Handler] = set()
        self._interruptible: dict[str, bool] = {}
        self.state = ChannelState.OPEN
        self._completed = 0
        self._interrupted: list[CallInfo] = []
        self._deadline = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._wake = asyncio.Event()
        self._draining = asyncio.Event()
        self._task: asyncio.Task[DrainReport] | None = None
        self._grpc_stops: set[asyncio.Future[None]] = set()  # kept referenced while they run
        self._letting_go: set[asyncio.Future[Any]] = set()  # handlers_done's closes
        self._grpc_deadline: float | None = None
        self.holding = False  # finished handlers wait for released() before they answer
        self._last_end = 0.0  # when the latest handler ended during the drain
        self._released = asyncio.Event()
        self._released_threads = threading.Event()

    @property
    def in_flight(self) -> int:
        return len(self._handlers)

    @property
    def draining(self) -> bool:
        """Whether ``stop()`` has begun."""
        return self.state is not ChannelState.OPEN

    def is_interruptible(self, method: str) -> bool:
        """Whether ``method`` is cancel-on-drain (decided once per method)."""
        known = self._interruptible.get(method)
        if known is None:
            known = method == HEALTH_WATCH or (
                self._cancel_on_drain is not None and bool(self._cancel_on_drain(method))
            )
            if len(self._interruptible) < 10_000:  # method names come from clients
                self._interruptible[method] = known
        return known

    # -- the books (called by the handler wrappers) ----------------------------------------------

    def enter(self, method: str, kind: CallKind, task: asyncio.Task[Any] | None) -> Handler:
        """Books a handler that starts now. If the drain has begun and its method is
        cancel-on-drain, it is marked to be interrupted at once (``interrupted``) - except a
        health Watch before grpc's stop: its first message already says NOT_SERVING, and
        interrupting it would only make a health-checking client (which re-opens at once after a
        message) spin; it is interrupted when grpc's stop begins (a plain generator on the
        thread pool, which cannot be interrupted then, right after its first message)."""
        interruptible = self.is_interruptible(method)
        handler = Handler(
            method,
            kind,
            time.monotonic(),
            task,
            interruptible,
            notify_first=method == HEALTH_WATCH,
        )
        with self._lock:
            self._handlers.add(handler)
            if interruptible and self.state is not ChannelState.OPEN:
                if not (handler.notify_first and self._notices()):
                    self._mark_interrupted(handler)
                elif task is None:  # a thread cannot be interrupted later: after its message
                    handler.interrupt_pending = True
        return handler

    def sent(self, handler: Handler, *, wrote: bool) -> bool:
        """Notes that ``handler`` sent something: ``wrote`` means a message made after the drain
        began (a health Watch's news), False its initial metadata or an older message. True if
        it must now be interrupted (the caller does it)."""
        with self._lock:
            if self.state is ChannelState.OPEN:
                return False
            if wrote:
                handler.wrote_since_drain = True
            waits = handler.notify_first and not handler.wrote_since_drain and self._notices()
            if handler.interrupt_pending and not handler.ended and not waits:
                handler.interrupt_pending = False
                self._mark_interrupted(handler)
                return True
            return False

    def leave(self, handler: Handler) -> None:
        """Unbooks a handler whose coroutine (or function) has really ended."""
        with self._lock:
            if handler.ended:
                return
            handler.ended = True
            self._handlers.discard(handler)
            if self.state is ChannelState.OPEN:
                return
            self._last_end = time.monotonic()
            if not handler.interrupted and not handler.cancelled:
                self._completed += 1
            if self._handlers:
                return
        self._wake_loop()

    # -- the drain --------------------------------------------------------------------------------

    def stop(self, grace: float) -> asyncio.Task[DrainReport]:
        """Starts the drain with deadline ``grace`` from now, or brings a running drain's
        deadline forward to it; returns the drain's task."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + grace
        with self._lock:
            if self._task is None:
                self._loop = loop
                self._loop_thread = threading.get_ident()
                self._deadline = deadline
                self.state = ChannelState.DRAINING
                self._task = loop.create_task(self._run(), name="graceful_grpc server drain")
                return self._task
            if deadline < self._deadline and not self._task.done():
                self._deadline = deadline
                self._wake.set()
            return self._task

    async def wait_draining(self) -> None:
        await self._draining.wait()

    async def released(self) -> None:
        """Returns once the drain lets held responses go (grpc's stop has sent its GOAWAY)."""
        await self._released.wait()

    def released_in_thread(self) -> None:
        """``released()`` for a handler on the server's thread pool (blocks it)."""
        self._released_threads.wait(max(0.0, self._deadline - time.monotonic()))

    async def _run(self) -> DrainReport:
        started = time.monotonic()
        self._draining.set()
        logger.info("server drain started (%d handlers in flight)", self.in_flight)
        self._interrupt(final=False)
        await self._say_not_serving()
        # The hold begins GOAWAY_SETTLE before the unready delay ends, so that grpc's stop can
        # begin right at its end: the settle overlaps the delay instead of following it.
        await self._wait(started + max(0.0, self.unready_delay - GOAWAY_SETTLE), until_idle=False)
        try:
            await self._settle(started, started + self.unready_delay)
        except BaseException:  # the drain's task cancelled (its loop ends): nothing is held
            self._release()
            raise
        self._start_grpc_stop()
        # after the stop's first step (tasks run in order), in which grpc queues its GOAWAY
        asyncio.get_running_loop().call_soon(self._release)
        self._interrupt(final=True)  # watchers that had nothing to say before the stop
        finished = await self._wait(None, until_idle=True)
        cancelled = () if finished else self._cancel_rest()
        if not finished and self._grpc_stops:
            # grpc's stop with no grace left cancels its calls and ends soon: its end, not only
            # its start, comes before the report (a loop closed after stop() would kill it)
            await asyncio.wait(self._grpc_stops, timeout=GRPC_STOP_BOUND)
        if self._handlers_done is not None:
            self._letting_go.update(self._handlers_done())
            await self._wait(None, until_idle=True)  # a shorter grace still cuts it short
        with self._lock:
            self.state = ChannelState.CLOSED
            completed, interrupted = self._completed, tuple(self._interrupted)
        report = DrainReport(
            closed=True,
            drained=not cancelled,
            waited=time.monotonic() - started,
            completed=completed,
            cancelled=cancelled,
            abandoned_holds=0,
            interrupted=interrupted,
        )
        log = logger.info if report.drained else logger.warning
        log("server drain finished: %s", report.summary())
        self.listeners.notify(report)
        return report

    async def _say_not_serving(self) -> None:
        """``health.enter_graceful_shutdown()``, awaited until the deadline if it is a coroutine.

        It is called, and a coroutine takes its first step, even with no time left: a sync
        servicer flips at once, grpc's aio one before its first suspension."""
        if self._health is None:
            return
        try:
            result = self._health.enter_graceful_shutdown()
            if not inspect.isawaitable(result):
                return
            saying = asyncio.ensure_future(result)
            await asyncio.sleep(0)
            if not saying.done():
                await asyncio.wait({saying}, timeout=max(0.0, self._deadline - time.monotonic()))
            if not saying.done():
                logger.warning("health servicer still entering shutdown at deadline")
                saying.cancel()
            elif not saying.cancelled():
                saying.result()  # raises what it raised
        except Exception:
            logger.exception("health servicer's enter_graceful_shutdown() failed")

    async def _wait(self, until: float | None, *, until_idle: bool) -> bool:
        """Waits until ``until`` or the deadline, whichever is first (re-read when a shorter
        grace arrives, which also brings grpc's stop forward). With ``until_idle``, returns True
        as soon as no handler is running and grpc's stop has finished."""
        while True:
            if until_idle and self._idle():
                return True
            deadline = self._deadline
            if self._grpc_deadline is not None and deadline < self._grpc_deadline:
                self._start_grpc_stop()
            remaining = (deadline if until is None else min(until, deadline)) - time.monotonic()
            if remaining <= 0:
                return False
            self._wake.clear()
            wake = asyncio.ensure_future(self._wake.wait())
            waits: set[asyncio.Future[Any]] = {wake}
            if until_idle:
                waits |= self._grpc_stops | self._letting_go
            try:
                await asyncio.wait(waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                wake.cancel()

    async def _settle(self, started: float, unready_end: float) -> None:
        """Holds the answers of the handlers that finish from now on back, and waits until
        ``unready_end`` (new RPCs are still served until then; their answers wait too) and until
        the requests that the answers sent before may have caused have arrived:
        ``GOAWAY_SETTLE`` after the latest answer sent during the drain, which began at
        ``started`` (answers before it are not watched: as if one left then), answers being held
        at most ``SETTLE_MAX`` past ``unready_end``; so that grpc's stop sends its GOAWAY while
        no such request is on its way. (Requests that arrive are no sign: a balancer's health
        probes arrive on their own clock.)

        grpc cancels every RPC that reaches a server after its stop began (its
        ``ShutdownAndNotify`` zombies them: grpc/grpc#41785), and a client with a connection to
        this server (behind an L4 balancer, every client has one) keeps sending there until that
        GOAWAY reaches it. A client that sends its next request when an answer arrives sends none
        while its answer is held; once grpc's stop has queued the GOAWAY, the held answers follow
        it on each connection, so the client reads the GOAWAY first and sends elsewhere."""
        begun = time.monotonic()
        if self._deadline <= begun:
            return
        self.holding = True
        longest = max(begun, unready_end) + SETTLE_MAX
        while True:  # re-read: a thread-pool handler may have answered just before the hold
            settled = min(
                max(self._last_end + GOAWAY_SETTLE, started + GOAWAY_SETTLE, unready_end), longest
            )
            if min(settled, self._deadline) <= time.monotonic():
                return
            await self._wait(settled, until_idle=False)

    def _release(self) -> None:
        self.holding = False
        self._released.set()
        self._released_threads.set()

    def _idle(self) -> bool:
        return (
            not self._handlers
            and all(stop.done() for stop in self._grpc_stops)
            and all(close.done() for close in self._letting_go)
        )

    def _start_grpc_stop(self) -> None:
        """grpc's stop with what is left of the deadline: no new RPCs. Called again when a
        shorter grace arrives: grpc keeps the most restrictive."""
        self._grpc_deadline = self._deadline
        grace = max(0.0, self._deadline - time.monotonic())
        stop = asyncio.ensure_future(self._stop_grpc(grace))
        self._grpc_stops.add(stop)
        stop.add_done_callback(self._grpc_stopped)

    def _grpc_stopped(self, stop: asyncio.Future[None]) -> None:
        if not stop.cancelled() and stop.exception() is not None:
            logger.error("grpc server stop failed", exc_info=stop.exception())
        self._wake.set()

    def _notices(self) -> bool:
        """Whether a health Watch may still tell its watcher before being interrupted: until
        grpc's stop begins."""
        return self._grpc_deadline is None

    def _interrupt(self, *, final: bool) -> None:
        """Interrupts the cancel-on-drain handlers in flight. A health Watch that has not written
        since the drain began is left to its next write (it tells its watcher NOT_SERVING), until
        the ``final`` pass when grpc's stop begins. One inside a send is interrupted when the send
        is done. A plain function on the thread pool cannot be cancelled: it is interrupted at
        its next message."""
        with self._lock:
            for handler in tuple(self._handlers):
                if not handler.interruptible or handler.interrupted:
                    continue
                waits = handler.notify_first and not final and not handler.wrote_since_drain
                if waits or handler.sending or handler.task is None:
                    handler.interrupt_pending = True
                    continue
                handler.interrupt_pending = False
                self._mark_interrupted(handler)
                handler.task.cancel()

    def _mark_interrupted(self, handler: Handler) -> None:
        handler.interrupted = True
        self._interrupted.append(handler.info(time.monotonic()))

    def _cancel_rest(self) -> tuple[CallInfo, ...]:
        """At the deadline: cancels every handler still running, and lists them."""
        now = time.monotonic()
        with self._lock:
            rest = tuple(self._handlers)
            for handler in rest:
                handler.cancelled = True
        for handler in rest:
            logger.warning(
                "server drain deadline: cancelling %s after %.3fs",
                handler.method,
                now - handler.started,
            )
            if handler.task is not None:
                handler.task.cancel()
        return tuple(handler.info(now) for handler in rest)

    def _wake_loop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._wake.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)
