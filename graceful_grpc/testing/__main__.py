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
    parser = argparse.ArgumentParser(
        prog="python -m graceful_grpc.testing",
        description="Serves the Echo test service until stdin closes; prints "
        "'LISTENING host:port' once it listens. Needs protobuf "
        "(pip install 'graceful-grpc[testing]').",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument(
        "--cpu",
        type=int,
        default=None,
        metavar="N",
        help="pin this process to CPU N, Linux only (default: not pinned)",
    )
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    asyncio.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
