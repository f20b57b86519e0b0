"""The C extension's build: built with a compiler, silently skipped without one."""

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
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "GRACEFUL_GRPC_NO_EXTENSIONS"}
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


def test_builds_the_extension_with_a_compiler(tmp_path: Path) -> None:
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler on this machine")
    result, built = _build(tmp_path, {})
    assert result.returncode == 0, result.stderr
    assert len(built) == 1


def test_build_without_a_working_compiler_falls_back(tmp_path: Path) -> None:
    result, built = _build(tmp_path, {"CC": "false"})
    assert result.returncode == 0, result.stderr
    assert built == []
    assert "using pure Python" in result.stderr


def test_no_extensions_variable_skips_the_build(tmp_path: Path) -> None:
    result, built = _build(tmp_path, {"GRACEFUL_GRPC_NO_EXTENSIONS": "1"})
    assert result.returncode == 0, result.stderr
    assert built == []
