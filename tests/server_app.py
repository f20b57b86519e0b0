"""A gated Echo servicer for the GracefulServer tests: every behaviour is chosen by the request's
message, and the test synchronises on events the handlers set (never on sleeps)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc

from graceful_grpc import DrainReport, aio
from graceful_grpc.testing import echo_pb2, echo_pb2_grpc

METHOD = {
    "unary_unary": "/graceful_grpc.testing.v1.Echo/Unary",
    "unary_stream": "/graceful_grpc.testing.v1.Echo/ServerStream",
    "stream_unary": "/graceful_grpc.testing.v1.Echo/ClientStream",
    "stream_stream": "/graceful_grpc.testing.v1.Echo/BidiStream",
}
KINDS = tuple(METHOD)
BOUND = 10.0  # seconds any single wait in these tests may take before it counts as a hang


class Gated(echo_pb2_grpc.EchoServicer):
    """Handlers that announce their start (``started[message]``), wait for ``gates[message]``
    when the message starts with ``gate``, and announce their real end (``ended[message]``).

    Messages: ``abort`` aborts with INVALID_ARGUMENT and then waits for its gate in ``finally``;
    ``raise`` raises; ``stubborn`` ignores one cancellation; ``forever`` streams until stopped.
    """

    def __init__(self) -> None:
        self.started: dict[str, asyncio.Event] = {}
        self.ended: dict[str, asyncio.Event] = {}
        self.gates: dict[str, asyncio.Event] = {}
        self.outcome: dict[str, str] = {}

    def event(self, table: dict[str, asyncio.Event], message: str) -> asyncio.Event:
        return table.setdefault(message, asyncio.Event())

    async def _work(self, message: str, context: Any) -> None:
        self.event(self.started, message).set()
        if message.startswith("gate"):
            await self.event(self.gates, message).wait()
        elif message == "abort":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "asked to abort")
        elif message == "raise":
            raise RuntimeError("asked to raise")
        elif message == "stubborn":
            try:
                await self.event(self.gates, message).wait()
            except asyncio.CancelledError:
                self.outcome[message] = "cancelled once"
                await self.event(self.gates, message).wait()

    async def _run(self, message: str, context: Any) -> None:
        try:
            await self._work(message, context)
        except asyncio.CancelledError:
            self.outcome.setdefault(message, "cancelled")
            raise
        finally:
            if message == "abort":
                await self.event(self.gates, message).wait()  # grpc/grpc#37239's finally
            self.event(self.ended, message).set()

    async def Unary(self, request: echo_pb2.EchoRequest, context: Any) -> echo_pb2.EchoResponse:
        await self._run(request.message, context)
        return echo_pb2.EchoResponse(message=request.message)

    async def ServerStream(
        self, request: echo_pb2.EchoRequest, context: Any
    ) -> AsyncIterator[echo_pb2.EchoResponse]:
        message = request.message
        if message == "forever":
            self.event(self.started, message).set()
            try:
                index = 0
                while True:
                    yield echo_pb2.EchoResponse(message=message, index=index)
                    index += 1
                    await asyncio.sleep(0.01)
            finally:
                self.event(self.ended, message).set()
        await self._run(message, context)
        yield echo_pb2.EchoResponse(message=message)

    async def ClientStream(
        self, request_iterator: AsyncIterator[echo_pb2.EchoRequest], context: Any
    ) -> echo_pb2.EchoResponse:
        messages = [request.message async for request in request_iterator]
        message = messages[0]
        await self._run(message, context)
        return echo_pb2.EchoResponse(message=message)

    async def BidiStream(  # type: ignore[override]
        self, request_iterator: AsyncIterator[echo_pb2.EchoRequest], context: Any
    ) -> None:  # the context.write() style
        async for request in request_iterator:
            await self._run(request.message, context)
            await context.write(echo_pb2.EchoResponse(message=request.message))


async def _one(message: str) -> AsyncIterator[echo_pb2.EchoRequest]:
    yield echo_pb2.EchoRequest(message=message)


def start(channel: grpc.aio.Channel, kind: str, message: str) -> Any:
    stub = echo_pb2_grpc.EchoStub(channel)
    request = echo_pb2.EchoRequest(message=message)
    if kind == "unary_unary":
        return stub.Unary(request)
    if kind == "unary_stream":
        return stub.ServerStream(request)
    if kind == "stream_unary":
        return stub.ClientStream(_one(message))
    return stub.BidiStream(_one(message))


async def finish(call: Any, kind: str) -> list[str]:
    if kind in ("unary_unary", "stream_unary"):
        return [(await asyncio.wait_for(call, BOUND)).message]

    async def read() -> list[str]:
        return [response.message async for response in call]

    return await asyncio.wait_for(read(), BOUND)


async def status_of(call: Any, kind: str) -> grpc.StatusCode:
    try:
        await finish(call, kind)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def wait(event: asyncio.Event) -> None:
    await asyncio.wait_for(event.wait(), BOUND)


async def drain_one(
    server: aio.GracefulServer, call: Any, entered: asyncio.Event, release: asyncio.Event
) -> tuple[Any, DrainReport]:
    """With ``call`` in flight (its handler sets ``entered``, then waits for ``release``): starts
    ``stop()``, releases the handler once the drain has begun; returns the call's answer and the
    drain's report."""
    pending = asyncio.ensure_future(call)
    await wait(entered)
    assert server.in_flight == 1
    stopping = asyncio.ensure_future(server.stop(BOUND))
    await asyncio.wait_for(server.wait_draining(), BOUND)
    release.set()
    answer = await asyncio.wait_for(pending, BOUND)
    return answer, await asyncio.wait_for(stopping, BOUND)


@contextlib.asynccontextmanager
async def serving(
    servicer: Any = None, **options: Any
) -> AsyncIterator[tuple[aio.GracefulServer, grpc.aio.Channel, str]]:
    """A started GracefulServer on 127.0.0.1 (port 0) with ``servicer`` (a Gated by default), a
    plain grpc.aio channel to it, and its target; at the end the server is stopped with grace 0
    (if it still runs)."""
    server = aio.server(**options)
    echo_pb2_grpc.add_EchoServicer_to_server(servicer or Gated(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield server, channel, f"127.0.0.1:{port}"
    finally:
        await channel.close()
        await asyncio.wait_for(server.stop(0), BOUND)


def generic_handler(service: str, method: str, behaviour: Any) -> grpc.GenericRpcHandler:
    """A generic handler serving one unary-unary method with bytes in and out."""
    return grpc.method_handlers_generic_handler(  # type: ignore[no-untyped-call,no-any-return]
        service,
        {method: grpc.unary_unary_rpc_method_handler(behaviour)},  # type: ignore[no-untyped-call]
    )
