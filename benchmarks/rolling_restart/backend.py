"""One backend of the rolling restart: ``python -m benchmarks.rolling_restart.backend``.

Serves Echo: ``Unary`` does 20 ms of work and then calls the downstream service through its
channel; ``ServerStream`` is the watch (one message every 100 ms, naming this backend's port,
for ever). On SIGTERM it shuts down the way its variant says, prints ``REPORT {json}`` and exits:

- ``naive``: grpc.aio.server; ``await server.stop(grace)``, then ``await channel.close()``;
- ``best``: the hand-written best practice: ``await health.enter_graceful_shutdown()``, sleep the
  unready delay, ``await server.stop(grace)``, then ``await channel.close()``;
- ``graceful``: ``aio.server(unready_delay=..., health=..., cancel_on_drain=[watch],
  holds=[channel])`` and a ShutdownSequence: the server, then the downstream channel.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import argparse
import asyncio
import collections
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from graceful_grpc import ShutdownSequence, aio
from graceful_grpc.testing import echo_pb2, echo_pb2_grpc

__all__ = ("WATCH", "main")

WORK = 0.020  # seconds of work in each unary handler, before its downstream call
WATCH = "/graceful_grpc.testing.v1.Echo/ServerStream"
WATCH_INTERVAL = 0.1


class Backend(echo_pb2_grpc.EchoServicer):
    """The backend's Echo: ``Unary`` (work, then the downstream call) and the watch."""

    def __init__(self, port: int, downstream: Any) -> None:
        self._port = str(port)
        self._stub = echo_pb2_grpc.EchoStub(downstream)
        self.served = 0
        self.downstream_ok = 0
        self.downstream_failed: collections.Counter[str] = collections.Counter()

    async def Unary(self, request: echo_pb2.EchoRequest, context: Any) -> echo_pb2.EchoResponse:
        await asyncio.sleep(WORK)
        try:
            await self._stub.Unary(echo_pb2.EchoRequest(message=request.message))
        except grpc.aio.AioRpcError as error:
            self.downstream_failed[error.code().name] += 1
            raise
        except Exception as error:  # grpc.aio's UsageError "Channel is closed", and the like
            self.downstream_failed[type(error).__name__] += 1
            raise
        self.downstream_ok += 1
        self.served += 1
        return echo_pb2.EchoResponse(message=self._port)

    async def ServerStream(
        self, request: echo_pb2.EchoRequest, context: Any
    ) -> AsyncIterator[echo_pb2.EchoResponse]:
        while True:
            yield echo_pb2.EchoResponse(message=self._port)
            await asyncio.sleep(WATCH_INTERVAL)


async def serve(args: argparse.Namespace) -> dict[str, Any]:
    health_servicer = health.aio.HealthServicer()
    options = []
    if args.max_connection_age:
        options.append(("grpc.max_connection_age_ms", round(args.max_connection_age * 1000)))
    downstream: Any
    if args.variant == "graceful":
        downstream = aio.insecure_channel(args.downstream, drain_timeout=args.grace)
        server: Any = aio.server(
            drain_timeout=args.grace,
            unready_delay=args.unready_delay,
            health=health_servicer,
            cancel_on_drain=[WATCH],
            holds=[downstream],
            options=options,
        )
    else:
        downstream = grpc.aio.insecure_channel(args.downstream)
        server = grpc.aio.server(options=options)
    backend = Backend(args.port, downstream)  # type: ignore[abstract]  # two methods unused
    echo_pb2_grpc.add_EchoServicer_to_server(backend, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    await server.start()
    loop = asyncio.get_running_loop()
    print("LISTENING", args.port, flush=True)

    report: dict[str, Any] = {"port": args.port, "variant": args.variant}
    if args.variant == "graceful":
        sequence = ShutdownSequence(timeout=args.grace + args.unready_delay + 1.0)
        sequence.add_server("server", server)
        sequence.add_channel("downstream channel", downstream)
        sequence.install_signal_handlers((signal.SIGTERM,))
        await server.wait_draining()
        report["drain_start"] = time.monotonic()
        result = await sequence.wait()
        drain = result["server"].drain
        report["server_drain"] = None if drain is None else drain.summary()
        report["channel_drain"] = (
            None
            if result["downstream channel"].drain is None
            else result["downstream channel"].drain.summary()
        )
    else:
        terminated = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, terminated.set)
        await terminated.wait()
        report["drain_start"] = time.monotonic()
        if args.variant == "best":
            await health_servicer.enter_graceful_shutdown()
            await asyncio.sleep(args.unready_delay)
        await server.stop(args.grace)
        await downstream.close()
    report["stopped"] = time.monotonic()
    report["served"] = backend.served
    report["downstream_ok"] = backend.downstream_ok
    report["downstream_failed"] = dict(backend.downstream_failed)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rolling_restart.backend")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--downstream", required=True)
    parser.add_argument("--variant", choices=("naive", "best", "graceful"), required=True)
    parser.add_argument("--unready-delay", type=float, default=0.5)
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--max-connection-age", type=float, default=0.0)
    args = parser.parse_args(argv)
    report = asyncio.run(serve(args))
    print("REPORT", json.dumps(report), flush=True)
    sys.stdout.flush()
    os._exit(0)  # the report is out; skip interpreter teardown (grpc's threads)


if __name__ == "__main__":
    sys.exit(main())
