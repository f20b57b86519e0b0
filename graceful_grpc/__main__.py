"""``python -m graceful_grpc demo [--jobs N] [--drain-timeout S] [--json] [--metrics]``."""

from __future__ import annotations

import sys

from .demo import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or args[0] != "demo":
        print(
            "usage: python -m graceful_grpc demo [--jobs N] [--drain-timeout S] [--json] "
            "[--metrics]"
        )
        sys.exit(2)
    sys.exit(main(args[1:]))
