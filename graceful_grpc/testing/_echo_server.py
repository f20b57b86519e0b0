"""An asyncio echo server implementing graceful_grpc.testing.v1.Echo, for tests, demos, benchmarks.

Tests synchronise with it through *gates*: a request whose ``behaviour.gate`` names a gate is held
by the server until the test opens that gate, and the test can await the request's arrival. That
makes "a call is in flight on the server" an event rather than a sleep.
"""

from __future__ import annotations

import asyncio
from collections import Counter as _Tally
from collections.abc import AsyncIterator
from types import TracebackType
from typing import NamedTuple

import grpc
from grpc import aio

from .v1 import echo_pb2, echo_pb2_grpc

__all__ = ("EchoServer", "Invocation")

_STATUS_BY_NUMBER = {status.value[0]: status for status in grpc.StatusCode}

# grpc core cancels incoming calls beyond 1000 (hard limit 3000) not yet accepted by the
# application; the asyncio server accepts them one at a time, so a burst of thousands of streams
# (the mass-cancel benchmark) would see some cancelled by the server itself.
SERVER_OPTIONS = (
    ("grpc.server.max_pending_requests", 100_000),
    ("grpc.server.max_pending_requests_hard_limit", 100_000),
)


class _EchoService(echo_pb2_grpc.EchoServicer):
    def __init__(self, server: EchoServer) -> None:
        self._server = server

    async def _behave(
        self, request: echo_pb2.EchoRequest, context: aio.ServicerContext[object, object]
    ) -> None:
        """Applies the gate and delay of a request; aborts if it asks to fail."""
        behaviour = request.behaviour
        await self._server._pass_gate(behaviour.gate)
        if behaviour.delay_ms:
            await asyncio.sleep(behaviour.delay_ms / 1000)
        await self._maybe_fail(behaviour, context)

    @staticmethod
    async def _maybe_fail(
        behaviour: echo_pb2.Behaviour, context: aio.ServicerContext[object, object]
    ) -> None:
        if behaviour.fail_code:
            code = _STATUS_BY_NUMBER.get(behaviour.fail_code, grpc.StatusCode.UNKNOWN)
            await context.abort(code, behaviour.fail_message or f"asked to fail with {code.name}")

    async def Unary(
        self, request: echo_pb2.EchoRequest, context: aio.ServicerContext[object, object]
    ) -> echo_pb2.EchoResponse:
        self._server.invocations.append(Invocation.of("Unary", request, context))
        await self._behave(request, context)
        self._server.delivered.append(request.message)
        return echo_pb2.EchoResponse(message=request.message)

    async def ServerStream(
        self, request: echo_pb2.EchoRequest, context: aio.ServicerContext[object, object]
    ) -> AsyncIterator[echo_pb2.EchoResponse]:
        self._server.invocations.append(Invocation.of("ServerStream", request, context))
        behaviour = request.behaviour
        # The stream is established (the client's wait_for_connection() returns) before any delay.
        await context.send_initial_metadata(())
        await self._server._pass_gate(behaviour.gate)
        if behaviour.delay_ms:
            await asyncio.sleep(behaviour.delay_ms / 1000)
        for index in range(behaviour.count or 1):
            if index and behaviour.interval_ms:
                await asyncio.sleep(behaviour.interval_ms / 1000)
            yield echo_pb2.EchoResponse(message=request.message, index=index)
        await self._maybe_fail(behaviour, context)

    async def ClientStream(
        self,
        request_iterator: AsyncIterator[echo_pb2.EchoRequest],
        context: aio.ServicerContext[object, object],
    ) -> echo_pb2.EchoResponse:
        messages: list[str] = []
        first: echo_pb2.EchoRequest | None = None
        async for request in request_iterator:
            first = first or request
            messages.append(request.message)
        if first is not None:
            await self._behave(first, context)
        return echo_pb2.EchoResponse(message="".join(messages), received=len(messages))

    async def BidiStream(
        self,
        request_iterator: AsyncIterator[echo_pb2.EchoRequest],
        context: aio.ServicerContext[object, object],
    ) -> AsyncIterator[echo_pb2.EchoResponse]:
        index = 0
        async for request in request_iterator:
            await self._behave(request, context)
            yield echo_pb2.EchoResponse(message=request.message, index=index)
            index += 1


class Invocation(NamedTuple):
    """What the server saw of one Unary or ServerStream call as it arrived.

    Attributes:
        method: ``"Unary"`` or ``"ServerStream"``.
        message: The request's message.
        metadata: The call's metadata.
        time_remaining: Seconds left to its deadline (None: no deadline).
        peer: The client's address, e.g. ``ipv4:127.0.0.1:40001``: one per TCP connection.
    """

    method: str
    message: str
    metadata: tuple[tuple[str, str | bytes], ...]
    time_remaining: float | None
    peer: str

    @classmethod
    def of(
        cls,
        method: str,
        request: echo_pb2.EchoRequest,
        context: aio.ServicerContext[object, object],
    ) -> Invocation:
        return cls(
            method,
            request.message,
            tuple(context.invocation_metadata() or ()),
            context.time_remaining(),
            context.peer(),
        )


class EchoServer:
    """The Echo service on a real grpc.aio server bound to 127.0.0.1, port 0 by default.

    Example:
        async with EchoServer() as server:
            channel = grpc.aio.insecure_channel(server.target)

    Attributes:
        delivered: Messages of Unary calls answered with OK, in order.
        invocations: What the server saw of each Unary and ServerStream call as it arrived.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        """Creates the server; ``start()`` (or ``async with``) binds and serves.

        Args:
            host: The address to bind.
            port: The port; 0 picks a free one.
            credentials: Serve TLS with these; None serves plaintext.
        """
        self._host = host
        self._port = port
        self._credentials = credentials
        self._server: aio.Server | None = None
        self._bound_port = 0
        self._gates: dict[str, asyncio.Event] = {}
        self._arrivals: _Tally[str] = _Tally()
        self._arrived = asyncio.Condition()
        self.delivered: list[str] = []
        self.invocations: list[Invocation] = []

    @property
    def target(self) -> str:
        """The ``host:port`` clients connect to."""
        if self._server is None:
            raise RuntimeError("EchoServer is not started")
        return f"{self._host}:{self._bound_port}"

    async def start(self) -> None:
        """Binds and starts serving."""
        server = aio.server(options=SERVER_OPTIONS)
        echo_pb2_grpc.add_EchoServicer_to_server(_EchoService(self), server)
        address = f"{self._host}:{self._port}"
        if self._credentials is None:
            self._bound_port = server.add_insecure_port(address)
        else:
            self._bound_port = server.add_secure_port(address, self._credentials)
        await server.start()
        self._server = server

    async def stop(self, grace: float | None = None) -> None:
        """Stops serving; ``grace`` as for ``grpc.aio.Server.stop``."""
        for event in self._gates.values():
            event.set()
        if self._server is not None:
            await self._server.stop(grace)

    async def __aenter__(self) -> EchoServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop(None)

    def open_gate(self, name: str) -> None:
        """Lets every request waiting at (or later reaching) gate ``name`` through."""
        self._gate(name).set()

    def arrivals(self, name: str) -> int:
        """How many requests have reached gate ``name`` so far."""
        return self._arrivals[name]

    async def wait_arrivals(self, name: str, count: int = 1) -> None:
        """Waits until ``count`` requests in total have reached gate ``name``."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: self._arrivals[name] >= count)

    def _gate(self, name: str) -> asyncio.Event:
        gate = self._gates.get(name)
        if gate is None:
            gate = self._gates[name] = asyncio.Event()
        return gate

    async def _pass_gate(self, name: str) -> None:
        if not name:
            return
        async with self._arrived:
            self._arrivals[name] += 1
            self._arrived.notify_all()
        await self._gate(name).wait()
