"""Metric names, units and attributes: OpenTelemetry semantic conventions for RPC.

By default the RPC attributes are those of semantic conventions v1.37.0 (``rpc.system="grpc"``,
``rpc.service="pkg.Service"``, ``rpc.method="Method"``), which OpenTelemetry's own gRPC
instrumentation emits by default, so these metrics join its spans and metrics. The stable RPC
conventions (``rpc.system.name="grpc"``, ``rpc.method="pkg.Service/Method"``, no
``rpc.service``) are opted into as the conventions prescribe, with the environment variable
``OTEL_SEMCONV_STABILITY_OPT_IN`` containing ``rpc`` (stable only) or ``rpc/dup`` (both sets;
``rpc.method`` can hold one value and carries the stable, fully-qualified one).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from opentelemetry.util.types import AttributeValue

__all__ = (
    "ABANDONED_HOLDS",
    "DRAIN_CALLS",
    "DRAIN_DURATION",
    "DURATION_BUCKETS",
    "HOLDS",
    "IN_FLIGHT",
    "METER_NAME",
    "OUTCOME",
    "RESULT",
    "ROTATIONS",
    "STEP",
    "STEP_DURATION",
    "STEP_OUTCOME",
    "Conventions",
    "check_attributes",
)

METER_NAME = "graceful_grpc"

IN_FLIGHT = "graceful_grpc.client.calls.in_flight"
HOLDS = "graceful_grpc.client.holds"
DRAIN_DURATION = "graceful_grpc.client.drain.duration"
DRAIN_CALLS = "graceful_grpc.client.drain.calls"
ABANDONED_HOLDS = "graceful_grpc.client.drain.abandoned_holds"
ROTATIONS = "graceful_grpc.client.rotations"
STEP_DURATION = "graceful_grpc.shutdown.step.duration"

OUTCOME = "graceful_grpc.drain.outcome"  # drained / deadline
RESULT = "graceful_grpc.drain.result"  # completed / cancelled / interrupted
STEP = "step"
STEP_OUTCOME = "outcome"

# Drains and shutdown steps last from milliseconds to minutes; the SDK's default boundaries
# (0..10000) are meant for milliseconds and would put every drain in the first few buckets.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

_RPC_SYSTEM = "rpc.system"
_RPC_SYSTEM_NAME = "rpc.system.name"
_RPC_SERVICE = "rpc.service"
_RPC_METHOD = "rpc.method"
_OWN_PREFIXES = ("rpc.", "graceful_grpc.")
_OWN_KEYS = (STEP, STEP_OUTCOME)

Flavour = Literal["v1.37", "stable", "dup"]


def _flavour_from_env() -> Flavour:
    values = {v.strip() for v in os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "").split(",")}
    if "rpc/dup" in values:
        return "dup"
    return "stable" if "rpc" in values else "v1.37"


@dataclass(frozen=True, slots=True)
class Conventions:
    """Which RPC attribute set to emit; read from the environment when instrumenting."""

    flavour: Flavour

    @classmethod
    def from_env(cls) -> Conventions:
        """The conventions ``OTEL_SEMCONV_STABILITY_OPT_IN`` asks for."""
        return cls(_flavour_from_env())

    def system(self) -> dict[str, AttributeValue]:
        """The attribute naming the RPC system, gRPC."""
        attributes: dict[str, AttributeValue] = {}
        if self.flavour != "stable":
            attributes[_RPC_SYSTEM] = "grpc"
        if self.flavour != "v1.37":
            attributes[_RPC_SYSTEM_NAME] = "grpc"
        return attributes

    def method(self, path: str) -> dict[str, AttributeValue]:
        """The attributes naming the method of a full gRPC path such as ``/pkg.Service/Method``.

        A path that does not have that shape is reported whole as ``rpc.method``.
        """
        name = path.removeprefix("/")
        service, _, method = name.rpartition("/")
        if self.flavour != "v1.37" or not (service and method):
            attributes: dict[str, AttributeValue] = {_RPC_METHOD: name}
            if self.flavour == "dup" and service and method:
                attributes[_RPC_SERVICE] = service
            return attributes
        return {_RPC_SERVICE: service, _RPC_METHOD: method}


def check_attributes(attributes: Mapping[str, AttributeValue] | None) -> dict[str, AttributeValue]:
    """Copies the caller's extra attributes, refusing what OpenTelemetry or we cannot take.

    Raises:
        TypeError: ``attributes`` is not a mapping, a key is not a string, or a value is not an
            OpenTelemetry attribute value (str, bool, int, float, or a sequence of one of them).
        ValueError: a key is empty or one the instrumentation sets itself (``rpc.*``,
            ``graceful_grpc.*``, ``step``, ``outcome``).
    """
    if attributes is None:
        return {}
    if not isinstance(attributes, Mapping):
        raise TypeError(f"attributes must be a mapping of str to values, got {attributes!r}")
    checked: dict[str, AttributeValue] = {}
    for key, value in attributes.items():
        if not isinstance(key, str):
            raise TypeError(f"attribute keys must be str, got {key!r}")
        if not key:
            raise ValueError("attribute keys must not be empty")
        if key.startswith(_OWN_PREFIXES) or key in _OWN_KEYS:
            raise ValueError(f"attribute {key!r} is set by graceful_grpc itself")
        if not _is_attribute_value(value):
            raise TypeError(
                f"attribute {key!r}: value must be str, bool, int, float or a sequence of one "
                f"of them, got {value!r}"
            )
        checked[key] = (
            tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else value
        )
    return checked


def _is_attribute_value(value: object) -> bool:
    scalar = (str, bool, int, float)
    if isinstance(value, scalar):
        return True
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        kinds = {type(item) for item in value}
        return len(kinds) <= 1 and all(issubclass(kind, scalar) for kind in kinds)
    return False
