"""A Temporal worker process for the shutdown scenario (run by the tests as a subprocess).

An activity completes asynchronously: it hands its task token to a completer task that takes a
hold on the graceful channel, waits for its "slow HTTP call" (the test answers it by writing GO on
stdin), then completes the activity through the client. The process shuts down on SIGTERM with a
ShutdownSequence: stop the worker, close the channel. ``--mode plain`` runs the same on a plain
grpc.aio channel closed with ``close(grace=...)``: the bug.

Lines on stdout for the test: READY, COMPLETER_WAITING, CLOSING, COMPLETED or
COMPLETE_FAILED <type> <status>, REPORT <json>.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from typing import Any, cast

import grpc
import temporalio.client
import temporalio.service
from temporalio import activity
from temporalio.service import ConnectConfig
from temporalio.worker import Worker

from graceful_grpc import ShutdownReport, ShutdownSequence, aio
from graceful_grpc.contrib.temporalio import GracefulServiceClient, channel_options

from .process_exit import exit_skipping_finalization
from .temporal_workflows import ReportWorkflow


def say(line: str) -> None:
    print(line, flush=True)


class _AnnounceDrain(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("draining channel"):
            say("CLOSING")


class App:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.go = asyncio.Event()
        self.completers: set[asyncio.Task[None]] = set()
        self.client: temporalio.client.Client
        self.channel: Any

    async def connect(self) -> None:
        config = ConnectConfig(target_host=self.args.worker_target)
        bridge = await temporalio.service.ServiceClient.connect(config)
        if self.args.mode == "graceful":
            self.channel = aio.insecure_channel(
                self.args.target, channel_options(), drain_timeout=self.args.drain_timeout
            )
        else:
            self.channel = grpc.aio.insecure_channel(self.args.target, channel_options())
        service_client = GracefulServiceClient(
            config, cast(aio.GracefulChannel, self.channel), worker_service_client=bridge
        )
        self.client = temporalio.client.Client(service_client, namespace="default")

    def hold(self) -> Any:
        if self.args.mode == "graceful":
            return self.channel.hold()
        return contextlib.nullcontext()

    async def completer(self, task_token: bytes, job: str) -> None:
        async with self.hold():
            say("COMPLETER_WAITING")
            await self.go.wait()  # the slow HTTP call
            try:
                handle = self.client.get_async_activity_handle(task_token=task_token)
                await handle.complete(f"done:{job}")
                say("COMPLETED")
            except Exception as error:
                status = getattr(error, "status", None)
                name = f"{type(error).__module__}.{type(error).__name__}"
                say(f"COMPLETE_FAILED {name} {status.name if status is not None else '-'}")

    @activity.defn(name="slow_http")
    async def slow_http(self, job: str) -> str:
        task = asyncio.create_task(self.completer(activity.info().task_token, job))
        self.completers.add(task)
        task.add_done_callback(self.completers.discard)
        activity.raise_complete_async()

    async def read_stdin(self) -> None:
        # Through the loop, not a thread: a thread blocked in readline() would keep
        # asyncio.run() from returning.
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            if line.strip() == b"GO":
                self.go.set()

    async def close_plain(self) -> None:
        closing = asyncio.ensure_future(self.channel.close(grace=self.args.drain_timeout))
        await asyncio.sleep(0)  # grpc.aio's close() has marked the channel closing
        say("CLOSING")
        await closing

    async def run(self) -> ShutdownReport:
        await self.connect()
        worker = Worker(
            self.client,
            task_queue=self.args.task_queue,
            workflows=[ReportWorkflow],
            activities=[self.slow_http],
        )
        sequence = ShutdownSequence(timeout=self.args.budget)
        sequence.add("stop worker", worker.shutdown, timeout=self.args.budget / 2)
        if self.args.mode == "graceful":
            sequence.add("close channel", self.channel.close)
        else:
            sequence.add("close channel", self.close_plain)
        sequence.install_signal_handlers()
        worker_run = asyncio.create_task(worker.run())
        stdin = asyncio.create_task(self.read_stdin())
        say("READY")
        report = await sequence.wait()
        await asyncio.gather(worker_run, return_exceptions=True)
        await asyncio.gather(*self.completers, return_exceptions=True)
        stdin.cancel()
        return report


def _summary(report: ShutdownReport) -> dict[str, Any]:
    steps = []
    for step in report.steps:
        entry: dict[str, Any] = {"name": step.name, "outcome": step.outcome}
        if step.drain is not None:
            entry["drain"] = {
                "closed": step.drain.closed,
                "drained": step.drain.drained,
                "completed": step.drain.completed,
                "cancelled": [[c.method, c.kind] for c in step.drain.cancelled],
                "abandoned_holds": step.drain.abandoned_holds,
            }
        steps.append(entry)
    return {"duration": report.duration, "forced": report.forced, "steps": steps}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["graceful", "plain"], required=True)
    parser.add_argument("--target", required=True, help="frontend for client calls")
    parser.add_argument("--worker-target", required=True, help="frontend for the worker's polls")
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--drain-timeout", type=float, default=20.0)
    parser.add_argument("--budget", type=float, default=30.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    logging.getLogger("graceful_grpc").addHandler(_AnnounceDrain())
    report = asyncio.run(App(args).run())
    say("REPORT " + json.dumps(_summary(report)))
    return 0


if __name__ == "__main__":
    exit_skipping_finalization(main())
