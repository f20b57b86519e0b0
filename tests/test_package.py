"""Packaging: which counter is active, and the public surface."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

import graceful_grpc


def _implementation(env_extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if k != "GRACEFUL_GRPC_NO_EXTENSIONS"}
    env.update(env_extra)
    out = subprocess.run(
        # -P: the package under test, not a source tree that happens to be the working directory
        [
            sys.executable,
            "-P",
            "-c",
            "import graceful_grpc; print(graceful_grpc.COUNTER_IMPLEMENTATION)",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def test_no_extensions_env_var_selects_python() -> None:
    assert _implementation({"GRACEFUL_GRPC_NO_EXTENSIONS": "1"}) == "python"


def test_default_selects_c_when_built() -> None:
    try:
        importlib.import_module("graceful_grpc._counter")
    except ImportError:
        pytest.skip("C extension not built")
    assert _implementation({}) == "c"


def test_active_implementation_matches_environment() -> None:
    expected = "python" if os.environ.get("GRACEFUL_GRPC_NO_EXTENSIONS") else "c"
    if expected == "c":
        try:
            importlib.import_module("graceful_grpc._counter")
        except ImportError:
            pytest.skip("C extension not built")
    assert expected == graceful_grpc.COUNTER_IMPLEMENTATION


def test_py_typed_ships() -> None:
    assert os.path.exists(os.path.join(os.path.dirname(graceful_grpc.__file__), "py.typed"))
