"""``python -m benchmarks.rolling_restart``: a rolling restart of three backends under load.

The setting that breaks services in production: an L4 load balancer (as kube-proxy with
readiness probes) in front of three backend processes whose handlers call a downstream service;
8 clients calling in a loop and 2 watchers holding server streams; each backend in turn gets
SIGTERM, shuts down, exits and restarts on the same port. Compared: *naive* (grpc.aio's
``server.stop(grace)``, then the channel's close), *best* (the hand-written best practice:
health NOT_SERVING, sleep, stop) and *graceful* (``graceful_grpc.aio.server`` and a
ShutdownSequence), behind the balancer (scenario ``proxy``) and with client-side ``round_robin``
over the three addresses (scenario ``round_robin``). Reported: the clients' failed calls by
status, the downstream calls refused, how long each watcher waited after its backend's drain
began, and each backend's shutdown time (SIGTERM to exit).
"""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import argparse
import asyncio
import json
import sys
from pathlib import Path

from .run import Result, Settings, describe, run

__all__ = ("main",)

SCENARIOS = ("proxy", "round_robin")
VARIANTS = ("naive", "best", "graceful")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.rolling_restart", description=__doc__
    )
    parser.add_argument("--scenario", choices=SCENARIOS, action="append")
    parser.add_argument("--variant", choices=VARIANTS, action="append")
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--unready-delay", type=float, default=0.5)
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--settle", type=float, default=1.0)
    parser.add_argument(
        "--max-connection-age",
        type=float,
        default=0.0,
        help="the backends' grpc.max_connection_age_ms, in seconds (default 0: none)",
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if args.restarts < 1:
        parser.error("--restarts must be at least 1")
    results: list[Result] = []
    for scenario in args.scenario or SCENARIOS:
        for variant in args.variant or VARIANTS:
            settings = Settings(
                scenario,
                variant,
                restarts=args.restarts,
                unready_delay=args.unready_delay,
                grace=args.grace,
                settle=args.settle,
                max_connection_age=args.max_connection_age,
            )
            result = asyncio.run(run(settings))
            print(describe(result), flush=True)
            results.append(result)
    if args.json:
        args.json.write_text(json.dumps([r.as_dict() for r in results], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
