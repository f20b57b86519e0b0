"""contrib.temporalio.connect()'s options are typed as Client.connect's: mypy --strict rejects a
misspelt keyword or a wrong type, and accepts what Client.connect accepts."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import temporalio.client

from graceful_grpc.contrib.temporalio import ConnectOptions, connect
from graceful_grpc.contrib.temporalio._connect_options import NEWER_KEYWORDS

ROOT = Path(__file__).resolve().parent.parent

_ACCEPTED = """
import temporalio.client

from graceful_grpc.contrib.temporalio import ConnectOptions, connect


async def main() -> temporalio.client.Client:
    return await connect(
        "127.0.0.1:7233", namespace="default", lazy=True, identity="me", drain_timeout=5.0
    )


async def as_client_connect_takes_them(options: ConnectOptions) -> None:
    # Every ConnectOptions type is one Client.connect accepts for that keyword.
    await temporalio.client.Client.connect("127.0.0.1:7233", **options)
"""

_REJECTED = """
from graceful_grpc.contrib.temporalio import connect


async def main() -> None:
    await connect("127.0.0.1:7233", namspace="default")
    await connect("127.0.0.1:7233", lazy="yes")
"""


def test_mypy_strict_checks_the_options(tmp_path: Path) -> None:
    accepted, rejected = tmp_path / "accepted.py", tmp_path / "rejected.py"
    accepted.write_text(_ACCEPTED)
    rejected.write_text(_REJECTED)
    mypy = [sys.executable, "-m", "mypy", "--strict", "--config-file", str(ROOT / "pyproject.toml")]
    out = subprocess.run(
        [*mypy, "--no-error-summary", "--hide-error-context", str(accepted), str(rejected)],
        cwd=ROOT,  # its .mypy_cache, warm after `make typecheck`
        env={**os.environ, "MYPY_FORCE_COLOR": "0"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in out.stdout.splitlines() if ": error: " in line]
    assert not [line for line in errors if line.startswith(str(accepted))], out.stdout
    assert [line.split(": error: ")[1] for line in errors] == [
        'Unexpected keyword argument "namspace" for "connect"; did you mean "namespace"?  '
        "[call-arg]",
        'Argument "lazy" to "connect" has incompatible type "str"; expected "bool"  [arg-type]',
    ], out.stdout + out.stderr


def test_the_options_are_client_connects_keywords() -> None:
    taken = set(inspect.signature(temporalio.client.Client.connect).parameters) - {"target_host"}
    typed = set(ConnectOptions.__annotations__)
    assert taken - typed == set()  # every keyword of the installed temporalio is typed
    assert typed - taken <= NEWER_KEYWORDS  # and only the newer ones may be missing from it
    annotations = inspect.signature(connect).parameters["options"].annotation
    assert annotations == "Unpack[ConnectOptions]"
