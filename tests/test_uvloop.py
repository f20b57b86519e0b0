"""The channel on uvloop, in a child process: what crashes grpc there must not crash a graceful
channel's user (a crash would take the test run with it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("uvloop")  # in the test extra; absent only where someone removed it

STUBS_AFTER_CLOSE = """
import asyncio, uvloop
from graceful_grpc import ChannelClosedError, aio
from graceful_grpc.testing import echo_pb2, echo_pb2_grpc

async def main():
    channel = aio.insecure_channel("127.0.0.1:1")
    await channel.close()
    stub = echo_pb2_grpc.EchoStub(channel)  # grpc itself crashes here on a closed channel
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


def test_stubs_created_after_close_refuse_calls_on_uvloop() -> None:
    child = subprocess.run(
        [sys.executable, "-c", STUBS_AFTER_CLOSE], capture_output=True, text=True, timeout=60
    )
    assert (child.returncode, child.stdout.strip()) == (0, "refused"), child.stderr
