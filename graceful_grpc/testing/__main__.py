"""``python -m graceful_grpc.testing``: serve Echo until stdin closes.

Prints ``LISTENING host:port`` once the server listens.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from ._echo_server import EchoServer


async def _serve(host: str, port: int) -> None:
    async with EchoServer(host, port) as server:
        print(f"LISTENING {server.target}", flush=True)
        # The parent ends us by closing our stdin (or by a signal).
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m graceful_grpc.testing")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    asyncio.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
