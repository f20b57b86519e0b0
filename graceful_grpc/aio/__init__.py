"""Graceful grpc.aio channels (drop-in, reference-counted, draining on close) and servers.

Call paths: the calls of grpc.aio's own channels (without interceptors) are built directly, at
raw grpc.aio's cost, when the installed grpcio's relied-on grpc.aio source has a verified
fingerprint; any other grpcio, a channel with interceptors and ``wrap()`` of another kind of
channel take the fallback path, correct everywhere and a few per cent slower.
``DIRECT_AVAILABLE`` and ``DIRECT_REASON`` say which path serves and why (the grpcio version and
the fingerprint); ``GRACEFUL_GRPC_NO_DIRECT_CALLS=1`` in the environment forces the fallback. The
first channel made in a process that takes the fallback logs one INFO line on logger
``graceful_grpc`` with the reason; nothing is logged when the direct path serves.
"""

from typing import TYPE_CHECKING, Any

from ._call_factory import DIRECT_AVAILABLE, DIRECT_REASON
from ._channel import GracefulChannel
from ._constructors import insecure_channel, secure_channel, wrap
from ._hold import Hold
from ._method_filter import MethodFilter
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
    "DIRECT_AVAILABLE",
    "DIRECT_REASON",
    "AdmitPolicy",
    "GracefulChannel",
    "GracefulServer",
    "Hold",
    "InFlightTracker",
    "MethodFilter",
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
