"""Checks what built distributions contain and declare.

``check_dist.py DIST``: the sdist and the wheel of `make dist`. ``check_dist.py --release DIR``:
the wheels of `make wheels` (one repaired manylinux wheel with the C extension, one py3-none-any
wheel without it). Every wheel's metadata is checked too: the users' extras only (contributors'
dependencies are dependency groups, never published), classifiers PyPI accepts, the licence as
PEP 639 has it, a name for the authors.
"""

from __future__ import annotations

import email.parser
import sys
import tarfile
import zipfile
from pathlib import Path

from trove_classifiers import classifiers as known_classifiers
from trove_classifiers import deprecated_classifiers

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
USER_EXTRAS = {"testing", "temporal", "opentelemetry"}


def check_sdist(sdist: Path) -> list[str]:
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    problems = [f"sdist lacks {name}" for name in SDIST_MUST_HAVE if name not in names]
    problems += [f"sdist carries {n}" for n in names if n.endswith((".so", ".pyc"))]
    print(f"{sdist.name}: {len(names)} files")
    return problems


def check_wheel(wheel: Path, *, extension: bool) -> list[str]:
    """The wheel's files (with or without the C extension) and its metadata."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata_name,) = (n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(archive.read(metadata_name).decode())
    problems = [f"{wheel.name} lacks {name}" for name in WHEEL_MUST_HAVE if name not in names]
    built = [n for n in names if n.startswith("graceful_grpc/_counter.") and n.endswith(".so")]
    built += [n for n in names if n.startswith("graceful_grpc/_counter.") and n.endswith(".pyd")]
    if extension and not built:
        problems.append(f"{wheel.name} lacks the C extension graceful_grpc/_counter*")
    if not extension and built:
        problems.append(f"{wheel.name} carries a C extension: {built}")
    problems += [f"{wheel.name} carries {n}" for n in names if n.endswith(".c")]
    problems += [
        f"{wheel.name} carries {n}" for n in names if n.startswith(("tests/", "benchmarks/"))
    ]
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
        problems.append(f"{wheel.name} lacks the LICENSE")
    print(f"{wheel.name}: {len(names)} files")
    return problems + [f"{wheel.name}: {p}" for p in check_metadata(metadata)]


def check_metadata(metadata: email.message.Message) -> list[str]:
    problems = []
    extras = set(metadata.get_all("Provides-Extra", []))
    if extras != USER_EXTRAS:
        problems.append(f"extras {sorted(extras)}, expected the users' {sorted(USER_EXTRAS)}")
    for classifier in metadata.get_all("Classifier", []):
        if classifier in deprecated_classifiers or classifier not in known_classifiers:
            problems.append(f"classifier {classifier!r} is not one PyPI accepts")
        if classifier.startswith("License ::"):
            problems.append(f"licence classifier {classifier!r}: PEP 639 forbids it")
    if metadata["License-Expression"] != "Apache-2.0":
        problems.append(f"License-Expression {metadata['License-Expression']!r}")
    if metadata["License"] is not None:  # Metadata 2.4: exclusive with License-Expression
        problems.append("a License field next to License-Expression")
    if metadata.get_all("License-File") != ["LICENSE"]:
        problems.append(f"License-File {metadata.get_all('License-File')}")
    if not metadata["Author"]:
        problems.append("no Author")
    return problems


def main(argv: list[str]) -> list[str]:
    if argv[0] == "--release":
        wheels = sorted(Path(argv[1]).glob("*.whl"))
        platform = [w for w in wheels if "manylinux" in w.name]
        pure = [w for w in wheels if w.name.endswith("-py3-none-any.whl")]
        if len(platform) != 1 or len(pure) != 1 or len(wheels) != 2:
            return [f"expected one manylinux and one py3-none-any wheel, got {wheels}"]
        return check_wheel(platform[0], extension=True) + check_wheel(pure[0], extension=False)
    dist = Path(argv[0])
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    return check_sdist(sdist) + check_wheel(wheel, extension=True)


if __name__ == "__main__":
    found = main(sys.argv[1:])
    for problem in found:
        print(f"dist: {problem}", file=sys.stderr)
    sys.exit(1 if found else 0)
