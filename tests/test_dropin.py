"""Drop-in: generated stubs, user interceptors, metadata, deadlines work unchanged; and every way a
call can end brings in_flight back to zero."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import weakref
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from graceful_grpc import DrainTimeoutError, aio
from graceful_grpc.testing import EchoServer, echo_pb2, echo_pb2_grpc

from .support.calls import KINDS, call_once, finish, start

kinds = pytest.mark.parametrize("kind", KINDS)


@pytest.fixture
async def channel(echo_server: EchoServer) -> AsyncIterator[aio.GracefulChannel]:
    ch = aio.insecure_channel(echo_server.target)
    yield ch
    await ch.close(grace=0)


async def test_is_a_grpc_aio_channel(channel: aio.GracefulChannel) -> None:
    assert isinstance(channel, grpc.aio.Channel)
    assert isinstance(channel.unary_unary("/x/y"), grpc.aio.UnaryUnaryMultiCallable)
    assert isinstance(channel.unary_stream("/x/y"), grpc.aio.UnaryStreamMultiCallable)
    assert isinstance(channel.stream_unary("/x/y"), grpc.aio.StreamUnaryMultiCallable)
    assert isinstance(channel.stream_stream("/x/y"), grpc.aio.StreamStreamMultiCallable)


async def test_channel_state_methods_delegate(channel: aio.GracefulChannel) -> None:
    await asyncio.wait_for(channel.channel_ready(), timeout=10)
    assert channel.get_state() is grpc.ChannelConnectivity.READY


@kinds
async def test_generated_stub_tracks_every_kind(
    echo_server: EchoServer, channel: aio.GracefulChannel, kind: str
) -> None:
    call = start(channel, kind, gate="g", message="stub")
    assert isinstance(call, grpc.aio.Call)
    await echo_server.wait_arrivals("g")
    assert channel.in_flight == 1
    echo_server.open_gate("g")
    assert await finish(call, kind) == ["stub"]
    assert channel.in_flight == 0


async def test_stream_counts_until_final_status_not_first_await(
    echo_server: EchoServer, channel: aio.GracefulChannel
) -> None:
    stub = echo_pb2_grpc.EchoStub(channel)
    stream = stub.BidiStream()
    await stream.write(echo_pb2.EchoRequest(message="1"))
    assert (await stream.read()).message == "1"
    assert channel.in_flight == 1  # the stream is still open
    await stream.done_writing()
    assert await stream.read() is grpc.aio.EOF
    assert await stream.code() == grpc.StatusCode.OK
    assert channel.in_flight == 0


async def test_metadata_and_timeout_pass_through(
    echo_server: EchoServer, channel: aio.GracefulChannel
) -> None:
    stub = echo_pb2_grpc.EchoStub(channel)
    call = stub.Unary(
        echo_pb2.EchoRequest(message="m"), metadata=(("x-test", "1"), ("x-bin", b"\x00")), timeout=5
    )
    assert (await call).message == "m"
    seen = echo_server.invocations[-1]
    assert ("x-test", "1") in seen.metadata and ("x-bin", b"\x00") in seen.metadata
    # 5 s, as sent (the server rounds the deadline it receives up a little)
    assert seen.time_remaining is not None and 3 < seen.time_remaining < 5.5


class _UnaryRecorder(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, methods: list[bytes]) -> None:
        self.methods = methods

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self.methods.append(details.method)
        return await continuation(details, request)


class _BidiRecorder(grpc.aio.StreamStreamClientInterceptor):
    # grpc.aio files an interceptor under its first matching kind only: one class per kind
    def __init__(self, methods: list[bytes]) -> None:
        self.methods = methods

    async def intercept_stream_stream(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        self.methods.append(details.method)
        return await continuation(details, request_iterator)


async def test_user_interceptors_run_and_their_calls_are_tracked(echo_server: EchoServer) -> None:
    methods: list[bytes] = []
    interceptors = [_UnaryRecorder(methods), _BidiRecorder(methods)]
    channel = aio.insecure_channel(echo_server.target, interceptors=interceptors)
    call = start(channel, "unary_unary", gate="g")
    await echo_server.wait_arrivals("g")
    assert channel.in_flight == 1
    echo_server.open_gate("g")
    assert await finish(call, "unary_unary") == ["m"]
    assert await call_once(channel, "stream_stream") == ["m"]
    assert channel.in_flight == 0
    assert [bytes(m).rsplit(b"/", 1)[-1] for m in methods] == [b"Unary", b"BidiStream"]
    # an intercepted call aborted at the deadline still gets the typed error
    stuck = start(channel, "unary_unary", gate="never")
    await echo_server.wait_arrivals("never")
    report = await channel.close(grace=0)
    assert len(report.cancelled) == 1
    with pytest.raises(DrainTimeoutError):
        await stuck


# -- cancellation safety --


@kinds
async def test_caller_cancelled_mid_call(
    echo_server: EchoServer, channel: aio.GracefulChannel, kind: str
) -> None:
    call = start(channel, kind, gate="never")
    task = asyncio.create_task(finish(call, kind))
    await echo_server.wait_arrivals("never")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await channel.wait_idle(timeout=10)
    assert channel.in_flight == 0


@kinds
async def test_server_failure(channel: aio.GracefulChannel, kind: str) -> None:
    call = start(channel, kind, fail_code=grpc.StatusCode.INTERNAL.value[0])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await finish(call, kind)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert await channel.wait_idle(timeout=10)


@kinds
async def test_deadline_expiry(
    echo_server: EchoServer, channel: aio.GracefulChannel, kind: str
) -> None:
    stub = echo_pb2_grpc.EchoStub(channel)
    request = echo_pb2.EchoRequest(behaviour=echo_pb2.Behaviour(gate="never"))

    async def one() -> AsyncIterator[echo_pb2.EchoRequest]:
        yield request

    call: Any
    if kind == "unary_unary":
        call = stub.Unary(request, timeout=0.05)
    elif kind == "unary_stream":
        call = stub.ServerStream(request, timeout=0.05)
    elif kind == "stream_unary":
        call = stub.ClientStream(one(), timeout=0.05)
    else:
        call = stub.BidiStream(one(), timeout=0.05)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await finish(call, kind)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert await channel.wait_idle(timeout=10)


@pytest.mark.parametrize("kind", ["unary_stream", "stream_stream"])
async def test_stream_abandoned_then_cancelled(
    echo_server: EchoServer, channel: aio.GracefulChannel, kind: str
) -> None:
    call = start(channel, kind, count=1000, interval_ms=1)
    first = await call.read()
    assert first.message == "m"
    assert channel.in_flight == 1  # abandoned mid-stream: still in flight
    call.cancel()
    assert await channel.wait_idle(timeout=10)


# -- holds --


async def test_hold_forms_and_idempotent_release(channel: aio.GracefulChannel) -> None:
    async with channel.hold() as hold:
        assert channel.holds == 1
    assert hold.released and channel.holds == 0
    with channel.hold():
        assert channel.holds == 1
    manual = channel.hold()
    taken_at = f"{__file__}:{sys._getframe().f_lineno - 1}"
    manual.release()
    manual.release()
    assert channel.holds == 0
    assert repr(manual) == f"<Hold released, taken at {taken_at}>"


async def test_hold_released_from_another_thread_ends_the_drain(
    channel: aio.GracefulChannel,
) -> None:
    hold = channel.hold()
    closing = asyncio.create_task(channel.close())
    await asyncio.sleep(0)
    thread = threading.Thread(target=hold.release)
    thread.start()
    report = await asyncio.wait_for(closing, timeout=10)
    thread.join()
    assert report.drained and report.closed


async def test_wait_idle(echo_server: EchoServer, channel: aio.GracefulChannel) -> None:
    assert await channel.wait_idle(timeout=0)
    call = start(channel, "unary_unary", gate="g")
    await echo_server.wait_arrivals("g")
    assert not await channel.wait_idle(timeout=0.01)
    echo_server.open_gate("g")
    await call
    assert await channel.wait_idle(timeout=10)
    with pytest.raises(ValueError, match="timeout"):
        await channel.wait_idle(timeout=-1)


async def test_async_with_drains_instead_of_cancelling(echo_server: EchoServer) -> None:
    async with aio.insecure_channel(echo_server.target) as channel:
        call = start(channel, "unary_unary", gate="g", message="kept")
        await echo_server.wait_arrivals("g")
        asyncio.get_running_loop().call_soon(echo_server.open_gate, "g")
    assert (await call).message == "kept"  # grpc.aio's __aexit__ would have cancelled it


async def test_shared_handles_count_one_connection(channel: aio.GracefulChannel) -> None:
    other = channel.share()
    with other.hold():
        assert channel.holds == 1
    assert (await other.close()).closed is False
    assert channel.state.value == "open"


async def test_channel_keeps_no_call_alive() -> None:
    # Like grpc.aio's own registry, the channel's is weak: it must never be what keeps a call its
    # owner dropped from being collected (grpc.aio cancels calls it collects).
    from benchmarks.harness.micro import FakeChannel

    channel = aio.wrap(FakeChannel())
    call = channel.unary_unary("/x/y")(b"")
    assert channel.in_flight == 1
    reference = weakref.ref(call)
    del call
    gc.collect()
    assert reference() is None


async def test_reader_cancelled_as_setup_completes_cancels_the_rpc(
    channel: aio.GracefulChannel,
) -> None:
    # grpc.aio leaves the RPC open when a stream's reader is cancelled just as the stream's
    # set-up completes (its cancel-on-CancelledError guard does not cover that await); the
    # graceful channel's calls cancel it. To hit that moment deterministically, the reader is
    # cancelled from a callback on grpc's private set-up task, registered before the reader waits.
    kind = "unary_stream"  # its set-up ends when the server sends initial metadata, at once
    call = start(channel, kind, gate="never")
    reader = asyncio.create_task(finish(call, kind))
    call._preparation.add_done_callback(lambda _: reader.cancel())
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert call.done() and call.cancelled()
    assert channel.in_flight == 0
