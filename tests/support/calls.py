"""Starting and finishing one call of each kind against the Echo test service, and telling what
its caller got."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator
from typing import Any

import grpc

from graceful_grpc.aio import GracefulChannel
from graceful_grpc.testing import echo_pb2, echo_pb2_grpc

KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
METHOD = {
    "unary_unary": "/graceful_grpc.testing.v1.Echo/Unary",
    "unary_stream": "/graceful_grpc.testing.v1.Echo/ServerStream",
    "stream_unary": "/graceful_grpc.testing.v1.Echo/ClientStream",
    "stream_stream": "/graceful_grpc.testing.v1.Echo/BidiStream",
}


async def _one(request: echo_pb2.EchoRequest) -> AsyncIterator[echo_pb2.EchoRequest]:
    yield request


def start(
    channel: Any,
    kind: str,
    *,
    gate: str = "",
    message: str = "m",
    metadata: Any = None,
    **behaviour: Any,
) -> Any:
    """Starts a call of ``kind``; with ``gate`` the server holds it until the gate opens."""
    stub = echo_pb2_grpc.EchoStub(channel)
    request = echo_pb2.EchoRequest(
        message=message, behaviour=echo_pb2.Behaviour(gate=gate, **behaviour)
    )
    if kind == "unary_unary":
        return stub.Unary(request, metadata=metadata)
    if kind == "unary_stream":
        return stub.ServerStream(request, metadata=metadata)
    if kind == "stream_unary":
        return stub.ClientStream(_one(request), metadata=metadata)
    return stub.BidiStream(_one(request), metadata=metadata)


async def finish(call: Any, kind: str) -> list[str]:
    """Awaits the call's responses (all of them, for streams)."""
    if kind in ("unary_unary", "stream_unary"):
        return [(await call).message]
    return [response.message async for response in call]


async def call_once(channel: Any, kind: str, message: str = "m") -> list[str]:
    return await finish(start(channel, kind, message=message), kind)


async def begin_close(channel: GracefulChannel, grace: float | None = None) -> asyncio.Task[Any]:
    """Starts ``channel.close(grace)`` in a task and lets it run to its first suspension."""
    task = asyncio.create_task(channel.close(grace))
    await asyncio.sleep(0)  # one scheduling step: the task's synchronous part has run
    assert channel.closed
    return task


def foreign_hold(channel: GracefulChannel) -> Any:
    """Takes a hold on behalf of other work: the calling code does not become held."""
    return contextvars.Context().run(channel.hold)


def outcome(task: asyncio.Future[Any]) -> str:
    """What the caller running as ``task`` got: "still waiting", "returned", "CancelledError", or
    the name of the exception's type."""
    if not task.done():
        return "still waiting"
    if task.cancelled():
        return "CancelledError"
    error = task.exception()
    return "returned" if error is None else type(error).__name__


class PassingInterceptor(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    """Passes every call on unchanged: puts a channel's calls on the intercepted (fallback) path."""

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(details, request)

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(details, request)

    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(details, requests)

    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(details, requests)
