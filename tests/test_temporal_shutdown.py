"""The seed scenario: an activity completing after SIGTERM still delivers its result.

A worker process (tests/support/temporal_app.py) runs an activity that completes asynchronously
through a completer holding the graceful channel. The test sends SIGTERM while the completer waits
for its slow call, and answers that call only once the channel has started closing.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import temporalio.client
from temporalio.worker import Worker

from graceful_grpc.contrib.temporalio import connect

from .support.stalling_proxy import StallingProxy
from .support.temporal_server import TemporalDevServer
from .support.temporal_workflows import ReportWorkflow

pytestmark = pytest.mark.temporal
ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log
        self.lines: list[str] = []

    async def expect(self, prefix: str, timeout: float = 60) -> str:  # noqa: ASYNC109
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    raise AssertionError(
                        f"worker exited before {prefix!r}; saw {self.lines}; log:\n"
                        + self.log.read_text()[-3000:]
                    )
                line = raw.decode().strip()
                self.lines.append(line)
                if line.startswith(prefix):
                    return line

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n".encode())

    async def exits_cleanly(self, timeout: float) -> None:  # noqa: ASYNC109
        code = await asyncio.wait_for(self.process.wait(), timeout)
        assert code == 0, f"worker exited with {code}; log:\n" + self.log.read_text()[-3000:]


@pytest.fixture
async def temporal(temporal_server: TemporalDevServer) -> AsyncIterator[temporalio.client.Client]:
    client = await connect(temporal_server.target, worker_support=True)
    yield client
    await client.service_client.channel.close(grace=0)  # type: ignore[attr-defined]


async def start_worker(
    mode: str, target: str, worker_target: str, log: Path, **options: Any
) -> WorkerProcess:
    command = [
        sys.executable,
        "-m",
        "tests.support.temporal_app",
        "--mode",
        mode,
        "--target",
        target,
        "--worker-target",
        worker_target,
    ]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=log.open("wb"),
    )
    worker = WorkerProcess(process, log)
    await worker.expect("READY")
    return worker


async def run_until_completer_waits(
    client: temporalio.client.Client, worker: WorkerProcess, task_queue: str
) -> temporalio.client.WorkflowHandle[Any, Any]:
    handle = await client.start_workflow(
        ReportWorkflow.run, "job-1", id=f"report-{uuid.uuid4()}", task_queue=task_queue
    )
    await worker.expect("COMPLETER_WAITING")
    return handle


async def terminate_worker_process(worker: WorkerProcess) -> None:
    if worker.process.returncode is None:
        worker.process.kill()
        await worker.process.wait()


async def test_result_delivered_after_sigterm(
    temporal_server: TemporalDevServer, temporal: temporalio.client.Client, tmp_path: Path
) -> None:
    task_queue = f"seed-{uuid.uuid4()}"
    budget = 30.0
    worker = await start_worker(
        "graceful",
        temporal_server.target,
        temporal_server.target,
        tmp_path / "worker.log",
        task_queue=task_queue,
        budget=budget,
    )
    try:
        handle = await run_until_completer_waits(temporal, worker, task_queue)
        started = time.monotonic()
        worker.process.send_signal(signal.SIGTERM)
        await worker.expect("CLOSING")  # the channel is draining: grpc.aio would refuse now
        worker.send("GO")  # the slow HTTP call returns
        assert await worker.expect("COMPLETED") == "COMPLETED"
        report = json.loads((await worker.expect("REPORT"))[len("REPORT ") :])
        await worker.exits_cleanly(timeout=budget)
        assert time.monotonic() - started < budget
        close = report["steps"][1]
        assert close["name"] == "close channel" and close["outcome"] == "ok"
        assert close["drain"]["drained"] and close["drain"]["completed"] >= 1
        # The activity's result reached the server; a successor worker (another replica, in
        # production) runs the workflow task that returns it.
        async with Worker(temporal, task_queue=task_queue, workflows=[ReportWorkflow]):
            assert await asyncio.wait_for(handle.result(), timeout=60) == "done:job-1"
    finally:
        await terminate_worker_process(worker)


async def test_plain_grpc_aio_loses_the_result(
    temporal_server: TemporalDevServer, temporal: temporalio.client.Client, tmp_path: Path
) -> None:
    task_queue = f"seed-plain-{uuid.uuid4()}"
    worker = await start_worker(
        "plain",
        temporal_server.target,
        temporal_server.target,
        tmp_path / "worker.log",
        task_queue=task_queue,
        drain_timeout=10,
    )
    try:
        handle = await run_until_completer_waits(temporal, worker, task_queue)
        worker.process.send_signal(signal.SIGTERM)
        await worker.expect("CLOSING")
        worker.send("GO")
        failed = await worker.expect("COMPLETE_FAILED")
        assert "UsageError" in failed  # "Channel is closed.": the bug this library fixes
        await worker.exits_cleanly(timeout=30)
        description = await handle.describe()
        assert description.status == temporalio.client.WorkflowExecutionStatus.RUNNING
        assert len(description.raw_description.pending_activities) == 1  # the result is lost
    finally:
        await terminate_worker_process(worker)
        await handle.terminate()


async def test_drain_deadline_shorter_than_the_work(
    temporal_server: TemporalDevServer, temporal: temporalio.client.Client, tmp_path: Path
) -> None:
    host, port = temporal_server.target.rsplit(":", 1)
    proxy = StallingProxy(host, int(port))
    await proxy.start()
    task_queue = f"seed-deadline-{uuid.uuid4()}"
    budget = 20.0
    worker = await start_worker(
        "graceful",
        proxy.target,
        temporal_server.target,
        tmp_path / "worker.log",
        task_queue=task_queue,
        drain_timeout=1.5,
        budget=budget,
    )
    try:
        handle = await run_until_completer_waits(temporal, worker, task_queue)
        started = time.monotonic()
        worker.process.send_signal(signal.SIGTERM)
        await worker.expect("CLOSING")
        proxy.stall()  # the completion call will hang in flight
        worker.send("GO")
        failed = await worker.expect("COMPLETE_FAILED")
        assert failed.endswith("temporalio.service.RPCError CANCELLED")
        report = json.loads((await worker.expect("REPORT"))[len("REPORT ") :])
        await worker.exits_cleanly(timeout=budget)
        assert time.monotonic() - started < budget
        drain = report["steps"][1]["drain"]
        assert drain["closed"] and not drain["drained"]
        assert drain["cancelled"] == [
            [
                "/temporal.api.workflowservice.v1.WorkflowService/RespondActivityTaskCompleted",
                "unary_unary",
            ]
        ]
    finally:
        proxy.resume()
        await terminate_worker_process(worker)
        await proxy.close()
        await handle.terminate()
