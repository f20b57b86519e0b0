"""The workflow of the Temporal guide's example (docs/temporal.md): the sandbox imports it."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow


@workflow.defn
class FetchWorkflow:
    """Fetches one URL through the ``fetch`` activity, which completes asynchronously."""

    @workflow.run
    async def run(self, url: str) -> str:
        result: str = await workflow.execute_activity(
            "fetch", url, start_to_close_timeout=timedelta(minutes=5)
        )
        return result
