"""The L4 load balancer of the rolling restart: ``python -m benchmarks.rolling_restart.proxy``.

As kube-proxy with readiness probes: it routes each *new* TCP connection, round robin, to the
backends whose health ``Check`` answered SERVING at its last probe (one probe per backend every
``--probe-interval`` seconds, each on a new connection, as a kubelet probes), and pipes bytes both
ways until either side closes. A connection to a backend that refuses it is closed at once (the
client sees its connection fail). Prints ``LISTENING <port>``.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import argparse
import asyncio
import contextlib
import itertools
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ("main",)

PROBE_TIMEOUT = 0.1


class Balancer:
    def __init__(self, backends: list[int], interval: float) -> None:
        self._backends = backends
        self._interval = interval
        self._ready = dict.fromkeys(backends, False)
        self._turn = itertools.count()

    async def probe_forever(self, port: int) -> None:
        while True:
            self._ready[port] = await self._probe(port)
            await asyncio.sleep(self._interval)

    async def _probe(self, port: int) -> bool:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
        ) as channel:
            try:
                answer = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=PROBE_TIMEOUT
                )
            except grpc.aio.AioRpcError:
                return False
            return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    def pick(self) -> int | None:
        ready = [port for port in self._backends if self._ready[port]]
        if not ready:
            return None
        return ready[next(self._turn) % len(ready)]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = self.pick()
        try:
            if port is None:
                return
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:  # the backend stopped listening before its probe said so
                return
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


async def serve(backends: list[int], interval: float) -> None:
    balancer = Balancer(backends, interval)
    probes = [asyncio.create_task(balancer.probe_forever(port)) for port in backends]
    server = await asyncio.start_server(balancer.handle, "127.0.0.1", 0)
    print("LISTENING", server.sockets[0].getsockname()[1], flush=True)
    try:
        await server.serve_forever()
    finally:
        for probe in probes:
            probe.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rolling_restart.proxy")
    parser.add_argument("--backends", required=True, help="comma-separated ports")
    parser.add_argument("--probe-interval", type=float, default=0.2)
    args = parser.parse_args(argv)
    asyncio.run(serve([int(port) for port in args.backends.split(",")], args.probe_interval))
    return 0


if __name__ == "__main__":
    sys.exit(main())
