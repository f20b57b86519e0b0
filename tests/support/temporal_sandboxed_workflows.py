"""A workflow module that imports the integration at top level, as the README's example does.

The workflow sandbox re-imports this module to validate and run the workflow.
"""

from __future__ import annotations

from temporalio import workflow

import graceful_grpc.contrib.temporalio  # noqa: F401 - the import under test


@workflow.defn
class EchoWorkflow:
    """Returns its argument."""

    @workflow.run
    async def run(self, text: str) -> str:
        return text
