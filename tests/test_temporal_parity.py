"""The graceful client behaves like temporalio's own, against a real Temporal dev server.

One section per way a user switching one import could tell the two apart: eager workflow start,
metadata, event loops, fork, connect() arguments, the workflow sandbox.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import subprocess
import sys
import threading
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import temporalio.api.workflowservice.v1 as wf
import temporalio.client
import temporalio.runtime
from temporalio.client import Client
from temporalio.service import ConnectConfig, RetryConfig, RPCError, RPCStatusCode, ServiceClient
from temporalio.worker import Worker

from graceful_grpc import ChannelState
from graceful_grpc.contrib.temporalio import GracefulServiceClient, GrpcForkSupportWarning, connect

from .support.connect_proxy import ConnectProxy
from .support.temporal_sandboxed_workflows import EchoWorkflow
from .support.temporal_server import TemporalDevServer

pytestmark = pytest.mark.temporal
ROOT = Path(__file__).resolve().parent.parent
SYSTEM_INFO = wf.GetSystemInfoRequest()


def service(client: Client) -> GracefulServiceClient:
    assert isinstance(client.service_client, GracefulServiceClient)
    return client.service_client


async def connect_quietly(target: str, **options: Any) -> Client:
    """connect() without the fork-support warning (tested on its own below)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GrpcForkSupportWarning)
        return await connect(target, **options)


@pytest.fixture
async def client(temporal_server: TemporalDevServer) -> AsyncIterator[Client]:
    client = await connect_quietly(temporal_server.target, worker_support=True)
    yield client
    await service(client).close(grace=0)


# -- 1. eager workflow start -------------------------------------------------------------------


async def test_eager_start_hands_the_first_task_to_the_local_worker(client: Client) -> None:
    task_queue = f"eager-{uuid.uuid4()}"
    async with Worker(client, task_queue=task_queue, workflows=[EchoWorkflow]):
        async with asyncio.timeout(1):
            handle = await client.start_workflow(
                EchoWorkflow.run,
                "fast",
                id=task_queue,
                task_queue=task_queue,
                request_eager_start=True,
                task_timeout=timedelta(seconds=5),
            )
            assert await handle.result() == "fast"
        assert getattr(handle, "__temporal_eagerly_started") is True


async def test_eager_start_without_a_worker_connection_is_a_plain_start(
    temporal_server: TemporalDevServer, client: Client
) -> None:
    plain = await connect(temporal_server.target)
    task_queue = f"eager-plain-{uuid.uuid4()}"
    async with Worker(client, task_queue=task_queue, workflows=[EchoWorkflow]):
        async with asyncio.timeout(5):  # a dropped eager task would wait for the 10 s timeout
            handle = await plain.start_workflow(
                EchoWorkflow.run,
                "plain",
                id=task_queue,
                task_queue=task_queue,
                request_eager_start=True,
                task_timeout=timedelta(seconds=10),
            )
            assert await handle.result() == "plain"
        assert getattr(handle, "__temporal_eagerly_started") is False
    await service(plain).close()


# -- 2. metadata -------------------------------------------------------------------------------


async def test_rejected_rpc_metadata_leaves_the_old_in_force(client: Client) -> None:
    client.rpc_metadata = {"x-team": "payments"}
    for invalid in ({"x-team": b"bytes"}, {"x-team-bin": "str"}, {"bad key": "v"}):
        with pytest.raises(ValueError, match="nvalid"):
            client.rpc_metadata = invalid
        assert client.rpc_metadata == {"x-team": "payments"}
        await client.workflow_service.get_system_info(SYSTEM_INFO)
    assert service(client).channel.in_flight == 0


@pytest.mark.parametrize("worker_support", [False, True])
async def test_invalid_rpc_metadata_is_rejected_at_connect(
    temporal_server: TemporalDevServer, worker_support: bool
) -> None:
    with pytest.raises(RuntimeError, match="Failed client connect: Invalid headers"):
        await Client.connect(temporal_server.target, rpc_metadata={"x-a": b"bytes"})
    with pytest.raises(RuntimeError, match="Failed client connect: Invalid headers"):
        await connect_quietly(
            temporal_server.target, rpc_metadata={"x-a": b"bytes"}, worker_support=worker_support
        )


@pytest.mark.parametrize(
    "metadata", [{"x-a": b"bytes"}, {"x-a-bin": "str"}, {"bad key": "v"}, {":path": "/x"}]
)
async def test_invalid_call_metadata_raises_value_error_as_the_built_in_client(
    temporal_server: TemporalDevServer, client: Client, metadata: Mapping[str, str | bytes]
) -> None:
    built_in = await Client.connect(temporal_server.target)
    for c in (built_in, client):
        with pytest.raises(ValueError, match="nvalid metadata"):
            await c.workflow_service.get_system_info(SYSTEM_INFO, metadata=metadata)
    assert service(client).channel.in_flight == 0


# -- 3. event loops ----------------------------------------------------------------------------


def run_in_thread(coroutine: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """``asyncio.run(coroutine())`` in a new thread (a sync activity's pattern); its result."""
    results: list[Any] = []

    def target() -> None:
        try:
            results.append(asyncio.run(coroutine()))
        except BaseException as error:  # handed to the test
            results.append(error)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive() and len(results) == 1
    if isinstance(results[0], BaseException):
        raise results[0]
    return results[0]


async def test_the_client_works_from_other_event_loops(client: Client) -> None:
    async def call() -> bool:
        info = await client.workflow_service.get_system_info(SYSTEM_INFO)
        return info.capabilities.signal_and_query_header

    for _ in range(2):  # a fresh loop each time; the previous one is closed and released
        assert await asyncio.to_thread(run_in_thread, call)
    await client.workflow_service.get_system_info(SYSTEM_INFO)
    assert service(client).channel.state is ChannelState.OPEN


@pytest.fixture
def other_loop() -> Iterator[tuple[asyncio.AbstractEventLoop, threading.Thread]]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    yield loop, thread
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


class _DrainStarted(logging.Handler):
    """Sets ``event`` when a channel on ``thread`` logs that its drain began."""

    def __init__(self, thread: threading.Thread) -> None:
        super().__init__()
        self.thread = thread
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        draining = record.getMessage().startswith("draining channel")
        if draining and record.thread == self.thread.ident:
            self.event.set()


async def test_close_drains_every_running_loop(
    client: Client, other_loop: tuple[asyncio.AbstractEventLoop, threading.Thread]
) -> None:
    loop, thread = other_loop
    go = asyncio.Event()  # set on the other loop once its channel drains
    tasks: list[asyncio.Task[bool]] = []

    async def hold_and_call() -> bool:
        async with service(client).channel.hold():
            await go.wait()
            info = await client.workflow_service.get_system_info(SYSTEM_INFO)
            return info.capabilities.signal_and_query_header

    async def start() -> None:
        tasks.append(asyncio.create_task(hold_and_call()))

    await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(start(), loop))
    await client.workflow_service.get_system_info(SYSTEM_INFO)  # this loop's channel
    drain_started = _DrainStarted(thread)
    logging.getLogger("graceful_grpc").addHandler(drain_started)
    try:
        closing = asyncio.ensure_future(service(client).close(grace=10))
        assert await asyncio.to_thread(drain_started.event.wait, 10)
        loop.call_soon_threadsafe(go.set)
        report = await asyncio.wait_for(closing, 15)
    finally:
        logging.getLogger("graceful_grpc").removeHandler(drain_started)
    assert report.closed and report.drained and report.completed >= 1
    assert tasks[0].done() and tasks[0].result()  # the held call ran during the drain
    with pytest.raises(RPCError) as info:
        await client.workflow_service.get_system_info(SYSTEM_INFO)
    assert info.value.status == RPCStatusCode.UNAVAILABLE


def run_scenario(name: str, target: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.support.temporal_fork", name, target],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_a_forked_child_fails_as_clearly_as_the_built_in_client(
    temporal_server: TemporalDevServer,
) -> None:
    done = run_scenario("child", temporal_server.target, GRPC_ENABLE_FORK_SUPPORT="false")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "CHILD AssertionError: Cannot use client across forks" in done.stdout


# -- 4. fork -----------------------------------------------------------------------------------


def test_sync_activities_in_fresh_fork_pools_never_break(
    temporal_server: TemporalDevServer,
) -> None:
    done = run_scenario("pools", temporal_server.target, GRPC_ENABLE_FORK_SUPPORT="false")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "BROKEN 0" in done.stdout, done.stderr[-3000:]
    assert "skipping fork() handlers" not in done.stderr


async def test_worker_support_warns_while_grpc_fork_handlers_are_enabled(
    temporal_server: TemporalDevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GRPC_ENABLE_FORK_SUPPORT", raising=False)
    with pytest.warns(GrpcForkSupportWarning, match="GRPC_ENABLE_FORK_SUPPORT=false"):
        client = await connect(temporal_server.target, worker_support=True)
    await service(client).close()
    monkeypatch.setenv("GRPC_ENABLE_FORK_SUPPORT", "false")
    with warnings.catch_warnings():
        warnings.simplefilter("error", GrpcForkSupportWarning)
        client = await connect(temporal_server.target, worker_support=True)
    await service(client).close()


# -- 5. connect() arguments --------------------------------------------------------------------


class RecordingPlugin(temporalio.client.Plugin):
    def __init__(self) -> None:
        self.connected: list[ConnectConfig] = []
        self.configured = 0

    def name(self) -> str:
        return "recording"

    def configure_client(self, config: temporalio.client.ClientConfig) -> Any:
        self.configured += 1
        return config

    async def connect_service_client(
        self, config: ConnectConfig, next: Callable[[ConnectConfig], Awaitable[ServiceClient]]
    ) -> ServiceClient:
        self.connected.append(config)
        config.rpc_metadata = {"x-plugin": "yes"}
        return await next(config)


async def test_plugins_connect_hook_runs(temporal_server: TemporalDevServer) -> None:
    plugin = RecordingPlugin()
    client = await connect(temporal_server.target, plugins=[plugin])
    assert len(plugin.connected) == 1 and plugin.configured == 1
    assert client.rpc_metadata == {"x-plugin": "yes"}
    await service(client).close()


async def test_runtime_reaches_the_worker_connection(temporal_server: TemporalDevServer) -> None:
    runtime = temporalio.runtime.Runtime(telemetry=temporalio.runtime.TelemetryConfig())
    client = await connect_quietly(temporal_server.target, runtime=runtime, worker_support=True)
    assert service(client).worker_service_client.config.runtime is runtime
    await service(client).close()


async def test_tls_defaults_on_with_an_api_key(temporal_server: TemporalDevServer) -> None:
    # The dev server speaks plaintext: a client that turned TLS on cannot connect.
    retry = RetryConfig(max_retries=1)
    for connect_ in (Client.connect, connect):
        with pytest.raises(RuntimeError, match="Failed client connect"):
            await connect_(temporal_server.target, api_key="key", retry_config=retry)
    client = await connect(temporal_server.target, api_key="key", tls=False)
    await service(client).close()


async def test_lazy_and_unreachable(temporal_server: TemporalDevServer) -> None:
    retry = RetryConfig(max_retries=1)
    closed_port = f"127.0.0.1:{_closed_port()}"
    with pytest.raises(RuntimeError, match="Failed client connect"):
        await connect(closed_port, retry_config=retry)
    lazy = await connect(closed_port, lazy=True, retry_config=retry)
    with pytest.raises(RPCError) as info:
        await lazy.workflow_service.get_system_info(SYSTEM_INFO)
    assert info.value.status == RPCStatusCode.UNAVAILABLE
    await service(lazy).close()
    lazy_worker = await connect_quietly(temporal_server.target, lazy=True, worker_support=True)
    with pytest.raises(RuntimeError, match="Lazy clients cannot be used for workers"):
        Worker(lazy_worker, task_queue="x", workflows=[EchoWorkflow])
    await service(lazy_worker).close()


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_http_connect_proxy_is_used(temporal_server: TemporalDevServer) -> None:
    proxy = ConnectProxy(credentials=("user", "secret"))
    await proxy.start()
    try:
        config = temporalio.service.HttpConnectProxyConfig(
            target_host=proxy.target, basic_auth=("user", "secret")
        )
        client = await connect(temporal_server.target, http_connect_proxy_config=config)
        await client.workflow_service.get_system_info(SYSTEM_INFO)
        assert proxy.tunnels == [temporal_server.target]
        await service(client).close()
    finally:
        await proxy.close()


async def test_arguments_grpc_cannot_honour_are_refused(
    temporal_server: TemporalDevServer,
) -> None:
    with pytest.raises(TypeError, match="not_an_argument"):
        await connect(temporal_server.target, not_an_argument=1)  # type: ignore[call-arg]
    if "connect_timeout" in inspect.signature(Client.connect).parameters:  # temporalio >= 1.35
        with pytest.raises(ValueError, match="connect_timeout is not supported"):
            await connect(temporal_server.target, connect_timeout=timedelta(seconds=1))
    with pytest.raises(ValueError, match="host:port"):
        await connect(f"http://{temporal_server.target}")


# -- 6. the workflow sandbox -------------------------------------------------------------------


async def test_a_workflow_module_importing_the_integration_runs_sandboxed(
    temporal_server: TemporalDevServer,
) -> None:
    built_in = await Client.connect(temporal_server.target)
    task_queue = f"sandbox-{uuid.uuid4()}"
    async with Worker(built_in, task_queue=task_queue, workflows=[EchoWorkflow]):
        result = await built_in.execute_workflow(
            EchoWorkflow.run, "sandboxed", id=task_queue, task_queue=task_queue
        )
    assert result == "sandboxed"
