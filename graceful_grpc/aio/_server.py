"""GracefulServer: a grpc.aio server whose stop drains its handlers, load balancers told first.

Its clients lose no call to the stop: a drain says NOT_SERVING, keeps serving for the unready
delay, holds the last answers back until grpc's stop has sent its GOAWAY (grpc cancels any RPC
that reaches a stopping server, and a client reads that GOAWAY before the held answer, so it
sends its next call elsewhere), then waits for every handler under one deadline.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from typing import Any

import grpc
from grpc import aio

from .._validation import check_seconds
from ..report import DrainReport
from ..state import ChannelState
from ._channel import GracefulChannel
from ._method_filter import MethodFilter, compile_method_filter
from ._server_drain import ServerDrain
from ._server_handlers import TrackingInterceptor
from ._server_holds import ServerHolds

__all__ = ("GracefulServer", "server")


class GracefulServer(aio.Server):
    """A grpc.aio server (``isinstance(server, grpc.aio.Server)``) whose ``stop()`` drains.

    Every handler is tracked from its start to its coroutine's real end, whatever its kind and
    however it ends (returns, raises, aborts, its client cancels). ``stop()`` says NOT_SERVING
    on the health servicer, keeps serving for ``unready_delay`` so that load balancers move
    away, interrupts the ``cancel_on_drain`` handlers (watches) with UNAVAILABLE, holds the last
    answers back until grpc's stop has sent its GOAWAY, then waits for every handler under one
    deadline, and returns a DrainReport.

    Create one with ``graceful_grpc.aio.server()``.
    """

    def __init__(self, grpc_server: aio.Server, drain: ServerDrain, holds: ServerHolds) -> None:
        """Used by ``server()``: owns ``grpc_server``, whose handlers ``drain`` tracks and run
        held on ``holds``."""
        self._server = grpc_server
        self._drain = drain
        self._holds = holds

    # -- the drain --------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Handlers running now (a handler counts until its coroutine or function has ended)."""
        return self._drain.in_flight

    @property
    def state(self) -> ChannelState:
        """OPEN until ``stop()``, DRAINING while it runs, CLOSED once it has returned."""
        return self._drain.state

    @property
    def drain_timeout(self) -> float:
        """The default deadline of ``stop()``, in seconds."""
        return self._drain.drain_timeout

    @property
    def unready_delay(self) -> float:
        """Seconds ``stop()`` keeps serving after saying NOT_SERVING."""
        return self._drain.unready_delay

    def add_drain_listener(self, listener: Callable[[DrainReport], object]) -> None:
        """Calls ``listener(report)`` once, when the drain finishes, before ``stop()`` returns.

        An exception from a listener is logged on logger ``graceful_grpc``, never raised.

        Raises:
            TypeError: ``listener`` is not callable.
        """
        self._drain.listeners.add(listener)

    def remove_drain_listener(self, listener: Callable[[DrainReport], object]) -> None:
        """Removes a listener added with ``add_drain_listener``.

        Raises:
            ValueError: ``listener`` was not added.
        """
        self._drain.listeners.remove(listener)

    async def wait_draining(self) -> None:
        """Returns when ``stop()`` has begun (at once if it has)."""
        await self._drain.wait_draining()

    async def stop(self, grace: float | None = None) -> DrainReport:  # type: ignore[override]
        """Drains and stops the server, within ``grace`` seconds.

        In order: state DRAINING and ``health.enter_graceful_shutdown()`` (every service
        NOT_SERVING); handlers of ``cancel_on_drain`` methods in flight, or started from now on,
        end at once with UNAVAILABLE (a health Watch right after it has sent NOT_SERVING); for
        ``unready_delay`` seconds new RPCs are still accepted and served; the GOAWAY settle
        overlaps its last 100 ms: handlers that finish from then on keep their answer until
        grpc's stop has sent its GOAWAY, and the stop begins when ``unready_delay`` ends and at
        least 100 ms after the latest answer sent during the drain (or after the drain's start):
        the time that answer's client may take to send its next request; then grpc's own stop
        (no new RPCs) and a wait until every handler's coroutine has ended - also the ones grpc
        no longer waits for, such as a handler still in its ``finally`` after ``abort()``. At
        the deadline the handlers still running are cancelled and listed in
        ``report.cancelled``. Last, the server lets go of its handles on the ``holds`` channels
        (see ``server()``), waiting, until the deadline, for a connection whose last handle that
        was to drain.

        The settle is there because grpc cancels every RPC that reaches the server after its
        stop began (grpc/grpc#41785), and a client keeps sending on its connection until the
        stop's GOAWAY reaches it - behind an L4 balancer, every client of this server: a client
        that sends its next call when an answer arrives reads the GOAWAY first, and sends it
        elsewhere. A client that sends on its own clock can still race the GOAWAY; giving the
        server ``grpc.max_connection_age_ms`` shorter than ``unready_delay`` (minus the
        balancer's probe interval) moves every client off before grpc's stop.

        Unlike grpc's ``stop(None)``, which cancels everything at once, ``grace=None`` means
        ``drain_timeout``; ``grace=0`` cancels at once. Concurrent and repeated calls get the same
        report; a shorter grace brings the deadline forward; cancelling the awaiting task does not
        stop the drain.

        Returns:
            The drain's report: ``completed`` handlers that ended on their own during the drain,
            ``interrupted`` (cancel-on-drain, not counted as cancelled), ``cancelled`` at the
            deadline (``drained`` False).

        Raises:
            ValueError: ``grace`` negative, NaN or infinite.
        """
        seconds = self.drain_timeout if grace is None else check_seconds(grace, "grace")
        return await asyncio.shield(self._drain.stop(seconds))

    # -- grpc.aio.Server ----------------------------------------------------------------------

    def add_generic_rpc_handlers(
        self, generic_rpc_handlers: Sequence[grpc.GenericRpcHandler]
    ) -> None:
        """As grpc.aio: registers generic handlers (before ``start()``)."""
        self._server.add_generic_rpc_handlers(generic_rpc_handlers)

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        """As grpc.aio: registers a service's method handlers (generated code calls this)."""
        self._server.add_registered_method_handlers(service_name, method_handlers)

    def add_insecure_port(self, address: str) -> int:
        """As grpc.aio: opens an insecure port; returns the port number."""
        return int(self._server.add_insecure_port(address))

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        """As grpc.aio: opens a secure port; returns the port number."""
        return int(self._server.add_secure_port(address, server_credentials))

    async def start(self) -> None:
        """As grpc.aio: starts serving (once); from now until the end of ``stop()``'s drain the
        server keeps a handle of its own on each ``holds`` channel.

        Raises:
            RuntimeError: ``stop()`` was called.
        """
        if self._drain.state is not ChannelState.OPEN:
            raise RuntimeError("cannot start a stopped graceful_grpc server: make a new one")
        await self._server.start()
        self._holds.take()

    async def wait_for_termination(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """As grpc.aio: waits until grpc's server has stopped; True if ``timeout`` passed first."""
        return bool(await self._server.wait_for_termination(timeout))

    def __repr__(self) -> str:
        return f"<GracefulServer {self.state.value} in_flight={self.in_flight}>"


def server(
    migration_thread_pool: Executor | None = None,
    handlers: Sequence[grpc.GenericRpcHandler] | None = None,
    interceptors: Sequence[Any] | None = None,
    options: Sequence[tuple[str, Any]] | None = None,
    maximum_concurrent_rpcs: int | None = None,
    compression: grpc.Compression | None = None,
    *,
    drain_timeout: float = 30.0,
    unready_delay: float = 0.0,
    health: Any = None,
    cancel_on_drain: MethodFilter = (),
    holds: Iterable[GracefulChannel] = (),
) -> GracefulServer:
    """Creates a GracefulServer: ``grpc.aio.server()``'s arguments, with the same meaning, plus:

    Args:
        drain_timeout: Default deadline of ``stop()``, in seconds.
        unready_delay: Seconds ``stop()`` keeps serving new RPCs after the health servicer says
            NOT_SERVING, so that load balancers and health-checking clients move away first
            (never beyond the deadline). Answers of handlers that finish in its last 100 ms and
            after are held back for the GOAWAY settle (up to 250 ms past its end, see
            ``GracefulServer.stop``) until grpc's stop has sent its GOAWAY.
        health: A ``grpc_health.v1`` HealthServicer, sync or aio (anything with
            ``enter_graceful_shutdown()``); register it on the server yourself as usual.
        cancel_on_drain: Methods whose handlers never end by themselves (watches, long polls):
            full method names and/or predicates on the method name, or one predicate. grpc's
            health Watch (``/grpc.health.v1.Health/Watch``) is always one of them.
        holds: GracefulChannels every handler runs held on (as code inside ``channel.hold()``):
            its downstream calls are admitted while such a channel drains, and the channel's
            drain waits for it. From ``start()`` to the end of ``stop()``'s drain the server
            keeps a handle of its own on each (``share()``), so a ``close()`` of the
            application's handle in that time is not the last (it returns at once, its report
            says ``closed=False``): the connection stays open for the handlers still to come,
            and drains when the server lets go, under the channel's own ``drain_timeout`` (the
            ``stop()`` waits for that until its own deadline; the drain goes on after it). So no
            order of closing refuses a handler's downstream call - unless the channel's
            ``admit_during_drain`` is ``"none"``, which admits no call on a closed handle. A
            server that is started and never stopped keeps its holds channels open.

    Raises:
        ValueError: ``drain_timeout`` or ``unready_delay`` negative, NaN or infinite; a
            malformed method name in ``cancel_on_drain``.
        TypeError: a ``holds`` entry that is not a GracefulChannel; ``health`` without
            ``enter_graceful_shutdown()``; a bad ``cancel_on_drain``; as grpc.aio.server.
    """
    timeout = check_seconds(drain_timeout, "drain_timeout")
    delay = check_seconds(unready_delay, "unready_delay")
    if health is not None and not callable(getattr(health, "enter_graceful_shutdown", None)):
        raise TypeError(
            f"health must be a grpc_health.v1 HealthServicer (with enter_graceful_shutdown()), "
            f"got {type(health).__name__}"
        )
    held = ServerHolds(_check_holds(holds))
    interrupt = compile_method_filter(cancel_on_drain, "cancel_on_drain")
    grpc_server: weakref.ref[aio.Server] | None = None

    async def stop_grpc(grace: float) -> None:
        # Weakly: grpc's running server holds this (through the interceptor), and a strong
        # reference would keep a dropped server serving (grpc's __del__ stops an unreferenced one).
        stopping = grpc_server() if grpc_server is not None else None
        if stopping is not None:
            await stopping.stop(grace)

    drain = ServerDrain(
        drain_timeout=timeout,
        unready_delay=delay,
        health=health,
        cancel_on_drain=interrupt,
        stop_grpc=stop_grpc,
        handlers_done=held.let_go,
    )
    raw = aio.server(
        migration_thread_pool,
        handlers,
        (TrackingInterceptor(drain, held), *(interceptors or ())),
        options,
        maximum_concurrent_rpcs,
        compression,
    )
    grpc_server = weakref.ref(raw)
    return GracefulServer(raw, drain, held)


def _check_holds(holds: Iterable[GracefulChannel]) -> tuple[GracefulChannel, ...]:
    if isinstance(holds, GracefulChannel):
        raise TypeError("holds must be a collection of GracefulChannels, not one: [channel]")
    try:
        held = tuple(holds)
    except TypeError:
        raise TypeError(f"holds must be a collection of GracefulChannels, got {holds!r}") from None
    for channel in held:
        if not isinstance(channel, GracefulChannel):
            raise TypeError(f"holds entries must be GracefulChannels, got {type(channel).__name__}")
    return held
