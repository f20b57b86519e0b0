"""``python -m graceful_grpc demo``: plain grpc.aio loses reports, graceful_grpc loses none.

Also the package's command line: ``--help`` lists the commands, every help is plain text.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest


def _run(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "100"},  # argparse wraps help at the terminal's width
    )


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return _run("graceful_grpc", "demo", *args)


def test_demo_shows_loss_and_fix() -> None:
    out = run_demo("--jobs", "6", "--json")
    assert out.returncode == 0, out.stderr
    plain, graceful = json.loads(out.stdout)
    assert plain["label"].startswith("grpc.aio close(grace=")
    assert plain["lost"] > 0
    assert plain["errors"]
    assert graceful["delivered"] == 6
    assert graceful["lost"] == 0
    assert graceful["errors"] == {}


def test_demo_rejects_bad_options() -> None:
    out = run_demo("--jobs", "0")
    assert out.returncode == 2
    assert "--jobs" in out.stderr


def test_demo_metrics_show_the_graceful_run() -> None:
    out = run_demo("--jobs", "6", "--json", "--metrics")
    assert out.returncode == 0, out.stderr
    plain, graceful = json.loads(out.stdout)
    assert "metrics" not in plain
    rows = {(r["when"], r["name"]): r for r in graceful["metrics"]}
    assert rows["at SIGTERM", "graceful_grpc.client.holds"]["value"] >= 1  # jobs under way
    assert rows["after close", "graceful_grpc.client.calls.in_flight"]["value"] == 0
    assert rows["after close", "graceful_grpc.client.holds"]["value"] == 0
    drain = rows["after close", "graceful_grpc.client.drain.duration"]
    assert drain["attributes"] == {"graceful_grpc.drain.outcome": "drained"}
    assert drain["value"]["count"] == 1 and drain["value"]["sum"] > 0
    completed = rows["after close", "graceful_grpc.client.drain.calls"]
    assert completed["attributes"] == {"graceful_grpc.drain.result": "completed"}
    assert completed["value"] >= 6  # at least every report, sent during the drain
    assert rows["after close", "graceful_grpc.client.drain.abandoned_holds"]["value"] == 0


def test_demo_metrics_table() -> None:
    out = run_demo("--jobs", "2", "--metrics")
    assert out.returncode == 0, out.stderr
    assert "graceful_grpc metrics (OpenTelemetry, in-memory reader)" in out.stdout
    assert "graceful_grpc.drain.outcome=drained" in out.stdout


def test_demo_metrics_without_the_sdk_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['opentelemetry.sdk'] = None\n"
        "from graceful_grpc.demo import main\n"
        "sys.exit(main(['--metrics']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "opentelemetry-sdk" in out.stderr
    assert out.stdout == ""  # refused before running anything


def test_demo_needs_neither_protobuf_nor_the_testing_stubs() -> None:
    # The core install has grpcio alone: the demo must not import what only extras bring.
    code = (
        "import sys, json\n"
        "for name in ('google.protobuf', 'graceful_grpc.testing', 'opentelemetry'):\n"
        "    sys.modules[name] = None\n"
        "from graceful_grpc.demo import main\n"
        "sys.exit(main(['--jobs', '3', '--json']))\n"
    )
    out = _run(code=code)
    assert out.returncode == 0, out.stderr
    plain, graceful = json.loads(out.stdout)
    assert plain["lost"] > 0
    assert graceful["delivered"] == 3


def _plain_text(text: str) -> None:
    """No reStructuredText markup: no ``literals``, no :role:`targets`, no .. directives."""
    assert "``" not in text
    assert not re.search(r":[a-z]+:`", text)
    assert not re.search(r"^\s*\.\. ", text, re.MULTILINE)


def test_help_lists_the_commands_one_line_each() -> None:
    out = _run("graceful_grpc", "--help")
    assert out.returncode == 0, out.stderr
    _plain_text(out.stdout)
    assert re.search(r"^ +demo +plain grpc\.aio vs graceful_grpc: .+$", out.stdout, re.MULTILINE)
    assert out.stdout.rstrip().splitlines()[-1].split()[0] == "demo"  # one line per command


def test_no_command_prints_the_help_and_fails() -> None:
    out = _run("graceful_grpc")
    assert out.returncode == 2
    assert out.stdout == ""
    assert "commands:" in out.stderr and "demo" in out.stderr


def test_unknown_command_names_the_choices() -> None:
    out = _run("graceful_grpc", "nope")
    assert out.returncode == 2
    assert "invalid choice: 'nope'" in out.stderr and "'demo'" in out.stderr


@pytest.mark.parametrize(
    ("command", "defaults"),
    [
        (("graceful_grpc", "demo"), ["(default: 20)", "(default: 10.0)"]),
        (("graceful_grpc.testing",), ["(default: 127.0.0.1)", "(default: 0)"]),
    ],
)
def test_every_help_is_plain_text_with_its_defaults(
    command: tuple[str, ...], defaults: list[str]
) -> None:
    out = _run(*command, "--help")
    assert out.returncode == 0, out.stderr
    _plain_text(out.stdout)
    flat = " ".join(out.stdout.split())  # defaults may be wrapped onto the next line
    for default in defaults:
        assert default in flat
    options = out.stdout.split("\noptions:\n", 1)[1]
    entries = [" ".join(e.split()) for e in re.split(r"\n  (?=-)", "\n" + options) if e.strip()]
    assert len(entries) > 1, out.stdout
    for entry in entries:  # every option says what happens when it is not given
        assert entry.startswith("-h") or "(default: " in entry, entry
