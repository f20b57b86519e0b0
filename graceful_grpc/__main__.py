"""``python -m graceful_grpc COMMAND [OPTIONS]``; ``python -m graceful_grpc --help`` lists them."""

from __future__ import annotations

import argparse
import sys

from . import demo


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per command, each with its own ``--help``."""
    parser = argparse.ArgumentParser(
        prog="python -m graceful_grpc",
        description="Command line of graceful_grpc. "
        "'python -m graceful_grpc COMMAND --help' shows a command's options.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    demo_parser = commands.add_parser("demo", help=demo.SUMMARY)
    demo.configure(demo_parser)
    demo_parser.set_defaults(run=lambda args: demo.run(demo_parser, args))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parses ``argv`` (default: ``sys.argv[1:]``) and runs the command; returns its status.

    Without arguments prints the help (the list of commands) to stderr and returns 2.
    """
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    status: int = args.run(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
