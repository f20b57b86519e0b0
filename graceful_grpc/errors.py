"""Typed errors raised to callers of a graceful channel.

Both are ``grpc.aio.AioRpcError`` subclasses (and so ``grpc.RpcError``), so code that already
handles grpc.aio errors handles them unchanged.
"""

from __future__ import annotations

from typing import Literal

import grpc
from grpc import aio

__all__ = ("CLOSED_REASONS", "ChannelClosedError", "ClosedReason", "DrainTimeoutError")


class _GracefulRpcError(aio.AioRpcError):
    _CODE: grpc.StatusCode

    def __init__(self, details: str) -> None:
        super().__init__(self._CODE, aio.Metadata(), aio.Metadata(), details, None)

    def __reduce__(self) -> tuple[type, tuple[str]]:
        # AioRpcError's own __reduce__ passes its five constructor arguments; ours take one.
        return type(self), (self.details() or "",)


ClosedReason = Literal["closed", "draining", "interrupted", "rotated"]
CLOSED_REASONS: tuple[ClosedReason, ...] = ("closed", "draining", "interrupted", "rotated")


class ChannelClosedError(_GracefulRpcError):
    """The channel refused a new call or hold, or interrupted a cancel-on-drain call.

    Status UNAVAILABLE. A refusal is raised when the call (or ``hold()``, ``share()``,
    ``rotate()``) is made; an interruption where the caller awaits the call.

    Attributes:
        reason: Why, exactly:

            - ``"closed"``: the channel is CLOSED, or this handle is closed (``share()``,
              ``rotate()``);
            - ``"draining"``: the channel is draining and admits no new call or hold from here
              (``admit_during_drain``);
            - ``"interrupted"``: the channel's drain interrupted this cancel-on-drain call;
            - ``"rotated"``: a rotation retired the connection this cancel-on-drain call ran
              on; the channel stays open, and a new call goes to the new connection.
    """

    _CODE = grpc.StatusCode.UNAVAILABLE

    def __init__(self, details: str, reason: ClosedReason = "closed") -> None:
        """Raises ValueError for a ``reason`` not in ``CLOSED_REASONS``."""
        if reason not in CLOSED_REASONS:
            raise ValueError(f"reason must be one of {CLOSED_REASONS}, got {reason!r}")
        super().__init__(details)
        self.reason: ClosedReason = reason

    def __reduce__(self) -> tuple[type, tuple[str, ClosedReason]]:  # type: ignore[override]
        return type(self), (self.details() or "", self.reason)


class DrainTimeoutError(_GracefulRpcError):
    """The drain deadline passed while this call was in flight, and the channel cancelled it.

    Status CANCELLED. Raised where the caller awaits the call (or reads/writes its stream).
    """

    _CODE = grpc.StatusCode.CANCELLED
