"""Typed errors raised to callers of a graceful channel.

Both are ``grpc.aio.AioRpcError`` subclasses (and so ``grpc.RpcError``), so code that already
handles grpc.aio errors handles them unchanged.
"""

from __future__ import annotations

import grpc
from grpc import aio

__all__ = ("ChannelClosedError", "DrainTimeoutError")


class _GracefulRpcError(aio.AioRpcError):
    _CODE: grpc.StatusCode

    def __init__(self, details: str) -> None:
        super().__init__(self._CODE, aio.Metadata(), aio.Metadata(), details, None)

    def __reduce__(self) -> tuple[type, tuple[str]]:
        # AioRpcError's own __reduce__ passes its five constructor arguments; ours take one.
        return type(self), (self.details() or "",)


class ChannelClosedError(_GracefulRpcError):
    """The channel refused a new call or hold: it is closed, or draining and the caller holds none.

    Status UNAVAILABLE. Raised when the call (or ``hold()``) is made.
    """

    _CODE = grpc.StatusCode.UNAVAILABLE


class DrainTimeoutError(_GracefulRpcError):
    """The drain deadline passed while this call was in flight, and the channel cancelled it.

    Status CANCELLED. Raised where the caller awaits the call (or reads/writes its stream).
    """

    _CODE = grpc.StatusCode.CANCELLED
