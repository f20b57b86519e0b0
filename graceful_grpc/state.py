"""The lifecycle states of a graceful channel's connection."""

from __future__ import annotations

import enum

__all__ = ("ChannelState",)


class ChannelState(enum.Enum):
    """Where a connection is in its life. It only moves forward: OPEN -> DRAINING -> CLOSED."""

    OPEN = "open"
    """At least one handle is open; every call is admitted."""
    DRAINING = "draining"
    """Every handle is closed; waiting for in-flight calls and holds, admitting per policy."""
    CLOSED = "closed"
    """The underlying grpc.aio channel is closed; nothing is admitted."""
