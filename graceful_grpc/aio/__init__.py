"""Graceful grpc.aio channels (drop-in, reference-counted, draining on close) and servers."""

from ._channel import GracefulChannel, insecure_channel, secure_channel, wrap
from ._connection import AdmitPolicy
from ._hold import Hold
from ._multicallable import (
    StreamStreamMultiCallable,
    StreamUnaryMultiCallable,
    UnaryStreamMultiCallable,
    UnaryUnaryMultiCallable,
)
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
