"""The report classes' docstrings cover every case that builds or carries a report."""

from __future__ import annotations

import typing

import pytest

from graceful_grpc import CallInfo, DrainReport
from graceful_grpc.shutdown import Outcome, StepResult


@pytest.mark.parametrize(
    "case",
    [
        "GracefulChannel.close()",  # the channel's drain
        "leaves others open",  # the close of a handle that is not the last
        "GracefulChannel.rotate()",
        "add_drain_listener",
        "GracefulServer.stop()",
        "thread pool",  # a server's plain-function handlers cannot be cancelled
        "ShutdownSequence",
        "cancel_on_drain()",  # calls marked after they started
        "garbage-collected",  # a collected hold is released, not abandoned
    ],
)
def test_drain_report_docstring_names_every_case(case: str) -> None:
    assert DrainReport.__doc__ is not None
    assert case in " ".join(DrainReport.__doc__.split())


def test_call_info_covers_interrupted_calls_and_server_handlers() -> None:
    doc = " ".join((CallInfo.__doc__ or "").split())
    assert "interrupted" in doc and "handler" in doc and "deadline" in doc


def test_every_step_outcome_is_documented() -> None:
    from graceful_grpc.contrib.opentelemetry import instrument_shutdown

    for outcome in typing.get_args(Outcome):
        assert f"``{outcome}``" in (instrument_shutdown.__doc__ or "")
        assert f'``"{outcome}"``' in (StepResult.__doc__ or "")
