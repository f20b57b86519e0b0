"""Fork scenarios for the Temporal tests, run as a subprocess (fork inside pytest is unsafe).

``pools``: a Worker on the graceful client runs sync activities in 20 fresh fork-context
ProcessPoolExecutors, one workflow each; prints ``BROKEN <n>`` (pools whose children died).
``child``: the client is used in a forked child; prints ``CHILD <exception type>: <message>``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import sys
import uuid
from datetime import timedelta

import temporalio.api.workflowservice.v1 as wf
from temporalio import activity, workflow
from temporalio.worker import SharedStateManager, Worker

from graceful_grpc.contrib.temporalio import connect

from .process_exit import exit_skipping_finalization

POOLS = 20


@activity.defn
def double(value: int) -> int:
    return value * 2


@workflow.defn(sandboxed=False)
class DoubleWorkflow:
    @workflow.run
    async def run(self, value: int) -> int:
        result: int = await workflow.execute_activity(
            double, value, start_to_close_timeout=timedelta(seconds=20)
        )
        return result


async def pools(target: str) -> None:
    client = await connect(target, worker_support=True)
    context = multiprocessing.get_context("fork")
    manager = context.Manager()
    broken = 0
    for index in range(POOLS):
        task_queue = f"fork-{uuid.uuid4()}"
        try:
            with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
                async with Worker(
                    client,
                    task_queue=task_queue,
                    workflows=[DoubleWorkflow],
                    activities=[double],
                    activity_executor=pool,
                    shared_state_manager=SharedStateManager.create_from_multiprocessing(manager),
                ):
                    result = await client.execute_workflow(
                        DoubleWorkflow.run,
                        index,
                        id=task_queue,
                        task_queue=task_queue,
                        execution_timeout=timedelta(seconds=10),
                    )
                    assert result == 2 * index
        except Exception as error:  # a broken pool fails the worker or the workflow
            broken += 1
            print(f"pool {index}: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
    manager.shutdown()
    await client.service_client.close()  # type: ignore[attr-defined]
    print(f"BROKEN {broken}", flush=True)


async def child(target: str) -> None:
    client = await connect(target)
    await client.workflow_service.get_system_info(wf.GetSystemInfoRequest())
    pid = os.fork()
    if pid == 0:
        try:
            await client.workflow_service.get_system_info(wf.GetSystemInfoRequest())
            print("CHILD ok", flush=True)
        except BaseException as error:
            print(f"CHILD {type(error).__name__}: {error}", flush=True)
        os._exit(0)
    await asyncio.to_thread(os.waitpid, pid, 0)
    await client.service_client.close()  # type: ignore[attr-defined]


if __name__ == "__main__":
    scenario = {"pools": pools, "child": child}[sys.argv[1]]
    asyncio.run(scenario(sys.argv[2]))
    exit_skipping_finalization(0)
