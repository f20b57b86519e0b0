"""graceful_grpc.contrib.temporalio against a real Temporal dev server."""

from __future__ import annotations

import ast
import asyncio
import inspect
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import temporalio.api.workflowservice.v1 as wf
import temporalio.bridge.services_generated
import temporalio.client
from temporalio import activity
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

import graceful_grpc.contrib.temporalio as gtemporal
from graceful_grpc import ChannelState
from graceful_grpc.contrib.temporalio import GracefulServiceClient, connect, method_table

from .support.temporal_server import TemporalDevServer
from .support.temporal_workflows import GreetingWorkflow

pytestmark = pytest.mark.temporal


def _generated_rpcs() -> set[tuple[str, str]]:
    services = {
        "WorkflowService": "workflow",
        "OperatorService": "operator",
        "CloudService": "cloud",
        "TestService": "test",
        "HealthService": "health",
    }
    tree = ast.parse(inspect.getsource(temporalio.bridge.services_generated))
    return {
        (services[node.name], member.name)
        for node in tree.body
        if isinstance(node, ast.ClassDef) and node.name in services
        for member in node.body
        if isinstance(member, ast.AsyncFunctionDef)
    }


def test_method_table_covers_every_generated_rpc() -> None:
    generated = _generated_rpcs()
    table = method_table()
    assert set(table) == generated
    assert len(generated) > 200
    assert table["health", "check"].path == "/grpc.health.v1.Health/Check"
    assert (
        table["workflow", "start_workflow_execution"].path
        == "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution"
    )


def test_public_exports_are_locked() -> None:
    assert set(gtemporal.__all__) == {
        "ConnectOptions",
        "DEFAULT_LONG_POLL_TIMEOUT",
        "DEFAULT_TIMEOUT",
        "MAX_MESSAGE_BYTES",
        "RETRYABLE_CODES",
        "GracefulServiceClient",
        "GrpcForkSupportWarning",
        "RpcMethod",
        "TemporalBackoff",
        "channel_options",
        "connect",
        "method_table",
    }
    for name in gtemporal.__all__:
        assert hasattr(gtemporal, name)


@pytest.fixture
async def client(temporal_server: TemporalDevServer) -> AsyncIterator[temporalio.client.Client]:
    client = await connect(temporal_server.target, worker_support=True)
    yield client
    assert isinstance(client.service_client, GracefulServiceClient)
    await client.service_client.channel.close(grace=0)


class _CompletedElsewhere:
    def __init__(self) -> None:
        self.tokens: asyncio.Queue[bytes] = asyncio.Queue()

    @activity.defn(name="completed_elsewhere")
    async def run(self, name: str) -> str:
        await self.tokens.put(activity.info().task_token)
        activity.raise_complete_async()


async def test_workflow_lifecycle_through_the_graceful_client(
    client: temporalio.client.Client,
) -> None:
    assert isinstance(client.service_client, GracefulServiceClient)
    assert await client.service_client.check_health()
    task_queue = f"tq-{uuid.uuid4()}"
    workflow_id = f"greeting-{uuid.uuid4()}"
    completer = _CompletedElsewhere()
    async with Worker(
        client, task_queue=task_queue, workflows=[GreetingWorkflow], activities=[completer.run]
    ):
        handle = await client.start_workflow(
            GreetingWorkflow.run, "ada", id=workflow_id, task_queue=task_queue
        )
        description = await handle.describe()
        assert description.id == workflow_id
        assert description.status == temporalio.client.WorkflowExecutionStatus.RUNNING
        with pytest.raises(WorkflowAlreadyStartedError) as info:
            await client.start_workflow(
                GreetingWorkflow.run, "again", id=workflow_id, task_queue=task_queue
            )
        assert info.value.run_id == handle.result_run_id
        await handle.signal(GreetingWorkflow.add, "grace")
        token = await asyncio.wait_for(completer.tokens.get(), timeout=60)
        assert await handle.query(GreetingWorkflow.names) == ["ada", "grace"]
        # async activity completion through the graceful client, under a hold
        async with client.service_client.channel.hold():
            await client.get_async_activity_handle(task_token=token).complete("completed")
        assert await asyncio.wait_for(handle.result(), timeout=60) == [
            "ada",
            "grace",
            "completed",
        ]
    assert client.service_client.channel.in_flight == 0


async def test_errors_match_the_built_in_client(
    client: temporalio.client.Client, temporal_server: TemporalDevServer
) -> None:
    built_in = await temporalio.client.Client.connect(temporal_server.target)
    request = wf.DescribeWorkflowExecutionRequest(namespace="default")
    request.execution.workflow_id = f"missing-{uuid.uuid4()}"
    errors = []
    for c in (built_in, client):
        with pytest.raises(RPCError) as info:
            await c.workflow_service.describe_workflow_execution(request)
        errors.append(info.value)
    ours, theirs = errors[1], errors[0]
    assert ours.status == theirs.status == RPCStatusCode.NOT_FOUND
    assert ours.message == theirs.message
    assert ours.raw_grpc_status == theirs.raw_grpc_status
    assert ours.grpc_status.details[0].type_url == theirs.grpc_status.details[0].type_url


async def test_closed_channel_raises_rpc_error_not_usage_error(
    temporal_server: TemporalDevServer,
) -> None:
    client = await connect(temporal_server.target)
    service_client = client.service_client
    assert isinstance(service_client, GracefulServiceClient)
    await service_client.channel.close()
    assert service_client.channel.state is ChannelState.CLOSED
    with pytest.raises(RPCError) as info:
        await client.workflow_service.get_system_info(wf.GetSystemInfoRequest(), retry=True)
    assert info.value.status == RPCStatusCode.UNAVAILABLE
    assert "closed" in info.value.message


async def test_worker_requires_worker_support(temporal_server: TemporalDevServer) -> None:
    client = await connect(temporal_server.target)
    with pytest.raises(RuntimeError, match="worker_support=True"):
        Worker(client, task_queue="x", workflows=[GreetingWorkflow])
    await client.service_client.channel.close()  # type: ignore[attr-defined]


async def test_timeout_reaches_the_server_as_the_call_deadline(
    client: temporalio.client.Client,
) -> None:
    # The frontend refuses a long poll whose deadline is too short to be useful: proof that the
    # per-call timeout travels as the gRPC deadline.
    with pytest.raises(RPCError) as info:
        await client.workflow_service.poll_activity_task_queue(
            wf.PollActivityTaskQueueRequest(
                namespace="default",
                task_queue=TaskQueue(name=f"empty-{uuid.uuid4()}"),
            ),
            timeout=timedelta(milliseconds=200),
        )
    assert info.value.status == RPCStatusCode.FAILED_PRECONDITION
    assert "timeout is too short" in info.value.message
