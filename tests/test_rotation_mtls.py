"""mTLS rotation end to end: certificates made in the test, a server that switches them, and a
client that rotates to new trust roots and a new client certificate under load."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from graceful_grpc import aio

from .support.calls import call_once
from .support.mtls import Pki, client_credentials, serve_switchable
from .support.rotation import Load


async def test_mtls_rotation_to_new_trust_roots_under_load() -> None:
    pki = Pki()
    async with serve_switchable(pki) as (server, switch):
        target = f"localhost:{server.target.rsplit(':', 1)[1]}"
        channel = aio.secure_channel(target, client_credentials(pki, 1))
        load = Load(channel)
        await load.wait_calls(20)
        switch(2)  # new connections: generation 2 certificate, only generation 2 clients trusted
        # The control: the next connection without a rotation - what the channel gets when its
        # connection is replaced (idle timeout, GOAWAY, reconnect) - fails the handshake.
        control = grpc.aio.secure_channel(target, client_credentials(pki, 1))
        try:
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await asyncio.wait_for(call_once(control, "unary_unary", "control"), timeout=10)
            assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
        finally:
            await control.close()
        await load.wait_calls(8)  # the live connection keeps working until it is replaced
        new_channel = grpc.aio.secure_channel(target, client_credentials(pki, 2))
        report = await asyncio.wait_for(channel.rotate(new_channel), timeout=10)
        assert report.cancelled == ()
        await load.wait_calls(20)
        await load.stop()
        assert load.failures == []
        await channel.close()
