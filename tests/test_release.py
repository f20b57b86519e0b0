"""The release configuration: what cibuildwheel builds, and the workflow that runs it.

These read the repository's pyproject.toml and .github/workflows/release.yml (a wheel's test run
has no workflow file: those tests skip there). The wheels themselves are checked by
`make wheel-check`, which installs them and runs the suite against them.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"

PYTHONS = ("cp311", "cp312", "cp313")
EXPECTED = {
    "linux": {
        f"{py}-{libc}_{arch}"
        for py in PYTHONS
        for libc in ("manylinux", "musllinux")
        for arch in ("x86_64", "aarch64")
    },
    "macos": {f"{py}-macosx_{arch}" for py in PYTHONS for arch in ("x86_64", "arm64")},
    "windows": {f"{py}-win_amd64" for py in PYTHONS},
}


def _cibuildwheel_table() -> dict[str, object]:
    table: dict[str, object] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"][
        "cibuildwheel"
    ]
    return table


def _workflow() -> str:
    """The release workflow without its comment lines."""
    if not WORKFLOW.is_file():
        pytest.skip("no release workflow here (a wheel's test run has the tests only)")
    lines = WORKFLOW.read_text().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


@pytest.mark.parametrize("platform", sorted(EXPECTED))
def test_cibuildwheel_builds_cpython_3_11_to_3_13_for_each_platform(platform: str) -> None:
    if importlib.util.find_spec("cibuildwheel") is None:
        pytest.skip("cibuildwheel is not installed (the dev group has it)")
    command = [sys.executable, "-m", "cibuildwheel", "--platform", platform]
    out = subprocess.run(
        [*command, "--print-build-identifiers", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr  # also an unknown or misspelt option fails here
    assert set(out.stdout.split()) == EXPECTED[platform]


def test_the_wheel_test_is_the_core_suite_against_the_installed_wheel() -> None:
    table = _cibuildwheel_table()
    assert table["test-command"] == "python -m pytest -q -p no:cacheprovider tests"
    assert table["test-groups"] == ["test"]
    assert "graceful_grpc" not in table["test-sources"]  # type: ignore[operator]
    assert table["test-environment"] == {
        "GRACEFUL_GRPC_EXPECT_INSTALLED": "1",
        "GRACEFUL_GRPC_EXPECT_COUNTER": "c",
    }


def test_release_builds_do_not_turn_warnings_into_errors() -> None:
    # -Werror is for our CI's own builds (the Makefile exports GRACEFUL_GRPC_WERROR=1); a
    # release wheel must not fail, or lose its extension, over a newer compiler's warning.
    table = _cibuildwheel_table()
    linux = table["linux"]["environment"]  # type: ignore[index]
    for environment in (table["environment"], linux):  # a platform's table replaces the global
        assert environment["GRACEFUL_GRPC_WERROR"] == "0"  # type: ignore[index]
    workflow = _workflow()
    assert "GRACEFUL_GRPC_WERROR" not in workflow
    assert "Werror" not in workflow
    makefile = (ROOT / "Makefile").read_text()
    assert "RELEASE_BUILD := env -u GRACEFUL_GRPC_WERROR" in makefile


def test_the_workflow_runs_the_pinned_cibuildwheel() -> None:
    (used,) = re.findall(r"uses: pypa/cibuildwheel@v(\S+)", _workflow())
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]["dev"]
    assert f"cibuildwheel=={used}" in dev


def test_publishing_is_trusted_publishing_without_stored_secrets() -> None:
    workflow = _workflow()
    publish = workflow.split("\n  publish:\n", 1)[1]
    assert "id-token: write" in publish
    assert "uses: pypa/gh-action-pypi-publish@release/v1" in publish
    assert "needs: [wheels, pure, sdist]" in publish
    assert "secrets." not in workflow
    assert "password" not in workflow
    assert not re.search(r"https?://", workflow)  # no URL of ours: none exists yet
