"""A hold nobody releases: collected, it stops keeping the drain waiting and warns at the line that
took it; abandoned at the deadline, the drain's log names where it was taken."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import warnings
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from graceful_grpc import aio
from graceful_grpc.aio import _hold
from graceful_grpc.testing import EchoServer

BOUND = 10.0  # every wait here; the drains' own deadline is 60 s


@pytest.fixture
def resource_warnings() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield caught


def _hold_warnings(caught: list[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    return [w for w in caught if "Hold taken here was never released" in str(w.message)]


def _line_after() -> int:
    return sys._getframe(1).f_lineno + 1


async def _drained_soon(channel: aio.GracefulChannel, drop: Callable[[], None]) -> Any:
    """Starts the drain, drops the hold with ``drop()`` once the drain waits, returns the report."""
    closing = asyncio.ensure_future(channel.close(grace=60))
    await asyncio.wait_for(channel.wait_draining(), BOUND)
    assert not closing.done()  # the hold keeps it open
    drop()
    return await asyncio.wait_for(closing, BOUND)


async def test_a_dropped_hold_ends_the_drain_and_warns_at_the_callers_line(
    echo_server: EchoServer, resource_warnings: list[warnings.WarningMessage]
) -> None:
    channel = aio.insecure_channel(echo_server.target, drain_timeout=60)
    line = _line_after()
    taken = [channel.hold()]  # never entered nor released
    report = await _drained_soon(channel, taken.clear)
    assert report.drained and report.abandoned_holds == 0
    [warning] = _hold_warnings(resource_warnings)
    assert warning.category is ResourceWarning
    assert (warning.filename, warning.lineno) == (__file__, line)
    assert channel.holds == 0


async def test_a_hold_dropped_in_another_thread_ends_the_drain(
    echo_server: EchoServer, resource_warnings: list[warnings.WarningMessage]
) -> None:
    channel = aio.insecure_channel(echo_server.target, drain_timeout=60)
    line = _line_after()
    taken = [channel.hold()]

    def drop_in_a_thread() -> None:
        thread = threading.Thread(target=taken.clear)
        thread.start()
        thread.join(BOUND)

    report = await _drained_soon(channel, drop_in_a_thread)
    assert report.drained and report.abandoned_holds == 0
    assert [(w.filename, w.lineno) for w in _hold_warnings(resource_warnings)] == [(__file__, line)]


async def test_a_hold_in_a_reference_cycle_ends_the_drain_when_collected(
    echo_server: EchoServer, resource_warnings: list[warnings.WarningMessage]
) -> None:
    channel = aio.insecure_channel(echo_server.target, drain_timeout=60)
    taken = [_in_a_cycle(channel.hold())]

    def drop() -> None:
        taken.clear()  # the cycle keeps it alive ...
        gc.collect()  # ... until the collector finds it

    report = await _drained_soon(channel, drop)
    assert report.drained and report.abandoned_holds == 0
    assert len(_hold_warnings(resource_warnings)) == 1


def _in_a_cycle(hold: aio.Hold) -> list[Any]:
    cycle: list[Any] = [hold]
    cycle.append(cycle)
    return cycle


async def test_code_after_a_kept_hold_stays_held_while_draining(echo_server: EchoServer) -> None:
    channel = aio.insecure_channel(echo_server.target, drain_timeout=60)
    hold = channel.hold()  # the "held" context refers to it weakly: a reference keeps it
    gc.collect()
    closing = asyncio.ensure_future(channel.close())
    await asyncio.wait_for(channel.wait_draining(), BOUND)
    late = channel.hold()  # admitted: this code is inside ``hold``
    late.release()
    hold.release()
    report = await asyncio.wait_for(closing, BOUND)
    assert report.drained


async def test_the_drains_log_names_where_each_abandoned_hold_was_taken(
    echo_server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    channel = aio.insecure_channel(echo_server.target)
    line = _line_after()
    kept = [channel.hold(), channel.hold()]
    other = _line_after()
    kept.append(channel.hold())
    with caplog.at_level(logging.WARNING, logger="graceful_grpc"):
        report = await asyncio.wait_for(channel.close(grace=0), BOUND)
    assert report.abandoned_holds == 3 and not report.drained
    [record] = [r for r in caplog.records if "abandoned" in r.getMessage()]
    assert record.getMessage() == (
        f"drain deadline passed, abandoned 3 holds, taken at: {__file__}:{line} (x2); "
        f"{__file__}:{other}"
    )
    assert all(hold.released for hold in kept)
    assert kept[0].taken_at == f"{__file__}:{line}"


@pytest.mark.parametrize("how", ["asyncio debug mode", "GRACEFUL_GRPC_DEBUG_HOLDS"])
async def test_debug_mode_records_the_whole_stack(
    echo_server: EchoServer,
    how: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    resource_warnings: list[warnings.WarningMessage],
) -> None:
    loop = asyncio.get_running_loop()
    if how == "asyncio debug mode":
        monkeypatch.setattr(loop, "get_debug", lambda: True)
    else:
        monkeypatch.setattr(_hold, "_DEBUG_HOLDS", True)
    channel = aio.insecure_channel(echo_server.target)
    kept = _take_nested(channel)
    channel.hold()  # dropped at once
    [warning] = _hold_warnings(resource_warnings)
    assert "Hold taken at (most recent call last):" in str(warning.message)
    assert f"in {test_debug_mode_records_the_whole_stack.__name__}" in str(warning.message)
    with caplog.at_level(logging.WARNING, logger="graceful_grpc"):
        await asyncio.wait_for(channel.close(grace=0), BOUND)
    [record] = [r for r in caplog.records if "abandoned" in r.getMessage()]
    assert "in _take_nested" in record.getMessage()
    assert f"in {test_debug_mode_records_the_whole_stack.__name__}" in record.getMessage()
    assert kept.released


def _take_nested(channel: aio.GracefulChannel) -> aio.Hold:
    return channel.hold()


async def test_without_debug_mode_no_stack_is_recorded(
    echo_server: EchoServer, resource_warnings: list[warnings.WarningMessage]
) -> None:
    assert not asyncio.get_running_loop().get_debug()
    channel = aio.insecure_channel(echo_server.target)
    channel.hold()
    [warning] = _hold_warnings(resource_warnings)
    assert "most recent call last" not in str(warning.message)
    await channel.close()


def test_a_dropped_hold_ends_the_drain_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        async with EchoServer() as server:
            channel = aio.insecure_channel(server.target, drain_timeout=60)
            taken = [channel.hold()]
            report = await _drained_soon(channel, taken.clear)
            assert report.drained and report.abandoned_holds == 0

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        _run(uvloop.new_event_loop, scenario())


def test_holds_dropped_on_a_second_event_loop_end_its_drain() -> None:
    async def scenario() -> None:
        async with EchoServer() as server:
            channel = aio.insecure_channel(server.target, drain_timeout=60)
            taken = [channel.hold()]
            report = await _drained_soon(channel, taken.clear)
            assert report.drained

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        for _ in range(2):
            _run(asyncio.new_event_loop, scenario())


def _run(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], main: Coroutine[Any, Any, None]
) -> None:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main)
