"""The C extension's build: built with a compiler, a loud fallback without one.

Warnings are errors only when GRACEFUL_GRPC_WERROR=1 (our CI); a user's build keeps the extension.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _build(
    tmp_path: Path, env_extra: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], list[Path]]:
    source = tmp_path / "src"
    shutil.copytree(
        ROOT / "graceful_grpc",
        source / "graceful_grpc",
        ignore=shutil.ignore_patterns("*.so", "__pycache__"),
    )
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    out = tmp_path / "out"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"GRACEFUL_GRPC_NO_EXTENSIONS", "GRACEFUL_GRPC_WERROR", "CFLAGS"}
    }
    env.update(env_extra)
    result = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(out)],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return result, sorted(out.rglob("_counter*.so")) if out.exists() else []


# Defining a macro twice makes every C compiler warn (gcc/clang: '"X" redefined').
_A_WARNING = "-DGRACEFUL_GRPC_PROBE=1 -DGRACEFUL_GRPC_PROBE=2"
_FALLBACK_NOTICE = "graceful_grpc: C extension NOT built"


@pytest.fixture(autouse=True)
def _needs_the_source_tree() -> None:
    # A wheel's test run (make wheel-check, cibuildwheel) has the tests but not the sources.
    if not (ROOT / "setup.py").is_file():
        pytest.skip("builds from the source tree, which a wheel's test run does not have")


def _needs_a_compiler() -> None:
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler on this machine")


def test_builds_the_extension_with_a_compiler(tmp_path: Path) -> None:
    _needs_a_compiler()
    result, built = _build(tmp_path, {})
    assert result.returncode == 0, result.stderr
    assert len(built) == 1


def test_a_compiler_warning_does_not_drop_the_extension_for_users(tmp_path: Path) -> None:
    _needs_a_compiler()
    result, built = _build(tmp_path, {"CFLAGS": _A_WARNING})
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr  # the probe really warned
    assert len(built) == 1


def test_warnings_are_errors_in_our_ci_build(tmp_path: Path) -> None:
    _needs_a_compiler()
    result, built = _build(tmp_path, {"CFLAGS": _A_WARNING, "GRACEFUL_GRPC_WERROR": "1"})
    assert result.returncode == 0, result.stderr
    assert built == []
    assert _FALLBACK_NOTICE in result.stderr


def test_build_without_a_working_compiler_falls_back_loudly(tmp_path: Path) -> None:
    result, built = _build(tmp_path, {"CC": "false"})
    assert result.returncode == 0, result.stderr
    assert built == []
    assert _FALLBACK_NOTICE in result.stderr
    assert "COUNTER_IMPLEMENTATION == 'python'" in result.stderr


def test_no_extensions_variable_skips_the_build(tmp_path: Path) -> None:
    result, built = _build(tmp_path, {"GRACEFUL_GRPC_NO_EXTENSIONS": "1"})
    assert result.returncode == 0, result.stderr
    assert built == []
