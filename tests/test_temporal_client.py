"""GracefulServiceClient's headers, default timeouts and retries, against a recording server.

The peer is a real grpc.aio server on 127.0.0.1 speaking the Temporal paths with raw bytes; it
records each call's metadata, deadline and time, and fails on demand.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import grpc
import pytest
import temporalio
import temporalio.api.workflowservice.v1 as wf
import tenacity
from temporalio.bridge.proto.health.v1 import HealthCheckResponse
from temporalio.service import ConnectConfig, RPCError, RPCStatusCode

from graceful_grpc import ChannelClosedError, DrainTimeoutError, aio
from graceful_grpc.contrib.temporalio import (
    MAX_MESSAGE_BYTES,
    GracefulServiceClient,
    TemporalBackoff,
    channel_options,
)
from graceful_grpc.contrib.temporalio._retry import should_retry

HEALTH = "/grpc.health.v1.Health/Check"
WORKFLOW = "/temporal.api.workflowservice.v1.WorkflowService/"


@dataclass
class Recorded:
    path: str
    metadata: dict[str, str | bytes]
    time_remaining: float | None
    at: float


@dataclass
class FakeFrontend:
    target: str = ""
    calls: list[Recorded] = field(default_factory=list)
    failures: list[grpc.StatusCode] = field(default_factory=list)  # consumed one per call

    def handler(self, path: str, response: bytes) -> Any:
        async def handle(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            self.calls.append(
                Recorded(
                    path,
                    dict(context.invocation_metadata() or ()),
                    context.time_remaining(),
                    time.monotonic(),
                )
            )
            if self.failures:
                await context.abort(self.failures.pop(0), "injected")
            return response

        return grpc.unary_unary_rpc_method_handler(handle)  # type: ignore[no-untyped-call]


@pytest.fixture
async def frontend() -> AsyncIterator[FakeFrontend]:
    fake = FakeFrontend()
    serving = HealthCheckResponse(status=HealthCheckResponse.ServingStatus.SERVING)
    handlers = {
        "Check": fake.handler(HEALTH, serving.SerializeToString()),
    }
    workflow = {
        name: fake.handler(WORKFLOW + name, b"")
        for name in (
            "DescribeNamespace",
            "PollWorkflowTaskQueue",
            "GetWorkflowExecutionHistory",
            "GetSystemInfo",
        )
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(  # type: ignore[no-untyped-call]
                "grpc.health.v1.Health", handlers
            ),
            grpc.method_handlers_generic_handler(  # type: ignore[no-untyped-call]
                "temporal.api.workflowservice.v1.WorkflowService", workflow
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    fake.target = f"127.0.0.1:{port}"
    yield fake
    await server.stop(None)


@pytest.fixture
async def client(frontend: FakeFrontend) -> AsyncIterator[GracefulServiceClient]:
    config = ConnectConfig(
        target_host=frontend.target, api_key="secret", rpc_metadata={"x-team": "payments"}
    )
    service_client = GracefulServiceClient(config, aio.insecure_channel(frontend.target))
    yield service_client
    await service_client.channel.close(grace=0)


# -- headers ----------------------------------------------------------------------------------


async def test_headers_as_the_built_in_client(
    frontend: FakeFrontend, client: GracefulServiceClient
) -> None:
    await client.workflow_service.describe_namespace(
        wf.DescribeNamespaceRequest(namespace="ns1"), metadata={"x-call": "1"}
    )
    headers = frontend.calls[-1].metadata
    assert headers["client-name"] == "temporal-python"
    assert headers["client-version"] == temporalio.__version__
    assert headers["temporal-namespace"] == "ns1"
    assert headers["authorization"] == "Bearer secret"
    assert headers["x-team"] == "payments"
    assert headers["x-call"] == "1"


async def test_metadata_and_api_key_updates_apply_to_later_calls(
    frontend: FakeFrontend, client: GracefulServiceClient
) -> None:
    client.update_rpc_metadata({"x-team": "billing"})
    client.update_api_key("rotated")
    assert await client.check_health()
    headers = frontend.calls[-1].metadata
    assert headers["x-team"] == "billing"
    assert headers["authorization"] == "Bearer rotated"
    assert "temporal-namespace" not in headers  # the health request has no namespace
    client.update_api_key(None)
    await client.check_health()
    assert "authorization" not in frontend.calls[-1].metadata


async def test_explicit_authorization_wins_over_the_api_key(
    frontend: FakeFrontend, client: GracefulServiceClient
) -> None:
    await client.check_health(metadata={"Authorization": "Basic per-call"})
    assert frontend.calls[-1].metadata["authorization"] == "Basic per-call"
    client.update_rpc_metadata({"authorization": "Basic client"})
    await client.check_health()
    assert frontend.calls[-1].metadata["authorization"] == "Basic client"
    await client.check_health(metadata={"authorization": "Basic per-call"})
    assert frontend.calls[-1].metadata["authorization"] == "Basic per-call"


async def test_rejected_metadata_update_keeps_the_headers_in_force(
    frontend: FakeFrontend, client: GracefulServiceClient
) -> None:
    with pytest.raises(ValueError, match="expected str"):
        client.update_rpc_metadata({"x-team": b"bytes"})
    with pytest.raises(TypeError):
        client.update_rpc_metadata({"x-team": 5})  # type: ignore[dict-item]
    await client.check_health()
    assert frontend.calls[-1].metadata["x-team"] == "payments"


async def test_invalid_call_metadata_never_reaches_grpc(
    frontend: FakeFrontend, client: GracefulServiceClient
) -> None:
    for metadata in ({"x-a": b"bytes"}, {"x-a-bin": "str"}, {"x-a": "caf\u00e9"}, {"x!": "v"}):
        with pytest.raises(ValueError, match="nvalid metadata"):
            await client.check_health(metadata=metadata)
    assert frontend.calls == []
    assert client.channel.in_flight == 0


# -- timeouts and limits ----------------------------------------------------------------------


async def test_default_and_long_poll_timeouts(
    frontend: FakeFrontend, client: GracefulServiceClient
) -> None:
    await client.workflow_service.get_system_info(wf.GetSystemInfoRequest())
    await client.workflow_service.poll_workflow_task_queue(wf.PollWorkflowTaskQueueRequest())
    await client.workflow_service.get_workflow_execution_history(
        wf.GetWorkflowExecutionHistoryRequest(wait_new_event=True)
    )
    await client.workflow_service.get_workflow_execution_history(
        wf.GetWorkflowExecutionHistoryRequest()
    )
    await client.workflow_service.get_system_info(
        wf.GetSystemInfoRequest(), timeout=timedelta(seconds=5)
    )
    remaining = [call.time_remaining for call in frontend.calls]
    expected = [30, 70, 70, 30, 5]
    for got, want in zip(remaining, expected, strict=True):
        assert got is not None and want - 3 < got <= want + 0.5  # deadlines round up a little


def test_message_limits_match_the_built_in_client() -> None:
    options = dict(channel_options())
    assert MAX_MESSAGE_BYTES == 128 * 1024 * 1024
    assert options["grpc.max_receive_message_length"] == MAX_MESSAGE_BYTES
    assert options["grpc.max_send_message_length"] == MAX_MESSAGE_BYTES


# -- retries ------------------------------------------------------------------------------------


async def test_retryable_codes_are_retried_with_backoff(
    frontend: FakeFrontend, client: GracefulServiceClient
) -> None:
    frontend.failures = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert await client.check_health(retry=True)
    assert len(frontend.calls) == 3
    first_gap = frontend.calls[1].at - frontend.calls[0].at
    second_gap = frontend.calls[2].at - frontend.calls[1].at
    assert 0.07 < first_gap < 2  # 100 ms +-20%
    assert second_gap >= 0.9  # RESOURCE_EXHAUSTED waits at least the 1 s throttle backoff


async def test_non_retryable_code_fails_at_once(
    frontend: FakeFrontend, client: GracefulServiceClient
) -> None:
    frontend.failures = [grpc.StatusCode.NOT_FOUND]
    with pytest.raises(RPCError) as info:
        await client.check_health(retry=True)
    assert info.value.status == RPCStatusCode.NOT_FOUND
    assert info.value.message == "injected"
    assert len(frontend.calls) == 1


async def test_no_retry_unless_asked(frontend: FakeFrontend, client: GracefulServiceClient) -> None:
    frontend.failures = [grpc.StatusCode.UNAVAILABLE]
    with pytest.raises(RPCError) as info:
        await client.check_health()
    assert info.value.status == RPCStatusCode.UNAVAILABLE
    assert len(frontend.calls) == 1


async def test_closed_channel_is_not_retried(
    frontend: FakeFrontend, client: GracefulServiceClient
) -> None:
    await client.channel.close()
    started = time.monotonic()
    with pytest.raises(RPCError) as info:
        await client.check_health(retry=True)
    assert info.value.status == RPCStatusCode.UNAVAILABLE
    assert frontend.calls == []
    assert time.monotonic() - started < 0.5


def _state(attempt: int, error: BaseException) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(tenacity.AsyncRetrying(), None, (), {})
    state.attempt_number = attempt
    future: tenacity.Future = tenacity.Future(attempt)
    future.set_exception(error)
    state.outcome = future
    return state


def _rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "x")


def test_backoff_policy() -> None:
    backoff = TemporalBackoff()
    unavailable = _rpc_error(grpc.StatusCode.UNAVAILABLE)
    for attempt, base in [(1, 0.1), (2, 0.17), (3, 0.289), (10, 5.0)]:
        waits = [backoff(_state(attempt, unavailable)) for _ in range(200)]
        assert base * 0.8 - 1e-9 <= min(waits) and max(waits) <= base * 1.2 + 1e-9
    throttled = backoff(_state(2, _rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED)))
    assert throttled >= 2.0
    assert backoff(_state(9, _rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED))) <= 10.0


def test_retry_classification() -> None:
    assert should_retry(_rpc_error(grpc.StatusCode.UNAVAILABLE))
    assert should_retry(_rpc_error(grpc.StatusCode.INTERNAL))
    assert not should_retry(_rpc_error(grpc.StatusCode.NOT_FOUND))
    assert not should_retry(_rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED))
    assert not should_retry(ChannelClosedError("closed"))
    assert not should_retry(DrainTimeoutError("deadline"))
    assert not should_retry(ValueError())
