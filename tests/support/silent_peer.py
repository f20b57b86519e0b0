"""A TCP server on 127.0.0.1 that accepts connections and never answers: a fault-injection fake.

A gRPC client connecting to it opens TCP but never gets the server's HTTP/2 settings, so its calls
wait for a connection that never becomes ready.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType


class SilentPeer:
    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.connected = asyncio.Event()
        self.port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> SilentPeer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), timeout=5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        self.connected.set()
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
