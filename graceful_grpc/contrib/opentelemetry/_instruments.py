"""The instruments of one meter provider, shared by every instrumentation that reports to it.

OpenTelemetry identifies an instrument by its meter and name: asking a meter for an observable
instrument a second time returns the first one and drops the new callbacks. So each meter
provider gets one set of instruments, created on first use; its observable callbacks read every
source currently observed through it (a channel or tracker and its attributes), at collection
time only. Collection may run on an exporter's thread, hence the lock.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar, cast

from opentelemetry.metrics import (
    CallbackOptions,
    Counter,
    Histogram,
    Meter,
    MeterProvider,
    Observation,
    get_meter_provider,
)
from opentelemetry.util.types import AttributeValue

from ... import __version__
from . import _semconv as names

__all__ = ("Observed", "SharedInstruments", "instruments_of")

Attributes = dict[str, AttributeValue]
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Observed:
    """A source of gauge readings: functions reading its counters, and the attributes to add.

    Attributes:
        in_flight: Reads the calls in flight.
        holds: Reads the outstanding holds; None if the source has no holds.
        attributes: The data points' attributes.
    """

    in_flight: Callable[[], int]
    holds: Callable[[], int] | None
    attributes: Attributes


class SharedInstruments:
    """The instruments of one meter, and the sources its observable instruments read."""

    def __init__(self, meter: Meter) -> None:
        self._meter = meter
        self._lock = threading.Lock()
        self._observed: weakref.WeakKeyDictionary[object, Observed] = weakref.WeakKeyDictionary()
        self._created: dict[str, object] = {}
        meter.create_observable_up_down_counter(
            names.IN_FLIGHT,
            callbacks=[self._observe_in_flight],
            unit="{call}",
            description="RPCs started and not yet at their final status.",
        )
        meter.create_observable_up_down_counter(
            names.HOLDS,
            callbacks=[self._observe_holds],
            unit="{hold}",
            description="Outstanding holds: units of work keeping the connection open.",
        )

    # -- observed sources (gauges) ---------------------------------------------------------------

    def observe(self, source: object, observed: Observed) -> None:
        """Starts reporting ``source``'s counters; it is dropped when garbage-collected.

        Raises:
            ValueError: ``source`` is already observed through this meter provider.
        """
        with self._lock:
            if source in self._observed:
                raise ValueError(
                    f"{source!r} is already instrumented with this meter provider; "
                    "uninstrument() the first instrumentation before instrumenting it again"
                )
            self._observed[source] = observed

    def forget(self, source: object | None) -> None:
        """Stops reporting ``source`` (no-op if it is not observed, or None: already gone)."""
        if source is None:
            return
        with self._lock:
            self._observed.pop(source, None)

    def _snapshot(self) -> list[Observed]:
        with self._lock:
            return list(self._observed.values())

    def _observe_in_flight(self, options: CallbackOptions) -> Iterable[Observation]:
        return _summed((o.in_flight(), o.attributes) for o in self._snapshot())

    def _observe_holds(self, options: CallbackOptions) -> Iterable[Observation]:
        return _summed((o.holds(), o.attributes) for o in self._snapshot() if o.holds is not None)

    # -- synchronous instruments, created on first use -------------------------------------------

    def drain_instruments(self) -> tuple[Histogram, Counter, Counter]:
        """The drain duration histogram, and the drain calls and abandoned holds counters."""
        return self._once(
            names.DRAIN_DURATION,
            lambda: (
                self._meter.create_histogram(
                    names.DRAIN_DURATION,
                    unit="s",
                    description="How long each drain of a connection took.",
                    explicit_bucket_boundaries_advisory=names.DURATION_BUCKETS,
                ),
                self._meter.create_counter(
                    names.DRAIN_CALLS,
                    unit="{call}",
                    description="Calls in flight during a drain, by how they ended.",
                ),
                self._meter.create_counter(
                    names.ABANDONED_HOLDS,
                    unit="{hold}",
                    description="Holds still outstanding at a drain's deadline.",
                ),
            ),
        )

    def rotations(self) -> Counter:
        """The rotations counter."""
        return self._once(
            names.ROTATIONS,
            lambda: self._meter.create_counter(
                names.ROTATIONS,
                unit="{rotation}",
                description="Times a channel replaced its connection.",
            ),
        )

    def step_duration(self) -> Histogram:
        """The shutdown step duration histogram."""
        return self._once(
            names.STEP_DURATION,
            lambda: self._meter.create_histogram(
                names.STEP_DURATION,
                unit="s",
                description="How long each step of a ShutdownSequence took.",
                explicit_bucket_boundaries_advisory=names.DURATION_BUCKETS,
            ),
        )

    @property
    def meter(self) -> Meter:
        """The provider's ``graceful_grpc`` meter (for instruments made with ``once``)."""
        return self._meter

    def once(self, key: str, create: Callable[[], _T]) -> _T:
        """``create()``'s value the first time ``key`` is asked for, the same one afterwards."""
        return self._once(key, create)

    def _once(self, key: str, create: Callable[[], _T]) -> _T:
        with self._lock:
            if key not in self._created:
                self._created[key] = create()
            return cast(_T, self._created[key])


def _summed(readings: Iterable[tuple[int, Attributes]]) -> list[Observation]:
    """One observation per attribute set: sources sharing attributes add up."""
    totals: dict[frozenset[tuple[str, AttributeValue]], tuple[int, Attributes]] = {}
    for value, attributes in readings:
        key = frozenset(attributes.items())
        previous, _ = totals.get(key, (0, attributes))
        totals[key] = (previous + value, attributes)
    return [Observation(value, attributes) for value, attributes in totals.values()]


_by_provider: weakref.WeakKeyDictionary[MeterProvider, SharedInstruments] = (
    weakref.WeakKeyDictionary()
)
_global: SharedInstruments | None = None  # those of the global provider, as first obtained
_lock = threading.Lock()


def instruments_of(provider: MeterProvider | None) -> SharedInstruments:
    """The shared instruments of a provider's ``graceful_grpc`` meter, created on first use.

    None, or the provider that is currently global, means the global provider. Until the
    application sets one, that is OpenTelemetry's proxy, whose instruments are forwarded to the
    real provider once it is set; the proxy's instruments then stay the global ones, because
    creating them again on the real provider would make duplicates whose callbacks the SDK drops.
    """
    global _global
    with _lock:
        current = get_meter_provider()
        if provider is None or provider is current:
            if _global is None:
                _global = _by_provider.get(current) or _create(current)
            return _global
        return _by_provider.get(provider) or _create(provider)


def _create(provider: MeterProvider) -> SharedInstruments:
    shared = SharedInstruments(provider.get_meter(names.METER_NAME, __version__))
    _by_provider[provider] = shared
    return shared
