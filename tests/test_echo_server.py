"""The Echo test service answers all four call kinds to a plain grpc.aio client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from graceful_grpc.testing import EchoServer, EchoServerProcess
from graceful_grpc.testing.v1 import echo_pb2, echo_pb2_grpc

Req = echo_pb2.EchoRequest
B = echo_pb2.Behaviour


async def _requests(*messages: str) -> AsyncIterator[echo_pb2.EchoRequest]:
    for message in messages:
        yield Req(message=message)


async def test_all_four_kinds(echo_server: EchoServer) -> None:
    async with grpc.aio.insecure_channel(echo_server.target) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        assert (await stub.Unary(Req(message="u"))).message == "u"
        streamed = [r async for r in stub.ServerStream(Req(message="s", behaviour=B(count=3)))]
        assert [(r.message, r.index) for r in streamed] == [("s", 0), ("s", 1), ("s", 2)]
        joined = await stub.ClientStream(_requests("a", "b", "c"))
        assert (joined.message, joined.received) == ("abc", 3)
        bidi = stub.BidiStream()
        for message in ("x", "y"):
            await bidi.write(Req(message=message))
            assert (await bidi.read()).message == message
        await bidi.done_writing()
        assert await bidi.code() == grpc.StatusCode.OK
    assert echo_server.delivered == ["u"]


@pytest.mark.parametrize("code", [grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE])
async def test_fails_with_requested_status(echo_server: EchoServer, code: grpc.StatusCode) -> None:
    behaviour = B(fail_code=code.value[0], fail_message="nope")
    async with grpc.aio.insecure_channel(echo_server.target) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Unary(Req(message="u", behaviour=behaviour))
        assert (info.value.code(), info.value.details()) == (code, "nope")
        stream = stub.ServerStream(Req(behaviour=B(count=2, fail_code=code.value[0])))
        assert (await stream.read()).index == 0
        assert (await stream.read()).index == 1  # fails after sending its messages
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stream.read()
        assert info.value.code() == code


async def test_gate_holds_a_call_until_opened(echo_server: EchoServer) -> None:
    async with grpc.aio.insecure_channel(echo_server.target) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        call = stub.Unary(Req(message="gated", behaviour=B(gate="g")))
        await echo_server.wait_arrivals("g")
        assert not call.done()
        echo_server.open_gate("g")
        assert (await call).message == "gated"


async def test_delay_is_applied(echo_server: EchoServer) -> None:
    loop = asyncio.get_running_loop()
    async with grpc.aio.insecure_channel(echo_server.target) as channel:
        stub = echo_pb2_grpc.EchoStub(channel)
        started = loop.time()
        await stub.Unary(Req(behaviour=B(delay_ms=50)))
        assert loop.time() - started >= 0.045


async def test_separate_process_server() -> None:
    with EchoServerProcess() as server:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = echo_pb2_grpc.EchoStub(channel)
            assert (await stub.Unary(Req(message="p"))).message == "p"
