"""One grpc.aio channel of a graceful connection: the calls started on it and what became of them.

A connection has one current link, and after rotations some old ones that drain on their own. The
link keeps the books of its calls; the connection decides what happens to them.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from grpc import aio

from .._counting import Counter
from ._abortable import Abort, abort, aborted

if TYPE_CHECKING:
    from ..report import CallInfo, CallKind

__all__ = ("CallSite", "Link", "LiveCall")

_monotonic = time.monotonic


class CallSite(NamedTuple):
    """What a multicallable calls: recorded with each of its calls, for drain reports.

    Attributes:
        method: The full method name.
        kind: The call kind.
        cancel_on_drain: Calls are interrupted when a drain of their link starts.
    """

    method: str
    kind: CallKind
    cancel_on_drain: bool = False


class LiveCall(NamedTuple):
    """A call still registered on a link."""

    call: Any
    site: CallSite
    started: float


class Link:
    """One grpc.aio channel, the calls started on it (until grpc reports each done), and the calls
    the connection ended on it (``cancelled`` at a deadline, ``interrupted`` as a drain started).

    Attributes:
        raw: The grpc.aio channel.
        cancelled: Calls aborted at a drain deadline, in order.
        interrupted: Cancel-on-drain calls interrupted as a drain started, in order.
    """

    __slots__ = ("_calls", "_emptied", "_in_flight", "cancelled", "interrupted", "raw")

    def __init__(self, raw: aio.Channel, in_flight: Counter) -> None:
        """``in_flight`` is the connection's counter of calls on all of its links."""
        self.raw = raw
        self._in_flight = in_flight
        # id(call) -> (weak reference, site, start time). Weak, as grpc.aio's own registry: a call
        # its owner dropped must stay collectable, so that grpc cancels it on collection.
        self._calls: dict[int, tuple[weakref.ref[Any], CallSite, float]] = {}
        self._emptied: asyncio.Future[None] | None = None  # while wait_empty() waits
        self.cancelled: list[CallInfo] = []
        self.interrupted: list[CallInfo] = []

    def __len__(self) -> int:
        """Calls registered: started and not yet reported done by grpc."""
        return len(self._calls)

    def track(self, call: Any, site: CallSite) -> Any:
        """Counts ``call`` in flight until grpc reports it done; returns it unchanged."""
        self._in_flight.incr()
        self._calls[id(call)] = (weakref.ref(call), site, _monotonic())
        call.add_done_callback(self._call_done)
        return call

    def _call_done(self, call: Any) -> None:
        # grpc.aio hands done-callbacks the object it returned (intercepted calls included), also
        # when it cancels a collected call; an entry is removed before its id can be reused. The
        # pop makes the count exactly-once; it never raises inside grpc's callback.
        if self._calls.pop(id(call), None) is not None:
            self._in_flight.decr()
            if self._emptied is not None and not self._calls and not self._emptied.done():
                self._emptied.set_result(None)

    def find(self, call: Any) -> LiveCall | None:
        """The registration of ``call`` on this link, if it has one."""
        entry = self._calls.get(id(call))
        if entry is None or entry[0]() is not call:
            return None
        return LiveCall(call, entry[1], entry[2])

    def mark_cancel_on_drain(self, call: Any) -> LiveCall | None:
        """Records a registered call as cancel-on-drain; its registration, or None if it has
        none on this link."""
        live = self.find(call)
        if live is None:
            return None
        site = live.site._replace(cancel_on_drain=True)
        self._calls[id(call)] = (self._calls[id(call)][0], site, live.started)
        return live._replace(site=site)

    def live(self) -> list[LiveCall]:
        """The registered calls whose objects still exist."""
        calls = []
        for reference, site, started in list(self._calls.values()):
            call = reference()
            if call is not None:
                calls.append(LiveCall(call, site, started))
        return calls

    def end(self, live: LiveCall, reason: Abort, into: list[CallInfo]) -> None:
        """Aborts a call for ``reason`` and records it in ``into`` (``cancelled`` or
        ``interrupted``) - unless it has ended or was aborted already."""
        call = live.call
        if call.done() or aborted(call):
            return
        if abort(call, reason):
            from ..report import CallInfo

            into.append(CallInfo(live.site.method, live.site.kind, _monotonic() - live.started))

    def end_all(
        self, reason: Abort, into: list[CallInfo], only: Callable[[CallSite], bool]
    ) -> None:
        """``end()`` for every live call whose site passes ``only``."""
        for live in self.live():
            if only(live.site):
                self.end(live, reason, into)

    async def wait_empty(self) -> None:
        """Returns once no call is registered (at once if none is)."""
        while self._calls:
            self._emptied = asyncio.get_running_loop().create_future()
            try:
                await self._emptied
            finally:
                self._emptied = None
