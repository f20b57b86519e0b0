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
            (``take()``), the channels themselves before, none once let go.
    """

    __slots__ = ("_closing", "_let_go", "_taken", "channels", "handles")

    def __init__(self, channels: tuple[GracefulChannel, ...]) -> None:
        self.channels = channels
        self.handles = channels
        self._taken = False
        self._let_go = False
        self._closing: set[asyncio.Future[None]] = set()  # referenced until done

    def take(self) -> None:
        """A handle of the server's own on each channel still open (``share()``); once, and
        never after ``let_go()`` (a server started after its stop holds nothing)."""
        if self._taken or self._let_go:
            return
        self._taken = True
        handles = []
        for channel in self.channels:
            try:
                handles.append(channel.share())
            except ChannelClosedError:  # the handlers' calls on it will say so
                logger.debug("server started with closed holds channel %r", channel)
        self.handles = tuple(handles)

    def let_go(self) -> tuple[asyncio.Future[None], ...]:
        """Starts closing the server's handles (the end of its drain); returns the closes.

        A close that is a connection's last drains it under that channel's own
        ``drain_timeout``, also after the server's ``stop()`` has returned at its deadline (the
        application asked it to close). A close never raises: a failure is logged.
        """
        self._let_go = True
        if not self._taken:
            return ()
        handles, self.handles = self.handles, ()
        closes = tuple(asyncio.ensure_future(_close(handle)) for handle in handles)
        for close in closes:
            self._closing.add(close)
            close.add_done_callback(self._closing.discard)
        return closes


async def _close(handle: GracefulChannel) -> None:
    try:
        await handle.close()
    except Exception as error:
        logger.warning("closing the server's handle on %r failed: %r", handle, error)
