"""An L4 balancer on 127.0.0.1 with a slow link back to its clients: the suite's fake for the
network between a backend and the clients of a load balancer.

Each new TCP connection goes to the next backend in the list (the last one once the list is used
up), as a balancer that has stopped routing to a draining backend; what a backend sends reaches
the client ``delay`` seconds later, in order (what clients send is forwarded at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from .local_proxy import LocalProxy


class SlowLinkProxy(LocalProxy):
    def __init__(self, backends: list[str], *, delay: float) -> None:
        super().__init__()
        self._backends = [target.rsplit(":", 1) for target in backends]
        self._delay = delay
        self.connections = 0  # connections accepted so far

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        host, port = self._backends[min(self.connections, len(self._backends) - 1)]
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        self._writers.append(up_writer)
        late: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self._spawn(self._pump(reader, up_writer))
        self._spawn(self._read_late(up_reader, late))
        self._spawn(self._write_late(late, writer))

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            pass
        finally:
            with contextlib.suppress(Exception):
                sink.close()

    async def _read_late(
        self, source: asyncio.StreamReader, late: asyncio.Queue[tuple[float, bytes]]
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                late.put_nowait((time.monotonic() + self._delay, data))
        late.put_nowait((0.0, b""))

    async def _write_late(
        self, late: asyncio.Queue[tuple[float, bytes]], sink: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                due, data = await late.get()
                if not data:
                    return
                await asyncio.sleep(max(0.0, due - time.monotonic()))  # the link's latency
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            pass
        finally:
            with contextlib.suppress(Exception):
                sink.close()
