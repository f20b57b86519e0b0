"""A TCP proxy on 127.0.0.1 that can be told to stall: the suite's fake for a network that stops
delivering.

``stall()`` stops forwarding client-to-server bytes, so an RPC sent through it stays in flight for
as long as the test wants; ``freeze()`` stops both directions (a peer that stops mid-stream). A
proxy made with ``forward=False`` accepts connections and forwards nothing at all, ever.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Any

from .local_proxy import LocalProxy


class StallingProxy(LocalProxy):
    def __init__(self, upstream_host: str, upstream_port: int, *, forward: bool = True) -> None:
        super().__init__()
        self._upstream = (upstream_host, upstream_port)
        self._forward = forward
        self._to_server = asyncio.Event()
        self._to_server.set()
        self._to_client = asyncio.Event()
        self._to_client.set()
        self.accepted = asyncio.Event()  # set at the first connection
        self.connections = 0  # connections accepted so far

    @classmethod
    def to(cls, target: str, *, forward: bool = True) -> StallingProxy:
        """A proxy to ``host:port``; use it as ``async with`` (started, then resumed and closed)."""
        host, port = target.rsplit(":", 1)
        return cls(host, int(port), forward=forward)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.resume()
        await super().__aexit__(exc_type, exc, tb)

    def stall(self) -> None:
        """Stop forwarding what clients send."""
        self._to_server.clear()

    def freeze(self) -> None:
        """Stop forwarding in both directions, mid-stream."""
        self._to_server.clear()
        self._to_client.clear()

    def resume(self) -> None:
        self._to_server.set()
        self._to_client.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        self.accepted.set()
        self.connections += 1
        if not self._forward:
            return  # the connection stays open; nothing is read, nothing is forwarded
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        self._writers.append(up_writer)
        for source, sink, flowing in (
            (reader, up_writer, self._to_server),
            (up_reader, writer, self._to_client),
        ):
            self._spawn(self._pump(source, sink, flowing))

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, flowing: asyncio.Event
    ) -> None:
        try:
            while data := await source.read(65536):
                await flowing.wait()
                sink.write(data)
                await sink.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                sink.close()


async def write_until_blocked(call: Any, message: Any) -> asyncio.Future[Any]:
    """Writes ``message`` on stream call ``call`` until a write stays blocked on flow control (the
    proxy must be stalled); returns that write, still pending."""
    for _ in range(200):
        write: asyncio.Future[Any] = asyncio.ensure_future(call.write(message))
        done, _ = await asyncio.wait({write}, timeout=0.3)
        if not done:
            return write
        write.result()
    raise AssertionError("the transport never applied flow control")
