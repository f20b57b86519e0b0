"""``python -m benchmarks.client_worker``: runs measurements on command, one JSON line each.

The coordinator keeps one of these per process kind (default extensions, and
GRACEFUL_GRPC_NO_EXTENSIONS=1), pinned to the client CPU, and sends it
``{"mode": ..., "workload": ..., "units": ..., "target": ...}`` lines.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from graceful_grpc import COUNTER_IMPLEMENTATION

from .harness.modes import MODES
from .harness.workloads import WORKLOADS, Sample


def _loop_factory(use_uvloop: bool) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if not use_uvloop:
        return None
    import uvloop

    return uvloop.new_event_loop


async def _measure(command: dict[str, Any]) -> Sample:
    mode = MODES[command["mode"]]
    channel = mode.channel(command["target"])
    try:
        return await WORKLOADS[command["workload"]](channel, command["units"])
    finally:
        await channel.close()


def main() -> None:
    cpu = os.environ.get("BENCH_CLIENT_CPU")
    if cpu:
        os.sched_setaffinity(0, {int(cpu)})
    print(json.dumps({"ready": True, "counter": COUNTER_IMPLEMENTATION}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        mode = MODES[command["mode"]]
        with asyncio.Runner(loop_factory=_loop_factory(mode.uvloop)) as runner:
            sample = runner.run(_measure(command))
        print(json.dumps(asdict(sample)), flush=True)


if __name__ == "__main__":
    main()
