"""The demo's ``--metrics``: the graceful run's OpenTelemetry metrics, without a collector.

The channel is instrumented with ``graceful_grpc.contrib.opentelemetry`` on a private SDK meter
provider whose in-memory reader is read twice: when SIGTERM arrives, and after the close.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .aio import GracefulChannel

_sdk_missing: ImportError | None = None
try:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

    from .contrib.opentelemetry import instrument
except ImportError as exc:  # reported when --metrics is asked for
    _sdk_missing = exc

__all__ = ("MISSING_SDK", "DemoMetrics", "MetricRow")

MISSING_SDK = (
    "--metrics needs the OpenTelemetry SDK: pip install 'graceful-grpc[opentelemetry]' "
    "opentelemetry-sdk"
)

# rpc.system is on every point; the table leaves it out.
_SHOWN_ALWAYS = frozenset({"rpc.system", "rpc.system.name"})


@dataclass(frozen=True, slots=True)
class MetricRow:
    """One data point: when it was read, the metric, its attributes and its value.

    Attributes:
        when: ``"at SIGTERM"`` or ``"after close"``.
        name: The metric's name.
        attributes: The point's attributes, except the RPC system.
        value: A number, or for a histogram ``{"count": n, "sum": seconds}``.
    """

    when: str
    name: str
    attributes: dict[str, Any]
    value: Any

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class DemoMetrics:
    """Instruments the demo's channel and keeps what its metric reader saw.

    Raises:
        ImportError: opentelemetry-sdk is not installed (message: ``MISSING_SDK``).
    """

    def __init__(self) -> None:
        if _sdk_missing is not None:
            raise ImportError(MISSING_SDK) from _sdk_missing
        self._reader = InMemoryMetricReader()
        self._provider = MeterProvider(metric_readers=[self._reader])
        self.rows: list[MetricRow] = []

    def instrumented(self, channel: GracefulChannel) -> GracefulChannel:
        """Instruments ``channel`` and returns it."""
        instrument(channel, meter_provider=self._provider)
        return channel

    def read(self, when: str) -> None:
        """Collects now and keeps every data point, labelled ``when``."""
        data = self._reader.get_metrics_data()
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    for point in metric.data.data_points:
                        attributes = {
                            k: v
                            for k, v in (point.attributes or {}).items()
                            if k not in _SHOWN_ALWAYS
                        }
                        value: Any
                        if isinstance(point, NumberDataPoint):
                            value = point.value
                        else:  # the histograms: no exponential ones are configured here
                            value = {"count": point.count, "sum": round(point.sum, 6)}
                        self.rows.append(MetricRow(when, metric.name, attributes, value))

    def table(self) -> str:
        """The rows as an aligned text table."""
        lines = [("when", "metric", "attributes", "value")]
        for row in self.rows:
            attributes = " ".join(f"{k}={v}" for k, v in sorted(row.attributes.items()))
            value = row.value
            if isinstance(value, dict):
                value = f"count={value['count']} sum={value['sum']:.3f} s"
            lines.append((row.when, row.name, attributes, str(value)))
        widths = [max(len(line[i]) for line in lines) for i in range(3)]
        return "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(line[:3], widths, strict=True))
            + "  "
            + line[3]
            for line in lines
        )
