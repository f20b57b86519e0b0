"""Listeners (drain, rotation, shutdown step) that raise never change the outcome, whatever they
raise short of KeyboardInterrupt and SystemExit: CancelledError included."""

from __future__ import annotations

import asyncio

import pytest

from graceful_grpc import ChannelState, DrainReport, ShutdownSequence, StepResult, aio
from graceful_grpc.testing import EchoServer

from .support.calls import call_once

RAISED = [asyncio.CancelledError, RuntimeError, GeneratorExit]


def raising(error: type[BaseException]) -> object:
    def listener(event: object) -> None:
        raise error()

    return listener


@pytest.mark.parametrize("error", RAISED)
async def test_a_raising_drain_listener_leaves_close_its_report(
    echo_server: EchoServer, error: type[BaseException]
) -> None:
    channel = aio.insecure_channel(echo_server.target)
    channel.add_drain_listener(raising(error))  # type: ignore[arg-type]
    heard: list[DrainReport] = []
    channel.add_drain_listener(heard.append)
    report = await asyncio.wait_for(channel.close(), timeout=5)
    assert report.closed and report.drained and heard == [report]


@pytest.mark.parametrize("error", RAISED)
async def test_a_raising_rotation_listener_leaves_rotate_and_max_age_working(
    echo_server: EchoServer, error: type[BaseException]
) -> None:
    channel = aio.insecure_channel(echo_server.target, max_age=0.02, max_age_jitter=0)
    channel.add_rotation_listener(raising(error))  # type: ignore[arg-type]
    report = await asyncio.wait_for(channel.rotate(), timeout=5)
    assert report.closed and report.drained
    aged = asyncio.Event()

    def count(rotations: int) -> None:
        if rotations >= 3:
            aged.set()

    channel.add_rotation_listener(count)
    await asyncio.wait_for(aged.wait(), timeout=5)  # max_age rotates on after the raising ones
    assert await call_once(channel, "unary_unary") == ["m"]
    assert (await asyncio.wait_for(channel.close(), timeout=5)).closed


@pytest.mark.parametrize("error", RAISED)
async def test_a_raising_step_listener_leaves_the_sequence_running(
    echo_server: EchoServer, error: type[BaseException]
) -> None:
    channel = aio.insecure_channel(echo_server.target)
    sequence = ShutdownSequence(timeout=5)

    async def first() -> None:
        pass

    sequence.add("first", first)
    sequence.add_channel("close channel", channel)
    sequence.add_step_listener(raising(error))  # type: ignore[arg-type]
    heard: list[StepResult] = []
    sequence.add_step_listener(heard.append)
    report = await asyncio.wait_for(sequence.run(), timeout=5)
    assert report.ok and [step.name for step in heard] == ["first", "close channel"]
    assert channel.state is ChannelState.CLOSED


async def test_a_listener_added_twice_is_refused(echo_server: EchoServer) -> None:
    channel = aio.insecure_channel(echo_server.target)
    heard: list[DrainReport] = []
    channel.add_drain_listener(heard.append)
    other = channel.share()
    with pytest.raises(ValueError, match="already added"):
        other.add_drain_listener(heard.append)  # the listeners are the connection's
    await other.close()
    await channel.close()
    assert len(heard) == 1
