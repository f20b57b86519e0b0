"""Packaging: which counter is active, the public surface, declared requirements."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

import graceful_grpc
from graceful_grpc.aio import _grpc_internals


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


def _requirements() -> list[str]:
    return importlib.metadata.requires("graceful-grpc") or []


def test_the_core_requires_only_grpcio() -> None:
    core = [r for r in _requirements() if "extra ==" not in r]
    assert core == [f"grpcio>={_GRPCIO_FLOOR}"]


def test_tenacity_comes_with_the_temporal_extra_only() -> None:
    tenacity = [r for r in _requirements() if r.startswith("tenacity")]
    assert tenacity
    assert all('extra == "temporal"' in r for r in tenacity)


_GRPCIO_FLOOR = "1.63"


def _release(version: str) -> tuple[int, ...]:
    return tuple(map(int, version.split(".")))


def test_grpcio_floor_is_the_oldest_verified_release() -> None:
    releases = [r for seen in _grpc_internals.VERIFIED_GRPCIO.values() for r in seen]
    assert min(releases, key=_release).rsplit(".", 1)[0] == _GRPCIO_FLOOR


def test_compatibility_page_names_every_verified_fingerprint() -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "compatibility.md").read_text()
    for found in _grpc_internals.VERIFIED_GRPCIO:
        assert f"`{found}`" in page


@pytest.mark.parametrize("missing", ["temporalio", "tenacity"])
def test_temporal_integration_without_its_extra_names_the_extra(missing: str) -> None:
    if missing == "tenacity":
        pytest.importorskip("temporalio")  # otherwise temporalio is what is missing first
    code = (
        f"import sys; sys.modules[{missing!r}] = None\n"
        "try:\n"
        "    import graceful_grpc.contrib.temporalio\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert f"needs {missing!r}" in out.stdout, out.stdout + out.stderr
    assert "pip install 'graceful-grpc[temporal]'" in out.stdout


def test_import_defers_what_a_channel_does_not_need_yet() -> None:
    # The import budget (issue 17: at most 10 ms on top of grpc.aio): the report dataclasses, the
    # shutdown sequence and the server half load on first use, not with graceful_grpc.aio.
    script = (
        "import sys, grpc.aio\n"
        "before = set(sys.modules)\n"
        "import graceful_grpc.aio\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    out = subprocess.run(
        [sys.executable, "-P", "-c", script], check=True, capture_output=True, text=True
    ).stdout
    loaded = set(eval(out))
    deferred = {
        "dataclasses",
        "graceful_grpc.report",
        "graceful_grpc.shutdown",
        "graceful_grpc.aio._server",
        "signal",
    }
    assert not loaded & deferred


def test_lazy_exports_resolve() -> None:
    from graceful_grpc.report import CallInfo, DrainReport

    assert graceful_grpc.DrainReport is DrainReport
    assert graceful_grpc.CallInfo is CallInfo
    assert "unary_unary" in str(graceful_grpc.CallKind)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        graceful_grpc.Nope  # noqa: B018
