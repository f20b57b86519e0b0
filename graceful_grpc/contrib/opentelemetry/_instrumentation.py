"""instrument() and instrument_shutdown(): publish a channel's or a shutdown's figures as metrics.

Nothing here touches the call path: the gauges read the channel's atomic counters when a metric
reader collects, and the drain and step figures arrive through the channel's drain listeners and
the sequence's step listeners, once per drain or step.
"""

from __future__ import annotations

import collections
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.metrics import MeterProvider
from opentelemetry.util.types import AttributeValue

from ...aio import GracefulChannel, GracefulServer, InFlightTracker
from ...report import CallInfo, DrainReport
from ...shutdown import ShutdownSequence, StepResult
from . import _semconv as names
from ._instruments import Observed, SharedInstruments, instruments_of
from ._server_instrumentation import instrument_server

__all__ = ("Instrumentation", "instrument", "instrument_shutdown")


class Instrumentation:
    """What ``instrument()`` or ``instrument_shutdown()`` set up; ``uninstrument()`` undoes it.

    Holds its channel, tracker or sequence weakly: instrumenting does not keep it alive, and a
    channel or tracker that is garbage-collected stops being reported (keep the handle you
    instrumented while its connection is in use). Made by those functions, not directly.
    """

    def __init__(self, target: object, undo: list[Callable[[], None]]) -> None:
        self._target = weakref.ref(target)
        self._undo = undo
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        """Whether it is still reporting (``uninstrument()`` has not been called)."""
        return bool(self._undo)

    def uninstrument(self) -> None:
        """Stops reporting: the gauges drop the target, the listeners are removed.

        Idempotent; safe from any thread for a tracker, from the channel's or sequence's event
        loop thread otherwise (like any other call on them). Counts already recorded stay in the
        meter provider's cumulative totals.
        """
        with self._lock:
            undo, self._undo = self._undo, []
        for step in reversed(undo):
            step()

    def __repr__(self) -> str:
        state = "active" if self.active else "uninstrumented"
        return f"<Instrumentation {state} of {self._target()!r}>"


def instrument(
    channel: GracefulChannel | InFlightTracker | GracefulServer,
    *,
    meter_provider: MeterProvider | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Instrumentation:
    """Reports a graceful channel's (or an ``InFlightTracker``'s) figures as OpenTelemetry metrics.

    Instruments (meter ``graceful_grpc``): ``graceful_grpc.client.calls.in_flight`` and
    ``graceful_grpc.client.holds`` (observable up-down counters, read at collection time only);
    for a GracefulChannel also ``graceful_grpc.client.drain.duration`` (histogram, one point per
    drain, ``graceful_grpc.drain.outcome`` = ``drained`` / ``deadline``),
    ``graceful_grpc.client.drain.calls`` (``graceful_grpc.drain.result`` = ``completed`` /
    ``cancelled`` / ``interrupted``, the latter two with the method),
    ``graceful_grpc.client.drain.abandoned_holds``, and ``graceful_grpc.client.rotations``
    (the drains include each old connection's after a rotation). A tracker has only the
    in-flight gauge.

    A ``GracefulServer`` (``aio.server()``) gets ``graceful_grpc.server.calls.in_flight``
    (handlers running), ``graceful_grpc.server.drain.duration`` and
    ``graceful_grpc.server.drain.calls``, with the same attributes as the channel's.

    A channel is one handle on its connection, and handles made with ``share()`` share the
    connection's counters and drains: so instrumenting a second handle of one connection with
    the same meter provider, or the same channel or tracker again, while the first
    instrumentation is active, raises ``ValueError`` (each drain is counted once per provider);
    instrumenting it with another provider (another backend) is fine.

    Args:
        channel: A ``GracefulChannel``, an ``aio.InFlightTracker`` or a ``GracefulServer``.
        meter_provider: Where to report; None uses the global one
            (``opentelemetry.metrics.get_meter_provider()``) at the time of this call.
        attributes: Added to every data point, e.g. ``{"server.address": target}``.

    Returns:
        The instrumentation; call ``uninstrument()`` to stop reporting.

    Raises:
        TypeError: ``channel`` is neither, or a bad attribute (see below).
        ValueError: it, or another handle of its connection, is already instrumented with this
            provider; an attribute key the instrumentation sets itself (``rpc.*``,
            ``graceful_grpc.*``).
    """
    if isinstance(channel, GracefulServer):
        undo_server = instrument_server(
            channel, meter_provider=meter_provider, attributes=attributes
        )
        return Instrumentation(channel, undo_server)
    if not isinstance(channel, GracefulChannel | InFlightTracker):
        raise TypeError(
            f"instrument() takes a GracefulChannel or an InFlightTracker (or a GracefulServer), "
            f"got {type(channel).__name__}"
        )
    conventions = names.Conventions.from_env()
    base = {**names.check_attributes(attributes), **conventions.system()}
    shared = instruments_of(meter_provider)
    source = weakref.ref(channel)
    holds = None if isinstance(channel, InFlightTracker) else _reader(source, "holds")
    undo: list[Callable[[], None]] = []
    try:
        if isinstance(channel, GracefulChannel):  # first: refused for a second handle
            undo += _listen_to_drains(channel, shared, base, conventions)
            undo += _listen_to_rotations(channel, shared, base)
        shared.observe(channel, Observed(_reader(source, "in_flight"), holds, base))
    except BaseException:
        for step in reversed(undo):
            step()
        raise
    undo.append(lambda: shared.forget(source()))
    return Instrumentation(channel, undo)


def instrument_shutdown(
    sequence: ShutdownSequence,
    *,
    meter_provider: MeterProvider | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Instrumentation:
    """Records each step of a ``ShutdownSequence`` in ``graceful_grpc.shutdown.step.duration``.

    A histogram (unit ``s``) with attributes ``step`` (the step's name) and ``outcome``
    (``StepResult.outcome``: ``ok`` / ``timeout`` / ``abandoned`` / ``error``), one point per step
    as it finishes, the steps a forced shutdown cuts short included. A channel close or server
    stop step is also reported by the channel's or server's own drain metrics if that is
    instrumented (``instrument()``).

    Args:
        sequence: The sequence; instrument it before it starts to see every step (steps that
            finished before are not recorded).
        meter_provider: Where to report; None uses the global one.
        attributes: Added to every data point.

    Raises:
        TypeError: ``sequence`` is not a ShutdownSequence, or a bad attribute.
        ValueError: an attribute key the instrumentation sets itself.
    """
    if not isinstance(sequence, ShutdownSequence):
        raise TypeError(
            f"instrument_shutdown() takes a ShutdownSequence, got {type(sequence).__name__}"
        )
    base = names.check_attributes(attributes)
    histogram = instruments_of(meter_provider).step_duration()

    def on_step(result: StepResult) -> None:
        attrs = {**base, names.STEP: result.name, names.STEP_OUTCOME: result.outcome}
        histogram.record(result.duration, attrs)

    sequence.add_step_listener(on_step)
    return Instrumentation(sequence, [_remover(sequence, "remove_step_listener", on_step)])


def _reader(source: weakref.ref[Any], attribute: str) -> Callable[[], int]:
    """Reads ``source().<attribute>``, 0 once the source is gone; holds the source weakly."""

    def read() -> int:
        target = source()
        return 0 if target is None else int(getattr(target, attribute))

    return read


def _remover(target: object, method: str, listener: Callable[..., None]) -> Callable[[], None]:
    """Undoes ``target.add_...(listener)`` with ``target.<method>(listener)``, if still alive."""
    ref = weakref.ref(target)

    def remove() -> None:
        alive = ref()
        if alive is not None:
            getattr(alive, method)(listener)

    return remove


def _listen_to_drains(
    channel: GracefulChannel,
    shared: SharedInstruments,
    base: dict[str, AttributeValue],
    conventions: names.Conventions,
) -> list[Callable[[], None]]:
    duration, calls, abandoned = shared.drain_instruments()

    def on_drain(report: DrainReport) -> None:
        outcome = "drained" if report.drained else "deadline"
        duration.record(report.waited, {**base, names.OUTCOME: outcome})
        calls.add(report.completed, {**base, names.RESULT: "completed"})
        for result, infos in (("cancelled", report.cancelled), ("interrupted", report.interrupted)):
            for method, count in _count_by_method(infos).items():
                calls.add(count, {**base, names.RESULT: result, **conventions.method(method)})
        abandoned.add(report.abandoned_holds, base)

    recorder = _Recorder("drain", shared, on_drain)
    _add(channel.add_drain_listener, recorder)
    return [_remover(channel, "remove_drain_listener", recorder)]


def _listen_to_rotations(
    channel: GracefulChannel, shared: SharedInstruments, base: dict[str, AttributeValue]
) -> list[Callable[[], None]]:
    rotations = shared.rotations()

    def on_rotation(_rotations: int) -> None:
        rotations.add(1, base)

    recorder = _Recorder("rotation", shared, on_rotation)
    _add(channel.add_rotation_listener, recorder)
    return [_remover(channel, "remove_rotation_listener", recorder)]


class _Recorder:
    """A connection's listener recording into one meter provider's instruments. Equal to every
    other recorder of the same kind and provider: the connection's listeners (shared by its
    handles) refuse a second one, so each event is recorded once per provider."""

    __slots__ = ("_kind", "_record", "_shared")

    def __init__(self, kind: str, shared: SharedInstruments, record: Callable[[Any], None]) -> None:
        self._kind = kind
        self._shared = shared
        self._record = record

    def __call__(self, event: Any) -> None:
        self._record(event)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _Recorder)
            and other._kind == self._kind
            and other._shared is self._shared
        )

    def __hash__(self) -> int:
        return hash((self._kind, id(self._shared)))


def _add(add_listener: Callable[[Any], None], recorder: _Recorder) -> None:
    try:
        add_listener(recorder)
    except ValueError:
        raise ValueError(
            "this channel's connection is already instrumented with this meter provider (through "
            "this handle or another one: handles share their connection's drains); "
            "uninstrument() the first instrumentation before instrumenting it again"
        ) from None


def _count_by_method(infos: tuple[CallInfo, ...]) -> collections.Counter[str]:
    return collections.Counter(info.method for info in infos)
