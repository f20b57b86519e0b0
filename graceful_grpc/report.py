"""What a drain did: the report ``close()``, ``rotate()``, a server's ``stop()`` and the drain
listeners get."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ("CallInfo", "CallKind", "DrainReport")

CallKind = Literal["unary_unary", "unary_stream", "stream_unary", "stream_stream"]


@dataclass(frozen=True, slots=True)
class CallInfo:
    """A call the drain ended: cancelled at the drain deadline, or interrupted as cancel-on-drain.

    In a server's report (``GracefulServer.stop()``), a handler the drain ended.

    Attributes:
        method: The full method path, e.g. ``/pkg.Service/Method``.
        kind: Which of the four call kinds it was.
        age: Seconds from the call's (a server: the handler's) start to the moment the drain
            ended it: its cancellation at the deadline (or at once, if the drain itself was
            cancelled), or its interruption. A cancel-on-drain call started while the drain runs
            is interrupted at once: an age near 0.
    """

    method: str
    kind: CallKind
    age: float


@dataclass(frozen=True, slots=True)
class DrainReport:
    """What one drain did. Every drain makes one:

    - ``GracefulChannel.close()`` of the last open handle: the channel's drain, covering the
      current connection and the old ones still draining after rotations (their calls are also
      in their rotation's report). Every close of the last handle, and a repeated close of any
      handle, gets the same report. The close of a handle that leaves others open returns at once
      with ``closed=False``, ``drained=True`` and nothing counted.
    - ``GracefulChannel.rotate()``: the old connection's drain, under ``grace`` (or a ``close()``'s
      sooner deadline); ``abandoned_holds`` is 0, as holds carry over to the new connection.
    - Drain listeners (``add_drain_listener``) hear of each grpc connection's drain once: a
      rotation's report as ``rotate()`` returns it, and at ``close()`` a report of the calls on the
      connection current at the close only.
    - ``GracefulServer.stop()``: the server's drain, of its handlers: ``closed`` is True,
      ``abandoned_holds`` 0; ``waited`` includes ``unready_delay`` and grpc's own stop. A handler
      that is a plain function on the server's thread pool cannot be cancelled: at the deadline it
      is listed in ``cancelled`` and keeps running.
    - ``ShutdownSequence``: a step that closes a channel or stops a server (``add_channel``,
      ``add_server``) keeps the report in ``StepResult.drain``, and its outcome is ``"timeout"``
      when the report is not ``drained``; any other step returning a DrainReport keeps it too.

    Attributes:
        closed: The connection (a server: the server) was really closed; False only for the close
            of a handle that left others open.
        drained: Nothing was cancelled and no hold was abandoned. Interrupted calls do not count,
            nor holds released as they were garbage-collected.
        waited: Seconds from the drain's start to its report, closing the grpc channel included
            (0 when this close did not close the connection).
        completed: Calls (a server: handlers) that ended during the drain without the drain
            ending them - answered, failed, or cancelled by their caller: those in flight as it
            started and those admitted while it ran, less the cancelled and interrupted ones.
        cancelled: Calls still in flight at the drain deadline, cancelled then (their callers get
            ``DrainTimeoutError``), or at once if the drain itself was cancelled (its event loop
            shutting down, say).
        abandoned_holds: Holds still outstanding at the channel's drain deadline, ended then (the
            code inside them is not stopped, but the channel admits nothing more from it).
        interrupted: Calls to cancel-on-drain methods, and calls marked with
            ``cancel_on_drain()``, that the drain interrupted - as it started, or as they started
            or were marked while it ran; their callers get ``ChannelClosedError`` (reason
            ``"interrupted"``, or ``"rotated"`` for a rotation's). A server's are the handlers of
            its cancel-on-drain methods (the health Watch among them), ended with UNAVAILABLE.
            They are not counted in ``cancelled`` or ``completed`` and do not make ``drained``
            False.
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
