"""The demo's server: one unary method on grpc's generic handlers, bytes in and out.

The demo runs on the core install (grpcio alone), so it needs neither protobuf nor the
``graceful_grpc.testing`` stubs: a request is the UTF-8 JSON object
``{"message": str, "delay_ms": int}``, the response the message's bytes.
"""

from __future__ import annotations

import asyncio
import json
from types import TracebackType

import grpc

__all__ = ("METHOD", "DemoServer", "encode_request")

SERVICE = "graceful_grpc.demo.Demo"
METHOD = f"/{SERVICE}/Call"


def encode_request(message: str, delay_ms: int = 0) -> bytes:
    """The request bytes for ``message``, answered after ``delay_ms`` milliseconds."""
    return json.dumps({"message": message, "delay_ms": delay_ms}).encode()


class DemoServer:
    """A grpc.aio server on 127.0.0.1 (a free port) serving ``METHOD``.

    Attributes:
        delivered: The messages of the calls answered with OK, in order.
    """

    def __init__(self) -> None:
        self._server: grpc.aio.Server | None = None
        self._port = 0
        self.delivered: list[str] = []

    @property
    def target(self) -> str:
        """The ``host:port`` clients connect to."""
        if self._server is None:
            raise RuntimeError("DemoServer is not started")
        return f"127.0.0.1:{self._port}"

    async def _call(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        body = json.loads(request)
        if body["delay_ms"]:
            await asyncio.sleep(body["delay_ms"] / 1000)
        self.delivered.append(body["message"])
        return str(body["message"]).encode()

    async def __aenter__(self) -> DemoServer:
        server = grpc.aio.server()
        # No (de)serialisers: the handler gets and returns bytes. (grpc's helpers are untyped.)
        handler = grpc.unary_unary_rpc_method_handler(self._call)  # type: ignore[no-untyped-call]
        generic = grpc.method_handlers_generic_handler(  # type: ignore[no-untyped-call]
            SERVICE, {"Call": handler}
        )
        server.add_generic_rpc_handlers((generic,))
        self._port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server = server
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            await self._server.stop(None)
