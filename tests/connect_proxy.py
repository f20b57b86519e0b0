"""A minimal HTTP CONNECT proxy on 127.0.0.1 with Basic auth, recording the tunnels it opens."""

from __future__ import annotations

import asyncio
import base64
import contextlib


class ConnectProxy:
    def __init__(self, credentials: tuple[str, str]) -> None:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        self._expected_auth = f"basic {token}".lower()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.tunnels: list[str] = []
        self.port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, authority, _ = head[0].split(" ", 2)
        headers = dict(line.split(":", 1) for line in head[1:] if ":" in line)
        auth = {k.strip().lower(): v.strip() for k, v in headers.items()}.get(
            "proxy-authorization", ""
        )
        if method != "CONNECT" or auth.lower() != self._expected_auth:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
            writer.close()
            return
        host, port = authority.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        self.tunnels.append(authority)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        pipes = [
            asyncio.ensure_future(self._pipe(reader, up_writer)),
            asyncio.ensure_future(self._pipe(up_reader, writer)),
        ]
        self._tasks.update(pipes)
        for pipe in pipes:
            pipe.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()
