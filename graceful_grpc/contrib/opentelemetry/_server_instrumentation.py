"""instrument(server): a GracefulServer's handlers in flight and its drain, as metrics.

The same conventions as the channel's instruments, under ``graceful_grpc.server.*``: the gauge
reads the server's books only when a reader collects, and the drain figures arrive through the
server's drain listener, once; the handlers themselves pay nothing.
"""

from __future__ import annotations

import collections
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping

from opentelemetry.metrics import CallbackOptions, Counter, Histogram, MeterProvider, Observation
from opentelemetry.util.types import AttributeValue

from ...aio import GracefulServer
from ...report import DrainReport
from . import _semconv as names
from ._instruments import SharedInstruments, instruments_of

__all__ = (
    "SERVER_DRAIN_CALLS",
    "SERVER_DRAIN_DURATION",
    "SERVER_IN_FLIGHT",
    "instrument_server",
)

SERVER_IN_FLIGHT = "graceful_grpc.server.calls.in_flight"
SERVER_DRAIN_DURATION = "graceful_grpc.server.drain.duration"
SERVER_DRAIN_CALLS = "graceful_grpc.server.drain.calls"

Attributes = dict[str, AttributeValue]


class _ServerInstruments:
    """One meter provider's server instruments, and the servers its gauge reads."""

    def __init__(self, shared: SharedInstruments) -> None:
        self._lock = threading.Lock()
        self._observed: weakref.WeakKeyDictionary[GracefulServer, Attributes] = (
            weakref.WeakKeyDictionary()
        )
        meter = shared.meter
        meter.create_observable_up_down_counter(
            SERVER_IN_FLIGHT,
            callbacks=[self._observe],
            unit="{call}",
            description="Server handlers running: started and not yet ended.",
        )
        self.duration: Histogram = meter.create_histogram(
            SERVER_DRAIN_DURATION,
            unit="s",
            description="How long each server drain (stop()) took.",
            explicit_bucket_boundaries_advisory=names.DURATION_BUCKETS,
        )
        self.calls: Counter = meter.create_counter(
            SERVER_DRAIN_CALLS,
            unit="{call}",
            description="Server handlers running during a drain, by how they ended.",
        )

    def observe(self, server: GracefulServer, attributes: Attributes) -> None:
        with self._lock:
            if server in self._observed:
                raise ValueError(
                    f"{server!r} is already instrumented with this meter provider; "
                    "uninstrument() the first instrumentation before instrumenting it again"
                )
            self._observed[server] = attributes

    def forget(self, server: GracefulServer | None) -> None:
        if server is not None:
            with self._lock:
                self._observed.pop(server, None)

    def _observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            observed = list(self._observed.items())
        totals: dict[frozenset[tuple[str, AttributeValue]], Observation] = {}
        for server, attributes in observed:
            key = frozenset(attributes.items())
            previous = totals[key].value if key in totals else 0
            totals[key] = Observation(previous + server.in_flight, attributes)
        return list(totals.values())


def instrument_server(
    server: GracefulServer,
    *,
    meter_provider: MeterProvider | None,
    attributes: Mapping[str, AttributeValue] | None,
) -> list[Callable[[], None]]:
    """Starts reporting ``server``; returns the steps that undo it (for an Instrumentation).

    Raises:
        ValueError: already instrumented with this provider; an attribute key of our own.
        TypeError: a bad attribute.
    """
    conventions = names.Conventions.from_env()
    base = {**names.check_attributes(attributes), **conventions.system()}
    shared = instruments_of(meter_provider)
    instruments = shared.once("server", lambda: _ServerInstruments(shared))
    instruments.observe(server, base)
    ref = weakref.ref(server)

    def on_drain(report: DrainReport) -> None:
        outcome = "drained" if report.drained else "deadline"
        instruments.duration.record(report.waited, {**base, names.OUTCOME: outcome})
        instruments.calls.add(report.completed, {**base, names.RESULT: "completed"})
        for result, infos in (("cancelled", report.cancelled), ("interrupted", report.interrupted)):
            for method, count in collections.Counter(info.method for info in infos).items():
                attrs = {**base, names.RESULT: result, **conventions.method(method)}
                instruments.calls.add(count, attrs)

    server.add_drain_listener(on_drain)

    def remove_listener() -> None:
        alive = ref()
        if alive is not None:
            alive.remove_drain_listener(on_drain)

    return [lambda: instruments.forget(ref()), remove_listener]
