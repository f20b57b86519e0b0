"""GracefulServiceClient.rotate() (issue 11) against a real Temporal dev server.

The second address of the same server is a TCP forwarding proxy on another port: moving a
running Client there, under a stream of calls, loses none of them, and every later call - the
test's, a handle's ``result()`` wait started before, an activity's ``activity.client()`` - takes
the new address.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator

import pytest
import temporalio.api.workflowservice.v1 as wf
import temporalio.client
from temporalio import activity
from temporalio.service import ConnectConfig, RPCError, RPCStatusCode, ServiceClient
from temporalio.worker import Worker

from graceful_grpc import ChannelClosedError, aio
from graceful_grpc.contrib.temporalio import GracefulServiceClient, connect, method_table

from .support.stalling_proxy import StallingProxy
from .support.temporal_server import TemporalDevServer
from .support.temporal_workflows import SignalledWorkflow

pytestmark = pytest.mark.temporal

HISTORY = method_table()["workflow", "get_workflow_execution_history"].path


@activity.defn(name="namespace_via_activity_client")
async def namespace_via_activity_client() -> str:
    response = await activity.client().workflow_service.describe_namespace(
        wf.DescribeNamespaceRequest(namespace="default")
    )
    return response.namespace_info.name


async def connected(target: str) -> tuple[temporalio.client.Client, GracefulServiceClient]:
    """``connect(target)``, and its GracefulServiceClient."""
    client = await connect(target)
    assert isinstance(client.service_client, GracefulServiceClient)
    return client, client.service_client


class Load:
    """Callers making client calls in a loop, counting what succeeded and what failed."""

    def __init__(self, client: temporalio.client.Client, workflow_id: str) -> None:
        self.client = client
        self.workflow_id = workflow_id
        self.ok = 0
        self.failed: list[BaseException] = []
        self._progress = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []

    async def _caller(self, index: int) -> None:
        handle = self.client.get_workflow_handle(self.workflow_id)
        request = wf.DescribeNamespaceRequest(namespace="default")
        while True:
            try:
                if index % 2:
                    await handle.describe()
                else:
                    await self.client.workflow_service.describe_namespace(request)
            except Exception as error:  # every failure is counted, none ends the load
                self.failed.append(error)
            else:
                self.ok += 1
            async with self._progress:
                self._progress.notify_all()

    def start(self, callers: int = 4) -> None:
        self._tasks = [asyncio.create_task(self._caller(i)) for i in range(callers)]

    async def reach(self, calls: int) -> None:
        """Returns once ``calls`` calls have succeeded in all (within 30 s)."""
        async with asyncio.timeout(30), self._progress:
            await self._progress.wait_for(lambda: self.ok >= calls or bool(self.failed))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
async def proxies(temporal_server: TemporalDevServer) -> AsyncIterator[list[StallingProxy]]:
    host, port = temporal_server.target.rsplit(":", 1)
    started = [StallingProxy(host, int(port)), StallingProxy(host, int(port))]
    for proxy in started:
        await proxy.start()
    yield started
    for proxy in started:
        await proxy.close()


async def test_rotate_to_a_new_address_under_load(
    temporal_server: TemporalDevServer, proxies: list[StallingProxy]
) -> None:
    first, second = proxies
    # The worker polls the server directly through its bridge connection, which rotate() leaves
    # alone; the client's calls go through the first proxy until the rotation.
    bridge = await ServiceClient.connect(ConnectConfig(target_host=temporal_server.target))
    graceful = GracefulServiceClient(
        ConnectConfig(target_host=first.target),
        lambda: aio.insecure_channel(first.target),
        worker_service_client=bridge,
    )
    client = temporalio.client.Client(graceful)
    task_queue = f"rotation-{uuid.uuid4()}"
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[SignalledWorkflow],
        activities=[namespace_via_activity_client],
    ):
        handle = await client.start_workflow(
            SignalledWorkflow.run, id=f"rotation-{uuid.uuid4()}", task_queue=task_queue
        )
        result = asyncio.create_task(handle.result())  # a wait in flight on the old connection
        load = Load(client, handle.id)
        load.start()
        try:
            await load.reach(20)
            assert first.connections >= 1 and second.connections == 0
            report = await asyncio.wait_for(graceful.rotate(target=second.target), timeout=10)
            assert graceful.config.target_host == second.target
            assert graceful.channel.rotations == 1 and graceful.channel.connections == 1
            assert report.closed and report.drained and report.cancelled == ()
            assert [call.method for call in report.interrupted] == [HISTORY]
            await first.close()  # from now on any call still taking the old address fails
            await load.reach(load.ok + 40)
            assert second.connections >= 1
            await handle.signal(SignalledWorkflow.finish)
            assert await asyncio.wait_for(result, timeout=30) == "default"  # via activity.client()
        finally:
            await load.stop()
    assert load.failed == []
    assert load.ok >= 60
    await graceful.close(grace=5)


async def test_rotate_applies_new_tls_settings(temporal_server: TemporalDevServer) -> None:
    client, graceful = await connected(temporal_server.target)
    request = wf.DescribeNamespaceRequest(namespace="default")
    await client.workflow_service.describe_namespace(request)
    await graceful.rotate(tls=True)  # the dev server speaks plaintext: TLS cannot connect
    assert graceful.config.tls is True
    with pytest.raises(RPCError) as info:
        await client.workflow_service.describe_namespace(request)
    assert info.value.status == RPCStatusCode.UNAVAILABLE
    await graceful.rotate(tls=False)
    assert (await client.workflow_service.describe_namespace(request)).namespace_info.name
    assert graceful.channel.rotations == 2
    await graceful.close(grace=5)


async def test_rotate_moves_every_event_loops_channel(temporal_server: TemporalDevServer) -> None:
    client, graceful = await connected(temporal_server.target)
    used, release = threading.Event(), threading.Event()
    seen: list[int] = []

    async def other_loop() -> None:
        await client.workflow_service.get_system_info(wf.GetSystemInfoRequest())
        used.set()
        await asyncio.to_thread(release.wait, 10)
        await client.workflow_service.get_system_info(wf.GetSystemInfoRequest())
        seen.append(graceful.channel.rotations)

    await client.workflow_service.get_system_info(wf.GetSystemInfoRequest())
    thread = threading.Thread(target=asyncio.run, args=(other_loop(),))
    thread.start()
    try:
        assert await asyncio.to_thread(used.wait, 10)
        report = await asyncio.wait_for(graceful.rotate(grace=5), timeout=10)
    finally:
        release.set()
        await asyncio.to_thread(thread.join, 10)
    assert seen == [1] and graceful.channel.rotations == 1
    assert report.closed and report.drained
    await graceful.close(grace=5)


async def test_rotate_refuses_bad_settings_and_a_closed_client(
    temporal_server: TemporalDevServer,
) -> None:
    _, graceful = await connected(temporal_server.target)
    with pytest.raises(ValueError, match="URL scheme"):
        await graceful.rotate(target="http://localhost:7233")
    with pytest.raises(ValueError, match="grace"):
        await graceful.rotate(grace=-1)
    with pytest.raises(TypeError, match="tls"):
        await graceful.rotate(tls="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="target"):
        await graceful.rotate(target=7233)  # type: ignore[arg-type]
    assert graceful.config.target_host == temporal_server.target
    assert graceful.channel.rotations == 0
    await graceful.close(grace=5)
    with pytest.raises(ChannelClosedError):
        await graceful.rotate()
    config = graceful.config
    with pytest.raises(ChannelClosedError):  # refused before the settings change
        await graceful.rotate(target="127.0.0.1:1", tls=not config.tls)
    assert graceful.config is config and config.target_host == temporal_server.target


async def test_a_loop_first_used_after_a_rotation_gets_the_new_settings(
    temporal_server: TemporalDevServer, proxies: list[StallingProxy]
) -> None:
    proxy = proxies[0]
    client, graceful = await connected(temporal_server.target)
    await graceful.rotate(target=proxy.target)
    assert proxy.connections == 0  # grpc connects on the first call; this loop makes none

    async def first_use() -> None:
        await client.workflow_service.get_system_info(wf.GetSystemInfoRequest())

    await asyncio.to_thread(asyncio.run, first_use())
    assert proxy.connections == 1
    await graceful.close(grace=5)
