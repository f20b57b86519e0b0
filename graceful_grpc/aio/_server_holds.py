"""The server's own handles on its ``holds`` channels, from ``start()`` to the end of its drain.

Handlers are held on these handles, not on the application's: closing the application's handle
(at SIGTERM, or concurrently with the server's stop) leaves the connection open for the handlers
that are still to come, and the connection drains only once the server lets go - so no order of
closing can refuse a handler's downstream call.
"""

from __future__ import annotations

import asyncio

from .._log import logger
from ..errors import ChannelClosedError
from ._channel import GracefulChannel

__all__ = ("ServerHolds",)


class ServerHolds:
    """The channels a server's handlers run held on, and the server's handles on them.

    Attributes:
        channels: The channels passed as ``holds=``.
        handles: What handlers take their holds on: the server's own handles once taken
            (``take()``), the channels themselves before.
    """

    __slots__ = ("_taken", "channels", "handles")

    def __init__(self, channels: tuple[GracefulChannel, ...]) -> None:
        self.channels = channels
        self.handles = channels
        self._taken = False

    def take(self) -> None:
        """A handle of the server's own on each channel still open (``share()``); once."""
        if self._taken:
            return
        self._taken = True
        handles = []
        for channel in self.channels:
            try:
                handles.append(channel.share())
            except ChannelClosedError:  # the handlers' calls on it will say so
                logger.debug("server started with closed holds channel %r", channel)
        self.handles = tuple(handles)

    async def release(self, grace: float) -> None:
        """Closes the server's handles (the end of its drain), draining a connection whose last
        handle this was within ``grace`` seconds. Never raises: a failure is logged."""
        if not self._taken:
            return
        handles, self.handles = self.handles, ()
        results = await asyncio.gather(
            *(handle.close(grace) for handle in handles), return_exceptions=True
        )
        for handle, result in zip(handles, results, strict=True):
            if isinstance(result, BaseException):
                logger.warning("closing the server's handle on %r failed: %r", handle, result)
