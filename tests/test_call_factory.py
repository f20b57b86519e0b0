"""The two ways calls are created: direct construction (fast path) and the class-swap fallback,
and the guard that allows the direct path only on verified grpc.aio internals."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator

import grpc
import pytest

from graceful_grpc import DrainTimeoutError, aio
from graceful_grpc.aio import _call_factory, _grpc_internals
from graceful_grpc.testing import EchoServer

from .support.calls import KINDS, METHOD, finish, start

FORCED_OFF = bool(os.environ.get(_grpc_internals.DISABLE_VARIABLE))
needs_direct_path = pytest.mark.skipif(
    FORCED_OFF, reason=f"direct path forced off by {_grpc_internals.DISABLE_VARIABLE}"
)


@needs_direct_path
def test_installed_grpcio_is_verified_for_the_direct_path() -> None:
    # An unverified grpcio still works (fallback), but costs ~3% CPU: fail loudly, say what to do.
    assert _call_factory.DIRECT_AVAILABLE, (
        f"direct call path off: {_call_factory.DIRECT_REASON}; "
        f"{_grpc_internals.reverify_instructions(_grpc_internals.GRPCIO_VERSION)}"
    )


def test_refusal_names_a_release_outside_the_verified_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(_grpc_internals.DISABLE_VARIABLE, raising=False)
    reason = _grpc_internals.refusal("9.9.9", {"1.63.0": "0123456789abcdef"})
    assert reason is not None
    assert "grpcio 9.9.9 is not in the verified list (1.63.0)" in reason


@needs_direct_path
def test_refusal_on_changed_internals_of_a_verified_release() -> None:
    version = _grpc_internals.GRPCIO_VERSION
    reason = _grpc_internals.refusal(version, {version: "0123456789abcdef"})
    assert reason is not None
    assert f"grpcio {version}: grpc.aio internals differ" in reason


@needs_direct_path
def test_refusal_when_a_relied_on_function_is_gone() -> None:
    version = _grpc_internals.GRPCIO_VERSION
    relied_on = (*_grpc_internals.RELIED_ON, ("grpc.aio._channel", "Gone.__call__"))
    reason = _grpc_internals.refusal(version, {version: "0123456789abcdef"}, relied_on)
    assert reason is not None
    assert "missing" in reason
    assert "Gone" in reason


@needs_direct_path
def test_matching_fingerprint_is_accepted() -> None:
    version = _grpc_internals.GRPCIO_VERSION
    assert _grpc_internals.refusal(version, {version: _grpc_internals.fingerprint()}) is None


def _sample_a(timeout: float) -> float:
    return timeout + 1


def _sample_b(timeout: float) -> float:
    return timeout + 2


def test_fingerprint_follows_the_source() -> None:
    def of(name: str) -> str:
        return _grpc_internals.fingerprint(((__name__, name),))

    assert of("_sample_a") == of("_sample_a")
    assert of("_sample_a") != of("_sample_b")


def test_disable_variable_forces_the_fallback_with_a_reason() -> None:
    code = (
        "from graceful_grpc.aio import _call_factory as f; "
        "print(f.DIRECT_AVAILABLE, f.DIRECT_REASON, sep='|')"
    )
    env = {**os.environ, _grpc_internals.DISABLE_VARIABLE: "1"}
    out = subprocess.run(
        [sys.executable, "-P", "-c", code], env=env, check=True, capture_output=True, text=True
    )
    assert out.stdout.strip() == f"False|disabled by {_grpc_internals.DISABLE_VARIABLE}"


@needs_direct_path
@pytest.mark.parametrize("kind", KINDS)
async def test_own_channel_builds_translating_calls_directly(
    echo_server: EchoServer, kind: str
) -> None:
    raw_channel = grpc.aio.insecure_channel(echo_server.target)
    raw = getattr(raw_channel, kind)(METHOD[kind])
    assert _call_factory.call_factory(raw).__qualname__.startswith("_direct_factory.")
    await raw_channel.close()
    channel = aio.insecure_channel(echo_server.target)
    call = start(channel, kind)
    base = type(call).__mro__[1]
    assert type(call).__name__ == base.__name__  # our subclass of grpc's own call class
    assert base.__module__ == "grpc.aio._call"
    await finish(call, kind)
    await channel.close()


@pytest.fixture
def fallback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_call_factory, "_DIRECT", None)


async def test_fallback_wraps_grpcs_multicallable(fallback_only: None) -> None:
    raw_channel = grpc.aio.insecure_channel("127.0.0.1:1")
    raw: object = raw_channel.unary_unary(METHOD["unary_unary"])
    assert _call_factory.call_factory(raw).__qualname__.startswith("_wrapped_factory.")
    await raw_channel.close()


@pytest.fixture
async def fallback_channel(
    echo_server: EchoServer, fallback_only: None
) -> AsyncIterator[aio.GracefulChannel]:
    channel = aio.insecure_channel(echo_server.target)
    yield channel
    await channel.close(grace=0)


@pytest.mark.parametrize("kind", KINDS)
async def test_fallback_tracks_and_translates(
    echo_server: EchoServer, fallback_channel: aio.GracefulChannel, kind: str
) -> None:
    ok = start(fallback_channel, kind, message="ok")
    assert await finish(ok, kind) == ["ok"]
    stuck = start(fallback_channel, kind, gate="never")
    await echo_server.wait_arrivals("never")
    assert fallback_channel.in_flight == 1
    report = await fallback_channel.close(grace=0)
    assert len(report.cancelled) == 1
    with pytest.raises(DrainTimeoutError) as info:
        await finish(stuck, kind)
    assert info.value.code() == grpc.StatusCode.CANCELLED
    assert fallback_channel.in_flight == 0
