"""Waits in the drain (issue 12): long polls and ``handle.result()`` do not hold a close hostage.

A wait never ends by itself; the integration marks it cancel-on-drain, so a close interrupts it at
once and its caller gets temporalio's ``RPCError(UNAVAILABLE)`` - without the retry loop that
would only delay the caller against a closed channel.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import grpc
import pytest
import temporalio.api.workflowservice.v1 as wf
import temporalio.client
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.service import ConnectConfig, RPCError, RPCStatusCode

from graceful_grpc import ChannelState, aio
from graceful_grpc.contrib.temporalio import GracefulServiceClient, method_table
from graceful_grpc.contrib.temporalio._options import channel_factory

from .support.temporal_server import TemporalDevServer
from .support.temporal_workflows import SignalledWorkflow

pytestmark = pytest.mark.temporal

HISTORY = method_table()["workflow", "get_workflow_execution_history"].path
POLL = method_table()["workflow", "poll_workflow_task_queue"].path
PROMPT = 1.0  # seconds: a close with waits in flight, and the waiters' errors, come within this


class CallProbe(grpc.aio.UnaryUnaryClientInterceptor):
    """Tells the test when calls of a method have been started on the wire, from any loop."""

    def __init__(self) -> None:
        self._started: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def _event(self, method: str) -> threading.Event:
        with self._lock:
            return self._started.setdefault(method, threading.Event())

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        call = await continuation(details, request)
        method = details.method
        self._event(method.decode() if isinstance(method, bytes) else method).set()
        return call

    async def started(self, method: str) -> None:
        """Returns once a call of ``method`` has started (within 10 s)."""
        assert await asyncio.to_thread(self._event(method).wait, 10), f"{method} never started"


def probed_client(target: str) -> tuple[temporalio.client.Client, CallProbe]:
    """A Client on a GracefulServiceClient whose channels (one per loop) carry a probe."""
    probe = CallProbe()
    service_client = GracefulServiceClient(
        ConnectConfig(target_host=target),
        lambda: aio.insecure_channel(target, interceptors=[probe]),
    )
    return temporalio.client.Client(service_client), probe


def service(client: temporalio.client.Client) -> GracefulServiceClient:
    assert isinstance(client.service_client, GracefulServiceClient)
    return client.service_client


async def start_unfinishable(
    client: temporalio.client.Client,
) -> temporalio.client.WorkflowHandle[Any, Any]:
    """A workflow on a task queue no worker polls: it never finishes."""
    return await client.start_workflow(
        SignalledWorkflow.run, id=f"never-{uuid.uuid4()}", task_queue=f"nobody-{uuid.uuid4()}"
    )


async def test_close_interrupts_a_result_wait_at_once(temporal_server: TemporalDevServer) -> None:
    client, probe = probed_client(temporal_server.target)
    handle = await start_unfinishable(client)
    channel = service(client).channel
    waiting = asyncio.create_task(handle.result())
    await probe.started(HISTORY)
    began = time.monotonic()
    report = await asyncio.wait_for(channel.close(grace=30), timeout=10)
    closed_after = time.monotonic() - began
    with pytest.raises(RPCError) as info:
        await asyncio.wait_for(waiting, timeout=10)
    failed_after = time.monotonic() - began
    assert closed_after < PROMPT, closed_after
    assert failed_after < PROMPT, failed_after  # not retried for 10 s against a closed channel
    assert info.value.status == RPCStatusCode.UNAVAILABLE
    assert "draining" in info.value.message
    assert report.drained and report.cancelled == ()
    assert [call.method for call in report.interrupted] == [HISTORY]
    built_in = await temporalio.client.Client.connect(temporal_server.target)
    await built_in.get_workflow_handle(handle.id).terminate()


class OtherLoop:
    """A thread whose event loop waits in a long poll through the shared client, then stays
    running until ``release`` (or ends at once when ``release`` is None)."""

    def __init__(
        self, client: temporalio.client.Client, probe: CallProbe, release: threading.Event | None
    ) -> None:
        self.client = client
        self.probe = probe
        self.release = release
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=asyncio.run, args=(self._main(),))

    async def _main(self) -> None:
        request = wf.PollWorkflowTaskQueueRequest(
            namespace="default", task_queue=TaskQueue(name=f"empty-{uuid.uuid4()}")
        )
        poll = asyncio.create_task(self.client.workflow_service.poll_workflow_task_queue(request))
        try:
            await poll
        except RPCError as error:
            self.errors.append(error)
        if self.release is not None:
            await asyncio.to_thread(self.release.wait, 10)

    async def start(self) -> None:
        self.thread.start()
        await self.probe.started(POLL)

    async def join(self) -> None:
        await asyncio.to_thread(self.thread.join, 10)
        assert not self.thread.is_alive()


async def test_close_interrupts_waits_on_every_event_loop(
    temporal_server: TemporalDevServer,
) -> None:
    client, probe = probed_client(temporal_server.target)
    handle = await start_unfinishable(client)
    graceful = service(client)
    waiting = asyncio.create_task(handle.result())
    await probe.started(HISTORY)
    release = threading.Event()
    other = OtherLoop(client, probe, release)
    await other.start()
    try:
        assert graceful._channels.loops() == 2
        began = time.monotonic()
        report = await asyncio.wait_for(graceful.close(grace=30), timeout=10)
        assert time.monotonic() - began < PROMPT
        with pytest.raises(RPCError):
            await asyncio.wait_for(waiting, timeout=10)
        assert time.monotonic() - began < PROMPT
    finally:
        release.set()
        await other.join()
    assert [type(error) for error in other.errors] == [RPCError]
    assert report.closed and report.drained and report.cancelled == ()
    assert sorted(call.method for call in report.interrupted) == sorted([HISTORY, POLL])
    built_in = await temporalio.client.Client.connect(temporal_server.target)
    await built_in.get_workflow_handle(handle.id).terminate()


async def test_close_survives_a_loop_that_ends_as_its_wait_is_interrupted(
    temporal_server: TemporalDevServer,
) -> None:
    # The other loop's asyncio.run() ends as soon as its poll fails, cancelling whatever still
    # runs on it - possibly the close this loop asked it to run.
    client, probe = probed_client(temporal_server.target)
    graceful = service(client)
    await client.workflow_service.get_system_info(wf.GetSystemInfoRequest())
    other = OtherLoop(client, probe, release=None)
    await other.start()
    report = await asyncio.wait_for(graceful.close(grace=30), timeout=10)
    await other.join()
    assert [type(error) for error in other.errors] == [RPCError]
    assert report.waited < PROMPT


async def test_connect_channels_interrupt_long_polls_made_on_them_directly(
    temporal_server: TemporalDevServer,
) -> None:
    # Code that shares the client's channel and polls on it itself gets the same treatment.
    channel = channel_factory(ConnectConfig(target_host=temporal_server.target), 30.0)()
    method = method_table()["workflow", "poll_workflow_task_queue"]
    poll = channel.unary_unary(
        method.path,
        request_serializer=method.request_serializer,
        response_deserializer=method.response_deserializer,
    )(
        wf.PollWorkflowTaskQueueRequest(
            namespace="default", task_queue=TaskQueue(name=f"empty-{uuid.uuid4()}")
        ),
        timeout=70,
    )
    assert channel.in_flight == 1  # a call is tracked from the moment it is made
    report = await asyncio.wait_for(channel.close(grace=30), timeout=10)
    assert [call.method for call in report.interrupted] == [POLL]
    assert channel.state is ChannelState.CLOSED
    assert poll.done()
