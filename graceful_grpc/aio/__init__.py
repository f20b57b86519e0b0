"""Graceful grpc.aio channels (drop-in, reference-counted, draining on close) and servers."""

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
from ._server import GracefulServer, server
from ._tracker import InFlightTracker

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
