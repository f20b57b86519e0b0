"""OpenTelemetry metrics for graceful channels and shutdowns (optional extra ``opentelemetry``).

``instrument(channel)`` publishes the calls in flight, the holds, and what each drain did;
``instrument_shutdown(sequence)`` the duration and outcome of each shutdown step. The gauges are
read from the channel's atomic counters only when a metric reader collects, so the call path
costs nothing more. Needs ``opentelemetry-api`` (an SDK or exporter is the application's choice).
"""

try:
    import opentelemetry.metrics  # noqa: F401 - only to fail early with a clear message
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "graceful_grpc.contrib.opentelemetry needs opentelemetry-api: "
        "pip install 'graceful-grpc[opentelemetry]'"
    ) from exc

from ._instrumentation import Instrumentation, instrument, instrument_shutdown

__all__ = ("Instrumentation", "instrument", "instrument_shutdown")
