"""Graceful grpc.aio channels (drop-in, reference-counted, draining on close) and servers."""

from typing import TYPE_CHECKING, Any

from ._channel import GracefulChannel
from ._constructors import insecure_channel, secure_channel, wrap
from ._hold import Hold
from ._multicallable import (
    StreamStreamMultiCallable,
    StreamUnaryMultiCallable,
    UnaryStreamMultiCallable,
    UnaryUnaryMultiCallable,
)
from ._options import AdmitPolicy
from ._tracker import InFlightTracker

if TYPE_CHECKING:
    from ._server import GracefulServer, server

__all__ = (
    "AdmitPolicy",
    "GracefulChannel",
    "GracefulServer",
    "Hold",
    "InFlightTracker",
    "StreamStreamMultiCallable",
    "StreamUnaryMultiCallable",
    "UnaryStreamMultiCallable",
    "UnaryUnaryMultiCallable",
    "insecure_channel",
    "secure_channel",
    "server",
    "wrap",
)


def __getattr__(name: str) -> Any:
    # The server half is imported on first use: a client-only service does not pay its import.
    if name in ("GracefulServer", "server"):
        from . import _server

        return getattr(_server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
