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

__all__ = ("CallSite", "Link", "LiveCall", "site_of")

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


class _Tracked(weakref.ref[Any]):
    """A link's weak reference to one of its calls, with the call's site and start time.

    Weak, as grpc.aio's own registry: a call its owner dropped must stay collectable, so that
    grpc cancels it on collection. A subclass, so that the call's site can be read from the call
    itself (``site_of``) by code that does not know the link: no registry of links anywhere.
    """

    __slots__ = ("site", "started")

    site: CallSite
    started: float


def site_of(call: Any) -> CallSite | None:
    """The site of ``call`` if a graceful channel's link (any channel's) tracks it now."""
    for reference in weakref.getweakrefs(call):
        if isinstance(reference, _Tracked):
            return reference.site
    return None


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
        self._calls: dict[int, _Tracked] = {}  # id(call) -> its weak reference
        self._emptied: asyncio.Future[None] | None = None  # while wait_empty() waits
        self.cancelled: list[CallInfo] = []
        self.interrupted: list[CallInfo] = []

    def __len__(self) -> int:
        """Calls registered: started and not yet reported done by grpc."""
        return len(self._calls)

    def track(self, call: Any, site: CallSite) -> Any:
        """Counts ``call`` in flight until grpc reports it done; returns it unchanged."""
        self._in_flight.incr()
        reference = _Tracked(call)
        reference.site = site
        reference.started = _monotonic()
        self._calls[id(call)] = reference
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
        reference = self._calls.get(id(call))
        if reference is None or reference() is not call:
            return None
        return LiveCall(call, reference.site, reference.started)

    def mark_cancel_on_drain(self, call: Any) -> LiveCall | None:
        """Records a registered call as cancel-on-drain; its registration, or None if it has
        none on this link."""
        live = self.find(call)
        if live is None:
            return None
        site = self._calls[id(call)].site = live.site._replace(cancel_on_drain=True)
        return live._replace(site=site)

    def live(self) -> list[LiveCall]:
        """The registered calls whose objects still exist."""
        calls = []
        for reference in list(self._calls.values()):
            call = reference()
            if call is not None:
                calls.append(LiveCall(call, reference.site, reference.started))
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
