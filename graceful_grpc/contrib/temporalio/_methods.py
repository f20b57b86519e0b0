"""The Temporal RPC method table, derived from the grpc stubs that temporalio ships.

Each ``*Stub`` is instantiated with a recording channel that captures the path and (de)serializers
passed to ``unary_unary``; nothing is written by hand but the health check, which temporalio
serves on the standard gRPC health service.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = (
    "LONG_POLL_RPCS",
    "RpcMethod",
    "is_wait",
    "long_poll_paths",
    "method_table",
    "snake_case",
)

# service name as temporalio's generated services pass it -> module, stub class
_STUBS = {
    "workflow": ("temporalio.api.workflowservice.v1.service_pb2_grpc", "WorkflowServiceStub"),
    "operator": ("temporalio.api.operatorservice.v1.service_pb2_grpc", "OperatorServiceStub"),
    "cloud": ("temporalio.api.cloud.cloudservice.v1.service_pb2_grpc", "CloudServiceStub"),
    "test": ("temporalio.api.testservice.v1.service_pb2_grpc", "TestServiceStub"),
}
HEALTH_PATH = "/grpc.health.v1.Health/Check"

# RPCs the built-in client gives the long-poll default timeout (70 s instead of 30 s).
LONG_POLL_RPCS = frozenset(
    {
        ("workflow", "poll_workflow_task_queue"),
        ("workflow", "poll_activity_task_queue"),
        ("workflow", "poll_nexus_task_queue"),
        ("workflow", "poll_workflow_execution_update"),
    }
)


_HISTORY = ("workflow", "get_workflow_execution_history")


@dataclass(frozen=True, slots=True)
class RpcMethod:
    """One unary RPC of a Temporal service."""

    service: str
    rpc: str
    path: str
    request_serializer: Callable[[Any], bytes]
    response_deserializer: Callable[[bytes], Any]


def snake_case(name: str) -> str:
    """``GetWorkflowExecutionHistory`` -> ``get_workflow_execution_history``."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


class _RecordingChannel:
    def __init__(self) -> None:
        self.methods: list[tuple[str, Any, Any]] = []

    def unary_unary(
        self,
        path: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool | None = None,
    ) -> None:
        self.methods.append((path, request_serializer, response_deserializer))

    def _not_unary(self, path: str, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"Temporal RPC {path} is not unary; graceful_grpc does not support it")

    unary_stream = stream_unary = stream_stream = _not_unary


@functools.cache
def method_table() -> dict[tuple[str, str], RpcMethod]:
    """(service, rpc) -> RpcMethod for every RPC temporalio's stubs define, plus health."""
    table: dict[tuple[str, str], RpcMethod] = {}
    for service, (module_name, stub_name) in _STUBS.items():
        recorder = _RecordingChannel()
        getattr(importlib.import_module(module_name), stub_name)(recorder)
        for path, serializer, deserializer in recorder.methods:
            rpc = snake_case(path.rsplit("/", 1)[1])
            table[service, rpc] = RpcMethod(service, rpc, path, serializer, deserializer)
    health = importlib.import_module("temporalio.bridge.proto.health.v1")
    table["health", "check"] = RpcMethod(
        "health",
        "check",
        HEALTH_PATH,
        health.HealthCheckRequest.SerializeToString,
        health.HealthCheckResponse.FromString,
    )
    return table


@functools.cache
def long_poll_paths() -> frozenset[str]:
    """The full method names of ``LONG_POLL_RPCS`` (for a channel's ``cancel_on_drain``)."""
    table = method_table()
    return frozenset(table[key].path for key in LONG_POLL_RPCS if key in table)


def is_wait(method: RpcMethod, request: Any) -> bool:
    """Whether a call waits for something to happen rather than does work: a long poll, or a
    history fetch with ``wait_new_event``. The built-in client gives these its long-poll default
    timeout; a draining channel interrupts them (they would hold the drain to its deadline)."""
    key = (method.service, method.rpc)
    return key in LONG_POLL_RPCS or (
        key == _HISTORY and bool(getattr(request, "wait_new_event", False))
    )
