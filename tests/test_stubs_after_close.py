"""Stubs created after close(): their calls raise ChannelClosedError, and the closed grpc channel
is never touched (grpc.aio can crash the process on it, reported under uvloop)."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest

from graceful_grpc import ChannelClosedError, aio
from graceful_grpc.testing import EchoServer

from .support.calls import KINDS, start

STUBS_AFTER_CLOSE_ON_UVLOOP = """
import uvloop
from graceful_grpc import ChannelClosedError, aio
from graceful_grpc.testing import echo_pb2, echo_pb2_grpc

async def main():
    channel = aio.insecure_channel("127.0.0.1:1")
    await channel.close()
    stub = echo_pb2_grpc.EchoStub(channel)
    for call in (
        lambda: stub.Unary(echo_pb2.EchoRequest()),
        lambda: stub.ServerStream(echo_pb2.EchoRequest()),
        lambda: stub.ClientStream(iter(())),
        lambda: stub.BidiStream(iter(())),
    ):
        try:
            call()
        except ChannelClosedError:
            continue
        raise SystemExit("a call on a closed channel was not refused")
    print("refused")

uvloop.run(main())
"""


@pytest.mark.parametrize("kind", KINDS)
async def test_stubs_created_after_close_never_touch_the_closed_grpc_channel(
    echo_server: EchoServer, kind: str
) -> None:
    raw = grpc.aio.insecure_channel(echo_server.target)
    channel = aio.wrap(raw)
    await channel.close()

    def crash(*args: object, **kwargs: object) -> None:
        raise AssertionError("a closed grpc channel was used (grpc.aio may crash on it)")

    for name in KINDS:  # the fault injected: what grpc may do with a closed channel
        setattr(raw, name, crash)
    with pytest.raises(ChannelClosedError):
        start(channel, kind)


def test_stubs_created_after_close_refuse_calls_on_uvloop() -> None:
    pytest.importorskip("uvloop")  # the bench extra, which make install installs
    child = subprocess.run(
        [sys.executable, "-c", STUBS_AFTER_CLOSE_ON_UVLOOP],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (child.returncode, child.stdout.strip()) == (0, "refused"), child.stderr
