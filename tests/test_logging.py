"""The library's log lines: no repeated prefix, the right caller, and a broken handler never stops
a drain."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from graceful_grpc import aio
from graceful_grpc.state import ChannelState
from graceful_grpc.testing import EchoServer

from .support.calls import finish, start


class _Raising(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.raised = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.raised += 1
        raise RuntimeError("a broken log handler")


@pytest.fixture
def raising_handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Raising]:
    handler = _Raising()
    logger = logging.getLogger("graceful_grpc")
    monkeypatch.setattr(logging, "raiseExceptions", False)  # no traceback on the test's stderr
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


async def test_a_raising_log_handler_does_not_stop_the_drain(
    echo_server: EchoServer, raising_handler: _Raising, caplog: pytest.LogCaptureFixture
) -> None:
    channel = aio.insecure_channel(echo_server.target)
    call = start(channel, "unary_stream", gate="g")
    await echo_server.wait_arrivals("g")
    with caplog.at_level(logging.INFO, logger="graceful_grpc"):
        closing = asyncio.ensure_future(channel.close(grace=30))
        await asyncio.sleep(0)
        echo_server.open_gate("g")
        assert await finish(call, "unary_stream") == ["m"]
        report = await asyncio.wait_for(closing, timeout=10)
    assert report.closed and report.drained and report.completed == 1
    assert channel.state is ChannelState.CLOSED
    assert raising_handler.raised >= 2  # "draining channel" and "drain finished" both failed


async def test_drain_log_lines_name_the_library_line_without_a_prefix(
    echo_server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    channel = aio.insecure_channel(echo_server.target)
    with caplog.at_level(logging.INFO, logger="graceful_grpc"):
        await channel.close()
    records = [r for r in caplog.records if r.name == "graceful_grpc"]
    assert [r.getMessage().split(":")[0] for r in records] == ["draining channel", "drain finished"]
    assert [(r.filename, r.funcName) for r in records] == [
        ("_connection.py", "_start_or_hasten_drain"),
        ("_drain.py", "log"),
    ]


def test_a_failing_handler_is_reported_on_stderr(
    raising_handler: _Raising, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from graceful_grpc._log import logger

    monkeypatch.setattr(logging, "raiseExceptions", True)
    logging.getLogger("graceful_grpc").setLevel(logging.INFO)
    try:
        logger.info("hello %s", "there")
    finally:
        logging.getLogger("graceful_grpc").setLevel(logging.NOTSET)
    err = capsys.readouterr().err
    assert "--- Logging error (graceful_grpc) ---" in err
    assert "RuntimeError: a broken log handler" in err
