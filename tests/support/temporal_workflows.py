"""Workflows for the Temporal tests (imported by the workflow sandbox: temporalio imports only)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow


@workflow.defn
class ReportWorkflow:
    """Runs the activity whose result must survive the worker's shutdown."""

    @workflow.run
    async def run(self, job: str) -> str:
        result: str = await workflow.execute_activity(
            "slow_http", job, start_to_close_timeout=timedelta(minutes=5)
        )
        return result


@workflow.defn
class GreetingWorkflow:
    """Collects names by signal, answers queries, then awaits an async-completed activity."""

    def __init__(self) -> None:
        self._names: list[str] = []

    @workflow.run
    async def run(self, first: str) -> list[str]:
        # A signal can be handled before run() starts (same first workflow task): put the
        # argument first, whatever arrived already.
        self._names.insert(0, first)
        await workflow.wait_condition(lambda: len(self._names) >= 2)
        completed: str = await workflow.execute_activity(
            "completed_elsewhere", self._names[-1], start_to_close_timeout=timedelta(minutes=5)
        )
        return [*self._names, completed]

    @workflow.signal
    def add(self, name: str) -> None:
        self._names.append(name)

    @workflow.query
    def names(self) -> list[str]:
        return list(self._names)


@workflow.defn
class SignalledWorkflow:
    """Waits for ``finish``, then returns what an activity reports through ``activity.client()``."""

    def __init__(self) -> None:
        self._finished = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self._finished)
        result: str = await workflow.execute_activity(
            "namespace_via_activity_client", start_to_close_timeout=timedelta(seconds=30)
        )
        return result

    @workflow.signal
    def finish(self) -> None:
        self._finished = True
