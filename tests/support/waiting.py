"""A call of every kind blocked in every awaiting method, for tests of the abort's answers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from graceful_grpc.testing import echo_pb2, echo_pb2_grpc

from .calls import KINDS
from .silent_peer import SilentPeer

__all__ = ("AWAITING", "every_method_waiting", "start_reader_writer")

REQUEST = echo_pb2.EchoRequest(message="m")

AWAITING: dict[str, tuple[tuple[str, ...], Callable[[Any], Any]]] = {
    "await": (("unary_unary", "stream_unary"), lambda call: call),
    "read": (("unary_stream", "stream_stream"), lambda call: call.read()),
    "iterate": (
        ("unary_stream", "stream_stream"),
        lambda call: _drain_iterator(call),
    ),
    "write": (
        ("stream_unary", "stream_stream"),
        lambda call: call.write(echo_pb2.EchoRequest(message="m")),
    ),
    "done_writing": (("stream_unary", "stream_stream"), lambda call: call.done_writing()),
    "wait_for_connection": (KINDS, lambda call: call.wait_for_connection()),
    "initial_metadata": (KINDS, lambda call: call.initial_metadata()),
    "trailing_metadata": (KINDS, lambda call: call.trailing_metadata()),
    "code": (KINDS, lambda call: call.code()),
    "details": (KINDS, lambda call: call.details()),
}


async def _drain_iterator(call: Any) -> list[Any]:
    return [message async for message in call]


def start_reader_writer(channel: Any, kind: str) -> Any:
    """A call of ``kind``; stream-request calls in reader/writer style (no request iterator)."""
    stub = echo_pb2_grpc.EchoStub(channel)
    if kind == "unary_unary":
        return stub.Unary(REQUEST)
    if kind == "unary_stream":
        return stub.ServerStream(REQUEST)
    if kind == "stream_unary":
        return stub.ClientStream()
    return stub.BidiStream()


async def every_method_waiting(channel: Any, peer: SilentPeer) -> dict[str, asyncio.Task[Any]]:
    """A call per kind and awaiting method on ``channel`` to ``peer``, a task awaiting each;
    returns them once all are blocked ("kind.method" -> task)."""
    waiting: dict[str, asyncio.Task[Any]] = {}
    for method, (call_kinds, awaiting) in AWAITING.items():
        for kind in call_kinds:
            call = start_reader_writer(channel, kind)
            waiting[f"{kind}.{method}"] = asyncio.ensure_future(awaiting(call))
    await asyncio.wait_for(peer.connected.wait(), timeout=5)
    for _ in range(5):
        await asyncio.sleep(0)
    assert [name for name, task in waiting.items() if task.done()] == []
    return waiting
