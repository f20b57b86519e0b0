"""Checks what the sdist and the wheel in a dist/ folder contain (run by `make dist`)."""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

SDIST_MUST_HAVE = (
    "LICENSE",
    "setup.py",
    "graceful_grpc/_counter.c",
    "protos/graceful_grpc/testing/v1/echo.proto",
    "tests/conftest.py",
    "tests/support/calls.py",
    "tests/support/stalling_proxy.py",
    "tests/test_channel.py",
    "benchmarks/__main__.py",
)
WHEEL_MUST_HAVE = (
    "graceful_grpc/py.typed",
    "graceful_grpc/testing/v1/echo_pb2.pyi",
    "graceful_grpc/testing/v1/echo_pb2_grpc.pyi",
    "graceful_grpc/aio/_grpc_internals.py",
)


def main(dist: Path) -> list[str]:
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    problems = []
    with tarfile.open(sdist) as archive:
        sdist_names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    problems += [f"sdist lacks {name}" for name in SDIST_MUST_HAVE if name not in sdist_names]
    problems += [f"sdist carries {n}" for n in sdist_names if n.endswith((".so", ".pyc"))]
    with zipfile.ZipFile(wheel) as archive:
        wheel_names = set(archive.namelist())
    problems += [f"wheel lacks {name}" for name in WHEEL_MUST_HAVE if name not in wheel_names]
    if not any(n.startswith("graceful_grpc/_counter.") and n.endswith(".so") for n in wheel_names):
        problems.append("wheel lacks the C extension graceful_grpc/_counter*.so")
    problems += [f"wheel carries {n}" for n in wheel_names if n.endswith(".c")]
    problems += [
        f"wheel carries {n}" for n in wheel_names if n.startswith(("tests/", "benchmarks/"))
    ]
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in wheel_names):
        problems.append("wheel lacks the LICENSE")
    print(f"{sdist.name}: {len(sdist_names)} files; {wheel.name}: {len(wheel_names)} files")
    return problems


if __name__ == "__main__":
    found = main(Path(sys.argv[1]))
    for problem in found:
        print(f"dist: {problem}", file=sys.stderr)
    sys.exit(1 if found else 0)
