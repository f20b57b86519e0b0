"""Runs a built wheel's tests the way cibuildwheel does, or the demo on its core install.

Usage:
    python .ci/wheel_suite.py WHEEL VENV [--counter c|python]
    python .ci/wheel_suite.py --core WHEEL VENV

The first form does for one wheel what cibuildwheel's test step does with pyproject's
[tool.cibuildwheel] table (the one place the test run is defined): a fresh VENV; the wheel
installed (not the source tree) with its test-extras and test-groups, every version pinned by
constraints.txt; the test-sources copied into VENV/test-run, a folder where the repository's
graceful_grpc/ is not importable; there the test-command, with test-environment (whose expected
counter --counter overrides). The suite itself fails unless graceful_grpc comes from VENV and the
expected counter is active (tests/test_package.py). Prints the pytest summary and the duration.

The second form installs the wheel alone, as ``pip install graceful-grpc`` does (no extras),
checks that grpcio is all it brings, prints ``pip show graceful-grpc`` and runs the demo.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints.txt"
# Variables of our own runs that would change what the installed package does.
UNSET = ("GRACEFUL_GRPC_NO_EXTENSIONS", "GRACEFUL_GRPC_NO_DIRECT_CALLS", "PYTHONPATH")


def _fresh_venv(venv: Path) -> tuple[Path, dict[str, str]]:
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    env["VIRTUAL_ENV"] = str(venv)
    _pip(python, env, "pip", build_constraint=False)  # the venv's own pip may predate the option
    return python, env


def _pip(python: Path, env: dict[str, str], *args: str, build_constraint: bool = True) -> None:
    pinned = ["-c", str(CONSTRAINTS)]
    if build_constraint:
        pinned += ["--build-constraint", str(CONSTRAINTS)]
    command = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    done = subprocess.run(
        [*command, *pinned, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # This machine's pip configuration names index folders that may be absent: not our output.
    print(
        "".join(
            line
            for line in done.stdout.splitlines(keepends=True)
            if not line.startswith("WARNING: Location")
        ),
        end="",
    )
    done.check_returncode()


def _listed(python: Path, env: dict[str, str]) -> set[str]:
    out = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return {package["name"].lower() for package in json.loads(out.stdout)}


def suite(wheel: Path, venv: Path, counter: str | None) -> int:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["cibuildwheel"]
    python, env = _fresh_venv(venv)
    extras = ",".join(config["test-extras"])
    groups = [f"--group={ROOT / 'pyproject.toml'}:{group}" for group in config["test-groups"]]
    _pip(python, env, f"{wheel}[{extras}]", *groups)
    subprocess.run(
        [str(python), "-m", "pip", "check"], check=True, env=env, stdout=subprocess.DEVNULL
    )

    run_dir = venv / "test-run"
    run_dir.mkdir()
    for source in config["test-sources"]:
        path = ROOT / source
        if path.is_dir():
            shutil.copytree(path, run_dir / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, run_dir / source)
    env.update(config["test-environment"])
    if counter is not None:
        env["GRACEFUL_GRPC_EXPECT_COUNTER"] = counter
    header = (
        "import graceful_grpc, grpc; from graceful_grpc.aio import _call_factory as f; "
        "print(f'== {graceful_grpc.__file__}: counter {graceful_grpc.COUNTER_IMPLEMENTATION}, "
        "grpcio {grpc.__version__}, direct call path {f.DIRECT_AVAILABLE}')"
    )
    subprocess.run([str(python), "-c", header], check=True, cwd=run_dir, env=env)
    print(f"== {config['test-command']}  (in {run_dir})", flush=True)
    started = time.monotonic()
    done = subprocess.Popen(
        config["test-command"],
        shell=True,
        cwd=run_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert done.stdout is not None
    summary = ""
    for line in done.stdout:
        print(line, end="", flush=True)
        if re.search(r"\d+ (passed|failed)", line):
            summary = line.strip().strip("=").strip()
    status = done.wait()
    took = time.monotonic() - started
    print(f"wheel-suite: {wheel.name}: {summary or 'no summary'}; the step took {took:.0f} s")
    return status


def core(wheel: Path, venv: Path) -> int:
    python, env = _fresh_venv(venv)
    seeded = _listed(python, env)  # pip (and setuptools on 3.11): the venv's own
    _pip(python, env, "grpcio")
    with_grpcio = _listed(python, env)  # grpcio and its own requirements
    _pip(python, env, str(wheel))
    brought = _listed(python, env) - with_grpcio
    if brought != {"graceful-grpc"}:
        print(f"core install: the wheel brought {sorted(brought)} beside grpcio's")
        return 1
    print(f"== core install: graceful-grpc with {sorted(with_grpcio - seeded)} (grpcio's)")
    shown = subprocess.run(
        [str(python), "-m", "pip", "show", "graceful-grpc"],
        check=True,
        env=env,
        text=True,
        capture_output=True,
    )
    print(shown.stdout, end="")
    no_protobuf = subprocess.run(
        [str(python), "-c", "import graceful_grpc.testing"], env=env, capture_output=True, text=True
    )
    if "graceful_grpc.testing needs protobuf" not in no_protobuf.stderr:
        print(f"core install: protobuf is there, or the message is not:\n{no_protobuf}")
        return 1
    elsewhere = venv / "run"  # not the repository: the installed package only
    elsewhere.mkdir()
    demo = [str(python), "-m", "graceful_grpc", "demo", "--jobs", "6"]
    subprocess.run(demo, check=True, cwd=elsewhere, env=env)
    out = subprocess.run(
        [*demo, "--json"], check=True, cwd=elsewhere, env=env, capture_output=True, text=True
    )
    plain, graceful = json.loads(out.stdout)
    if not (plain["lost"] > 0 and graceful["lost"] == 0):
        print(f"core install: the demo showed {plain} / {graceful}")
        return 1
    print(
        f"== core install: demo ok: {shlex.join(demo[1:])} (plain lost {plain['lost']}/6, "
        "graceful_grpc lost 0)"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--core", action="store_true", help="the core install and the demo")
    parser.add_argument("--counter", choices=("c", "python"), help="the counter to expect")
    parser.add_argument("wheel", type=Path)
    parser.add_argument("venv", type=Path)
    args = parser.parse_args()
    wheel, venv = args.wheel.resolve(), args.venv.resolve()
    return core(wheel, venv) if args.core else suite(wheel, venv, args.counter)


if __name__ == "__main__":
    sys.exit(main())
