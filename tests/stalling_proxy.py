"""A TCP proxy on 127.0.0.1 that can be told to stall: the one fault-injection fake of the suite.

While stalled it stops forwarding client-to-server bytes, so an RPC sent through it stays in flight
for as long as the test wants.
"""

from __future__ import annotations

import asyncio
import contextlib

from .local_proxy import LocalProxy


class StallingProxy(LocalProxy):
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        super().__init__()
        self._upstream = (upstream_host, upstream_port)
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.accepted = 0  # connections accepted so far

    def stall(self) -> None:
        """Stop forwarding what clients send."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        for source, sink, gated in ((reader, up_writer, True), (up_reader, writer, False)):
            task = asyncio.create_task(self._pump(source, sink, gated))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, gated: bool
    ) -> None:
        try:
            while data := await source.read(65536):
                if gated:
                    await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                sink.close()
