"""A minimal HTTP CONNECT proxy on 127.0.0.1 with Basic auth, recording the tunnels it opens."""

from __future__ import annotations

import asyncio
import base64
import contextlib

from .local_proxy import LocalProxy


class ConnectProxy(LocalProxy):
    def __init__(self, credentials: tuple[str, str]) -> None:
        super().__init__()
        token = base64.b64encode(":".join(credentials).encode()).decode()
        self._expected_auth = f"basic {token}".lower()
        self.tunnels: list[str] = []

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
