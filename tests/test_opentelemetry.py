"""OpenTelemetry metrics read back with the SDK's in-memory reader, against the Echo server."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)

import graceful_grpc
from graceful_grpc import CallInfo, DrainReport, DrainTimeoutError, ShutdownSequence, aio
from graceful_grpc.contrib import opentelemetry as gotel
from graceful_grpc.testing import EchoServer

from .support.calls import METHOD, begin_close, call_once, finish, foreign_hold, start

ECHO = "graceful_grpc.testing.v1.Echo"
GRPC = {"rpc.system": "grpc"}
TARGET = {"server.address": "echo"}


@dataclass
class Metrics:
    """The reader's data points, by metric name, with attributes as plain dicts."""

    scopes: list[tuple[str, str | None]]
    points: dict[str, list[tuple[dict[str, Any], Any]]]
    units: dict[str, str]

    def value(self, name: str, **attributes: Any) -> Any:
        """The value (number, or histogram point) of the one point with exactly these attributes."""
        matches = [p for attrs, p in self.points.get(name, []) if attrs == attributes]
        assert len(matches) == 1, (name, attributes, self.points.get(name))
        point = matches[0]
        return point.value if isinstance(point, NumberDataPoint) else point

    def attribute_sets(self, name: str) -> list[dict[str, Any]]:
        return [attrs for attrs, _ in self.points.get(name, [])]


def collect(reader: InMemoryMetricReader) -> Metrics:
    data = reader.get_metrics_data()
    scopes: list[tuple[str, str | None]] = []
    points: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    units: dict[str, str] = {}
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            scopes.append((scope_metrics.scope.name, scope_metrics.scope.version))
            for metric in scope_metrics.metrics:
                units[metric.name] = metric.unit or ""
                points[metric.name] = [
                    (dict(p.attributes or {}), p) for p in metric.data.data_points
                ]
    return Metrics(scopes, points, units)


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def provider(reader: InMemoryMetricReader) -> MeterProvider:
    return MeterProvider(metric_readers=[reader])


@pytest.fixture
async def channel(echo_server: EchoServer) -> AsyncIterator[aio.GracefulChannel]:
    ch = aio.insecure_channel(echo_server.target, drain_timeout=30)
    yield ch
    await ch.close(grace=0)


async def test_scripted_run_reports_every_channel_instrument(
    echo_server: EchoServer,
    channel: aio.GracefulChannel,
    provider: MeterProvider,
    reader: InMemoryMetricReader,
) -> None:
    instrumentation = gotel.instrument(channel, meter_provider=provider, attributes=TARGET)
    completing = [start(channel, "unary_unary", gate="finish") for _ in range(2)]
    stuck = {kind: start(channel, kind, gate="never") for kind in ("unary_stream", "stream_stream")}
    waiters = [asyncio.create_task(finish(call, kind)) for kind, call in stuck.items()]
    hold = foreign_hold(channel)  # never released: abandoned at the deadline
    await echo_server.wait_arrivals("finish", 2)
    await echo_server.wait_arrivals("never", 2)

    # Calls in flight at collection time, read on another thread as an exporter would.
    during = await asyncio.to_thread(collect, reader)
    assert during.value("graceful_grpc.client.calls.in_flight", **TARGET, **GRPC) == 4
    assert during.value("graceful_grpc.client.holds", **TARGET, **GRPC) == 1
    assert "graceful_grpc.client.drain.duration" not in during.points

    closing = await begin_close(channel, grace=30)
    echo_server.open_gate("finish")
    for call in completing:
        await call
    await channel.close(grace=0)  # brings the deadline forward: the stuck calls are cancelled
    report = await closing
    for waiter in waiters:
        with pytest.raises(DrainTimeoutError):
            await waiter
    assert (report.completed, len(report.cancelled), report.abandoned_holds) == (2, 2, 1)

    after = collect(reader)
    assert after.scopes == [("graceful_grpc", graceful_grpc.__version__)]
    assert after.value("graceful_grpc.client.calls.in_flight", **TARGET, **GRPC) == 0
    assert after.value("graceful_grpc.client.holds", **TARGET, **GRPC) == channel.holds
    drain = after.value(
        "graceful_grpc.client.drain.duration",
        **TARGET,
        **GRPC,
        **{"graceful_grpc.drain.outcome": "deadline"},
    )
    assert isinstance(drain, HistogramDataPoint)
    assert drain.count == 1
    assert drain.sum == pytest.approx(report.waited)
    assert drain.explicit_bounds[0] == 0.005 and drain.explicit_bounds[-1] == 300
    calls = "graceful_grpc.client.drain.calls"
    completed = {"graceful_grpc.drain.result": "completed"}
    assert after.value(calls, **TARGET, **GRPC, **completed) == 2
    for method in ("ServerStream", "BidiStream"):
        cancelled = {
            "graceful_grpc.drain.result": "cancelled",
            "rpc.service": ECHO,
            "rpc.method": method,
        }
        assert after.value(calls, **TARGET, **GRPC, **cancelled) == 1
    assert len(after.points[calls]) == 3
    assert after.value("graceful_grpc.client.drain.abandoned_holds", **TARGET, **GRPC) == 1
    assert after.units == {
        "graceful_grpc.client.calls.in_flight": "{call}",
        "graceful_grpc.client.holds": "{hold}",
        "graceful_grpc.client.drain.duration": "s",
        "graceful_grpc.client.drain.calls": "{call}",
        "graceful_grpc.client.drain.abandoned_holds": "{hold}",
    }
    hold.release()
    instrumentation.uninstrument()


async def test_drain_that_completes_everything_reports_drained(
    echo_server: EchoServer, provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    channel = aio.insecure_channel(echo_server.target)
    gotel.instrument(channel, meter_provider=provider)
    call = start(channel, "stream_unary", gate="go")
    await echo_server.wait_arrivals("go")
    closing = await begin_close(channel)
    echo_server.open_gate("go")
    await call
    report = await closing
    assert report.drained
    metrics = collect(reader)
    drain = metrics.value(
        "graceful_grpc.client.drain.duration", **GRPC, **{"graceful_grpc.drain.outcome": "drained"}
    )
    assert drain.count == 1 and drain.sum == pytest.approx(report.waited)
    calls = "graceful_grpc.client.drain.calls"
    assert metrics.value(calls, **GRPC, **{"graceful_grpc.drain.result": "completed"}) == 1
    assert metrics.attribute_sets(calls) == [{**GRPC, "graceful_grpc.drain.result": "completed"}]
    assert metrics.value("graceful_grpc.client.drain.abandoned_holds", **GRPC) == 0


async def test_interrupted_calls_are_counted_by_method(
    echo_server: EchoServer, provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    # Cancel-on-drain does not exist yet, so no real drain interrupts a call: deliver the report
    # such a drain would produce to the instrumentation's listener.
    channel = aio.insecure_channel(echo_server.target)
    listeners: list[Callable[[DrainReport], object]] = []
    channel.add_drain_listener = listeners.append  # type: ignore[method-assign,assignment]
    gotel.instrument(channel, meter_provider=provider)
    info = CallInfo(METHOD["unary_stream"], "unary_stream", 0.5)
    report = DrainReport(
        closed=True,
        drained=True,
        waited=0.5,
        completed=0,
        cancelled=(),
        abandoned_holds=0,
        interrupted=(info, info),
    )
    for listener in listeners:
        listener(report)
    interrupted = {
        "graceful_grpc.drain.result": "interrupted",
        "rpc.service": ECHO,
        "rpc.method": "ServerStream",
    }
    assert collect(reader).value("graceful_grpc.client.drain.calls", **GRPC, **interrupted) == 2
    await channel.close(grace=0)


async def test_tracker_reports_in_flight_only(
    echo_server: EchoServer, provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    tracker = aio.InFlightTracker()
    raw = grpc.aio.insecure_channel(echo_server.target, interceptors=tracker.interceptors)
    gotel.instrument(tracker, meter_provider=provider, attributes=TARGET)
    calls = [start(raw, "unary_unary", gate="t"), start(raw, "stream_stream", gate="t")]
    await echo_server.wait_arrivals("t", 2)
    during = collect(reader)
    assert during.value("graceful_grpc.client.calls.in_flight", **TARGET, **GRPC) == 2
    assert "graceful_grpc.client.holds" not in during.points
    echo_server.open_gate("t")
    await finish(calls[0], "unary_unary")
    await finish(calls[1], "stream_stream")
    assert await tracker.wait_idle(timeout=10)
    assert collect(reader).value("graceful_grpc.client.calls.in_flight", **TARGET, **GRPC) == 0
    await raw.close()


async def test_channels_on_one_provider_share_instruments(
    echo_server: EchoServer, provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    # The SDK drops the callbacks of a second observable instrument of the same name, so the
    # instruments must be created once per provider and read every instrumented channel.
    first, second, third = (aio.insecure_channel(echo_server.target) for _ in range(3))
    gotel.instrument(first, meter_provider=provider, attributes={"pool": "a"})
    gotel.instrument(second, meter_provider=provider, attributes={"pool": "a"})
    gotel.instrument(third, meter_provider=provider, attributes={"pool": "b"})
    calls = [start(first, "unary_unary", gate="s"), start(second, "unary_unary", gate="s")]
    calls.append(start(third, "unary_unary", gate="s"))
    await echo_server.wait_arrivals("s", 3)
    metrics = collect(reader)
    in_flight = "graceful_grpc.client.calls.in_flight"
    assert metrics.value(in_flight, pool="a", **GRPC) == 2
    assert metrics.value(in_flight, pool="b", **GRPC) == 1
    echo_server.open_gate("s")
    for call in calls:
        await call
    for channel in (first, second, third):
        await channel.close()
    drains = collect(reader).value(
        "graceful_grpc.client.drain.duration",
        pool="a",
        **GRPC,
        **{"graceful_grpc.drain.outcome": "drained"},
    )
    assert drains.count == 2


async def test_uninstrument_stops_reporting_and_is_idempotent(
    echo_server: EchoServer, provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    channel = aio.insecure_channel(echo_server.target)
    instrumentation = gotel.instrument(channel, meter_provider=provider)
    assert instrumentation.active
    call = start(channel, "unary_unary", gate="u")
    await echo_server.wait_arrivals("u")
    assert collect(reader).value("graceful_grpc.client.calls.in_flight", **GRPC) == 1
    instrumentation.uninstrument()
    instrumentation.uninstrument()
    assert not instrumentation.active
    assert "uninstrumented" in repr(instrumentation)
    echo_server.open_gate("u")
    await call
    await channel.close()  # a drain after uninstrument() is not recorded
    metrics = collect(reader)
    assert metrics.attribute_sets("graceful_grpc.client.calls.in_flight") == []
    assert metrics.attribute_sets("graceful_grpc.client.holds") == []
    assert metrics.attribute_sets("graceful_grpc.client.drain.duration") == []


async def test_instrumenting_twice_with_one_provider_is_refused(
    echo_server: EchoServer, provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    channel = aio.insecure_channel(echo_server.target)
    first = gotel.instrument(channel, meter_provider=provider)
    with pytest.raises(ValueError, match="already instrumented"):
        gotel.instrument(channel, meter_provider=provider)
    other_reader = InMemoryMetricReader()
    other = gotel.instrument(channel, meter_provider=MeterProvider(metric_readers=[other_reader]))
    first.uninstrument()
    again = gotel.instrument(channel, meter_provider=provider)  # allowed once uninstrumented
    await channel.close()
    for r in (reader, other_reader):
        drain = collect(r).value(
            "graceful_grpc.client.drain.duration",
            **GRPC,
            **{"graceful_grpc.drain.outcome": "drained"},
        )
        assert drain.count == 1  # counted once per provider, not once per instrumentation
    again.uninstrument()
    other.uninstrument()


async def test_a_second_handle_of_an_instrumented_connection_is_refused(
    echo_server: EchoServer, provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    channel = aio.insecure_channel(echo_server.target)
    other = channel.share()
    first = gotel.instrument(channel, meter_provider=provider, attributes=TARGET)
    with pytest.raises(ValueError, match="already instrumented"):
        gotel.instrument(other, meter_provider=provider)
    await call_once(channel, "unary_unary")
    await channel.rotate()
    await other.close()
    await channel.close()
    metrics = collect(reader)
    drains = metrics.points["graceful_grpc.client.drain.duration"]
    assert sum(point.count for _, point in drains) == 2  # the old connection's, and the close's
    assert metrics.value("graceful_grpc.client.rotations", **TARGET, **GRPC) == 1
    assert metrics.attribute_sets("graceful_grpc.client.calls.in_flight") == [{**TARGET, **GRPC}]
    first.uninstrument()


async def test_a_collected_channel_is_no_longer_reported(
    echo_server: EchoServer, provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    async def use_and_close() -> gotel.Instrumentation:
        # In a frame of its own: grpcio < 1.83 reads every task's frame locals when it closes a
        # channel (to find its calls), and that snapshot would keep a local here alive.
        channel = aio.insecure_channel(echo_server.target)
        instrumentation = gotel.instrument(channel, meter_provider=provider)
        assert collect(reader).value("graceful_grpc.client.calls.in_flight", **GRPC) == 0
        await channel.close()
        return instrumentation

    instrumentation = await use_and_close()
    gc.collect()
    assert collect(reader).attribute_sets("graceful_grpc.client.calls.in_flight") == []
    instrumentation.uninstrument()  # harmless once the channel is gone


async def test_rotations_are_counted(
    echo_server: EchoServer, provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    channel = aio.insecure_channel(echo_server.target)
    instrumentation = gotel.instrument(channel, meter_provider=provider, attributes=TARGET)
    await channel.rotate()
    await channel.rotate()
    metrics = collect(reader)
    assert metrics.value("graceful_grpc.client.rotations", **TARGET, **GRPC) == 2
    assert metrics.units["graceful_grpc.client.rotations"] == "{rotation}"
    drains = metrics.points["graceful_grpc.client.drain.duration"]
    assert sum(point.count for _, point in drains) == 2  # each old connection's drain
    instrumentation.uninstrument()
    await channel.rotate()
    assert collect(reader).value("graceful_grpc.client.rotations", **TARGET, **GRPC) == 2
    await channel.close()


@pytest.mark.parametrize("ending", ["completed", "cancelled"])
async def test_a_call_on_an_old_connection_at_close_is_counted_once(
    echo_server: EchoServer, provider: MeterProvider, reader: InMemoryMetricReader, ending: str
) -> None:
    channel = aio.insecure_channel(echo_server.target)
    gotel.instrument(channel, meter_provider=provider)
    call = start(channel, "unary_unary", gate="old")
    await echo_server.wait_arrivals("old")
    rotating = asyncio.create_task(channel.rotate(grace=30))
    await asyncio.sleep(0)  # the call now drains on the old connection
    closing = await begin_close(channel, grace=30 if ending == "completed" else 0)
    if ending == "completed":
        echo_server.open_gate("old")
        await call
    report, old_report = await asyncio.wait_for(asyncio.gather(closing, rotating), timeout=5)
    # The close's report covers the old connection too (and so does the rotation's)...
    assert getattr(report, ending) and getattr(old_report, ending)
    # ...but the metrics count each call once.
    calls = collect(reader).points["graceful_grpc.client.drain.calls"]
    counted = {attrs["graceful_grpc.drain.result"]: point.value for attrs, point in calls}
    assert counted == {
        "completed": 1 if ending == "completed" else 0,
        **({"cancelled": 1} if ending == "cancelled" else {}),
    }


async def test_instrument_shutdown_records_each_step(
    echo_server: EchoServer, provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    channel = aio.insecure_channel(echo_server.target)
    never = asyncio.Event()

    async def ok() -> None:
        return None

    async def boom() -> None:
        raise RuntimeError("boom")

    sequence = ShutdownSequence(timeout=30)
    sequence.add("stop intake", ok)
    sequence.add("hangs", never.wait, timeout=0.05)
    sequence.add("fails", boom)
    sequence.add("close channel", channel.close)
    instrumentation = gotel.instrument_shutdown(
        sequence, meter_provider=provider, attributes={"service.instance.id": "pod-1"}
    )
    report = await sequence.run()
    metrics = collect(reader)
    name = "graceful_grpc.shutdown.step.duration"
    assert metrics.units[name] == "s"
    assert len(metrics.points[name]) == 4
    for step in report.steps:
        point = metrics.value(
            name, step=step.name, outcome=step.outcome, **{"service.instance.id": "pod-1"}
        )
        assert point.count == 1
        assert point.sum == pytest.approx(step.duration)
    outcomes = {s.name: s.outcome for s in report.steps}
    assert outcomes == {
        "stop intake": "ok",
        "hangs": "timeout",
        "fails": "error",
        "close channel": "ok",
    }
    instrumentation.uninstrument()
    instrumentation.uninstrument()


async def test_uninstrumented_shutdown_records_nothing(
    provider: MeterProvider, reader: InMemoryMetricReader
) -> None:
    async def ok() -> None:
        return None

    sequence = ShutdownSequence(timeout=5)
    sequence.add("only", ok)
    gotel.instrument_shutdown(sequence, meter_provider=provider).uninstrument()
    await sequence.run()
    assert collect(reader).attribute_sets("graceful_grpc.shutdown.step.duration") == []


async def test_stable_rpc_conventions_on_opt_in(
    echo_server: EchoServer,
    provider: MeterProvider,
    reader: InMemoryMetricReader,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http, rpc")
    channel = aio.insecure_channel(echo_server.target)
    gotel.instrument(channel, meter_provider=provider)
    call = start(channel, "unary_unary", gate="never")
    await echo_server.wait_arrivals("never")
    await channel.close(grace=0)
    with pytest.raises(DrainTimeoutError):
        await call
    stable = {"rpc.system.name": "grpc"}
    metrics = collect(reader)
    assert metrics.value("graceful_grpc.client.calls.in_flight", **stable) == 0
    cancelled = {"graceful_grpc.drain.result": "cancelled", "rpc.method": f"{ECHO}/Unary"}
    assert metrics.value("graceful_grpc.client.drain.calls", **stable, **cancelled) == 1


@pytest.mark.parametrize(
    ("opt_in", "system", "method"),
    [
        ("", {"rpc.system": "grpc"}, {"rpc.service": "pkg.Svc", "rpc.method": "Do"}),
        ("rpc", {"rpc.system.name": "grpc"}, {"rpc.method": "pkg.Svc/Do"}),
        (
            "rpc,rpc/dup",
            {"rpc.system": "grpc", "rpc.system.name": "grpc"},
            {"rpc.method": "pkg.Svc/Do", "rpc.service": "pkg.Svc"},
        ),
    ],
)
def test_conventions_follow_the_opt_in(
    monkeypatch: pytest.MonkeyPatch, opt_in: str, system: dict[str, str], method: dict[str, str]
) -> None:
    from graceful_grpc.contrib.opentelemetry._semconv import Conventions

    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", opt_in)
    conventions = Conventions.from_env()
    assert conventions.system() == system
    assert conventions.method("/pkg.Svc/Do") == method
    assert conventions.method("not-a-path") == {"rpc.method": "not-a-path"}


async def test_bad_arguments_are_refused(echo_server: EchoServer, provider: MeterProvider) -> None:
    channel = aio.insecure_channel(echo_server.target)
    with pytest.raises(TypeError, match="GracefulChannel or an InFlightTracker"):
        gotel.instrument(grpc.aio.insecure_channel(echo_server.target), meter_provider=provider)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ShutdownSequence"):
        gotel.instrument_shutdown(channel, meter_provider=provider)  # type: ignore[arg-type]
    for key in ("rpc.method", "graceful_grpc.drain.result", "step", "outcome"):
        with pytest.raises(ValueError, match="set by graceful_grpc"):
            gotel.instrument(channel, meter_provider=provider, attributes={key: "x"})
    with pytest.raises(ValueError, match="empty"):
        gotel.instrument(channel, meter_provider=provider, attributes={"": "x"})
    for value in (None, b"x", {"a": 1}, [1, "a"]):
        with pytest.raises(TypeError, match="attribute 'k'"):
            gotel.instrument(channel, meter_provider=provider, attributes={"k": value})  # type: ignore[dict-item]
    for attributes in ("k=v", [("k", "v")], 42):
        with pytest.raises(TypeError, match="attributes must be a mapping"):
            gotel.instrument(channel, meter_provider=provider, attributes=attributes)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="attributes must be a mapping"):
            gotel.instrument_shutdown(
                ShutdownSequence(timeout=1),
                meter_provider=provider,
                attributes=attributes,  # type: ignore[arg-type]
            )
    # None of the refused calls left an instrumentation behind.
    gotel.instrument(channel, meter_provider=provider, attributes={"k": [1, 2]}).uninstrument()
    await channel.close()


def test_public_exports_are_locked() -> None:
    assert set(gotel.__all__) == {"Instrumentation", "instrument", "instrument_shutdown"}
    for name in gotel.__all__:
        assert hasattr(gotel, name)


def test_import_without_opentelemetry_api_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "try:\n"
        "    import graceful_grpc.contrib.opentelemetry\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'graceful-grpc[opentelemetry]'" in out.stdout
    assert "opentelemetry-api" in out.stdout


_CHILD_PROLOGUE = """
import asyncio, json
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from graceful_grpc import aio
from graceful_grpc.contrib.opentelemetry import instrument

def points(reader):
    data = reader.get_metrics_data()
    return [(m.name, dict(p.attributes)) for rm in data.resource_metrics
            for sm in rm.scope_metrics for m in sm.metrics for p in m.data.data_points]
"""


def run_in_child(main_body: str) -> Any:
    """Runs ``async def main()`` with ``main_body`` in a fresh process (the global provider can
    be set once per process); returns what it printed as JSON."""
    code = f"{_CHILD_PROLOGUE}\nasync def main():\n{main_body}\nasyncio.run(main())\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(out.stdout)


def test_default_provider_is_the_global_one() -> None:
    printed = run_in_child("""
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    tracker = aio.InFlightTracker()
    instrument(tracker)
    print(json.dumps(points(reader)))
""")
    assert printed == [["graceful_grpc.client.calls.in_flight", {"rpc.system": "grpc"}]]


def test_channels_instrumented_before_and_after_the_global_provider_is_set() -> None:
    # Before set_meter_provider() the global provider is a proxy whose instruments are forwarded
    # to the real provider once it is set; instruments created on the real provider afterwards
    # would be duplicates whose callbacks the SDK drops.
    printed = run_in_child("""
    before, after, explicit = aio.InFlightTracker(), aio.InFlightTracker(), aio.InFlightTracker()
    instrument(before, attributes={"when": "before"})
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics.set_meter_provider(provider)
    instrument(after, attributes={"when": "after"})
    instrument(explicit, meter_provider=provider, attributes={"when": "explicit"})
    print(json.dumps(sorted(attributes["when"] for _, attributes in points(reader))))
""")
    assert printed == ["after", "before", "explicit"]


def test_explicit_provider_that_later_becomes_global_keeps_its_instruments() -> None:
    printed = run_in_child("""
    explicit, default = aio.InFlightTracker(), aio.InFlightTracker()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instrument(explicit, meter_provider=provider, attributes={"when": "explicit"})
    metrics.set_meter_provider(provider)
    instrument(default, attributes={"when": "default"})
    print(json.dumps(sorted(attributes["when"] for _, attributes in points(reader))))
""")
    assert printed == ["default", "explicit"]
