"""One drain: what it covers, its deadline (only ever moved earlier), its report, and its result.

A drain is either the drain of an old link after a rotation or the drain of the whole channel at
``close()``; the connection runs both through one routine (``Connection._run_drain``). The result
is a future set by the drain's shielded last part, so every awaiter gets the report even when the
task running the drain is cancelled.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import TYPE_CHECKING

from .._log import logger
from ..errors import ChannelClosedError, ClosedReason, DrainTimeoutError
from ._abortable import Abort
from ._link import CallSite, Link

if TYPE_CHECKING:
    from ..report import CallInfo, DrainReport

__all__ = ("Drain", "deadline_passed", "every", "interrupted", "is_cancel_on_drain")

_monotonic = time.monotonic
_WHY = {
    "interrupted": "graceful_grpc channel is draining: cancel-on-drain call interrupted",
    "rotated": "graceful_grpc connection retired by a rotation: cancel-on-drain call interrupted "
    "(the channel stays open: a new call goes to the new connection)",
}


def every(site: CallSite) -> bool:
    return True


def is_cancel_on_drain(site: CallSite) -> bool:
    return site.cancel_on_drain


def interrupted(reason: ClosedReason) -> Abort:
    """What a cancel-on-drain call's callers get: ``"interrupted"`` or ``"rotated"``."""
    return Abort(functools.partial(ChannelClosedError, _WHY[reason], reason))


def deadline_passed(grace: float) -> Abort:
    return Abort(
        functools.partial(
            DrainTimeoutError, f"graceful_grpc drain deadline of {grace:g}s passed; call cancelled"
        )
    )


class Drain:
    """One drain, from its start to its report.

    Attributes:
        own: The link this drain closes: the old link of a rotation, the current one at close.
        counted: For every link the report covers, its calls in flight and the lengths of its
            ``cancelled`` and ``interrupted`` lists as the drain started.
        admitted: Calls admitted while it ran (the channel's drain only; they go to ``own``).
        deadline_at: Loop time of the deadline; only ever moved earlier.
        grace: The grace that set ``deadline_at``, for messages.
        result: The report, set once the grpc channel is closed; never an exception.
    """

    __slots__ = (
        "admitted",
        "counted",
        "deadline_at",
        "grace",
        "kind",
        "own",
        "result",
        "running",
        "started",
        "task",
        "timeout",
    )

    def __init__(
        self, kind: str, own: Link, links: tuple[Link, ...], deadline_at: float, grace: float
    ) -> None:
        """``kind`` names it in logs: ``"old connection drained"`` or ``"drain finished"``."""
        self.kind = kind
        self.own = own
        self.counted = {
            link: (len(link), len(link.cancelled), len(link.interrupted)) for link in links
        }
        self.admitted = 0
        self.deadline_at = deadline_at
        self.grace = grace
        self.started = _monotonic()
        self.result: asyncio.Future[DrainReport] = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task[None] | None = None
        self.running = False  # its routine has started (a task cancelled before never runs)
        self.timeout: asyncio.Timeout | None = None  # while it waits

    def bring_forward(self, deadline_at: float, grace: float) -> None:
        """Moves the deadline to ``deadline_at`` if that is sooner."""
        if deadline_at < self.deadline_at:
            self.deadline_at, self.grace = deadline_at, grace
            if self.timeout is not None:
                self.timeout.reschedule(deadline_at)

    def abort(self, link: Link) -> None:
        """Aborts every call left on ``link`` (at the deadline), logging them per method."""
        before = len(link.cancelled)
        link.end_all(deadline_passed(self.grace), link.cancelled, every)
        _log_cancelled(link.cancelled[before:])

    def report(self, abandoned: int, links: tuple[Link, ...] | None = None) -> DrainReport:
        """The report of the calls on ``links`` (default: every link it covers)."""
        covered = tuple(self.counted) if links is None else links
        counted = self.counted
        cancelled = tuple(i for link in covered for i in link.cancelled[counted[link][1] :])
        interrupted_ = tuple(i for link in covered for i in link.interrupted[counted[link][2] :])
        at_start = sum(counted[link][0] for link in covered)
        if self.own in covered:
            at_start += self.admitted
        from ..report import DrainReport

        return DrainReport(
            closed=True,
            drained=not cancelled and not abandoned,
            waited=_monotonic() - self.started,
            completed=at_start - len(cancelled) - len(interrupted_),
            cancelled=cancelled,
            abandoned_holds=abandoned,
            interrupted=interrupted_,
        )

    def log(self, report: DrainReport) -> None:
        logger.info("%s: %s", self.kind, report.summary())


def _log_cancelled(cancelled: list[CallInfo]) -> None:
    """One WARNING per method (not per call: a mass abort must not flood the log)."""
    by_method: dict[tuple[str, str], list[float]] = {}
    for info in cancelled:
        by_method.setdefault((info.kind, info.method), []).append(info.age)
    for (kind, method), ages in by_method.items():
        logger.warning(
            "drain deadline passed, cancelled %d %s call(s) of %s (in flight up to %.3fs)",
            len(ages),
            kind,
            method,
            max(ages),
        )
