"""What a drain did: the report close() returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ("CallInfo", "CallKind", "DrainReport")

CallKind = Literal["unary_unary", "unary_stream", "stream_unary", "stream_stream"]


@dataclass(frozen=True, slots=True)
class CallInfo:
    """A call that was still in flight when the drain deadline passed.

    Attributes:
        method: The full method path, e.g. ``/pkg.Service/Method``.
        kind: Which of the four call kinds it was.
        age: Seconds from the call's start to its cancellation.
    """

    method: str
    kind: CallKind
    age: float


@dataclass(frozen=True, slots=True)
class DrainReport:
    """The outcome of ``GracefulChannel.close()``.

    Attributes:
        closed: The connection was really closed (this was the last open handle).
        drained: Nothing was cancelled and no hold was abandoned.
        waited: Seconds the drain took (0 when this close did not close the connection).
        completed: Calls that finished on their own during the drain.
        cancelled: Calls cancelled at the drain deadline.
        abandoned_holds: Holds still outstanding at the drain deadline.
        interrupted: Calls to methods marked cancel-on-drain, interrupted when the drain started
            (not counted in ``cancelled``; they do not make ``drained`` False).
    """

    closed: bool
    drained: bool
    waited: float
    completed: int
    cancelled: tuple[CallInfo, ...]
    abandoned_holds: int
    interrupted: tuple[CallInfo, ...] = ()

    def summary(self) -> str:
        """One line for logs."""
        return (
            f"closed={self.closed} drained={self.drained} waited={self.waited:.3f}s "
            f"completed={self.completed} cancelled={len(self.cancelled)} "
            f"interrupted={len(self.interrupted)} abandoned_holds={self.abandoned_holds}"
        )
