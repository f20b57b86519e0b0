"""The two ways calls are created: direct construction (fast path) and the class-swap fallback,
and the guard that allows the direct path only on verified grpc.aio internals."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc.aio import UnaryUnaryCall

from graceful_grpc import DrainTimeoutError, aio
from graceful_grpc.aio import _abortable, _call_factory, _fallback, _grpc_internals
from graceful_grpc.testing import EchoServer

from .support.calls import KINDS, METHOD, PassingInterceptor, finish, start

FORCED_OFF = bool(os.environ.get(_grpc_internals.DISABLE_VARIABLE))


INSTALLED = _grpc_internals.installed_fingerprint()
needs_direct_path = pytest.mark.skipif(
    not _call_factory.DIRECT_AVAILABLE,
    reason=f"direct call path off: {_call_factory.DIRECT_REASON}",
)


@pytest.fixture
def not_forced_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_grpc_internals.DISABLE_VARIABLE, raising=False)


def test_direct_path_follows_the_installed_fingerprint() -> None:
    # Whatever grpcio's version: on exactly when the relied-on source is a verified one. (The
    # pinned development environment's grpcio is verified: `make check-call-path` says so.)
    verified = INSTALLED in _grpc_internals.VERIFIED_GRPCIO
    assert _call_factory.DIRECT_AVAILABLE is (verified and not FORCED_OFF)
    if not FORCED_OFF:
        assert f"fingerprint {INSTALLED}" in _call_factory.DIRECT_REASON


@pytest.mark.usefixtures("not_forced_off")
def test_a_known_fingerprint_is_accepted_under_any_version_number() -> None:
    decision = _grpc_internals.decide(verified={INSTALLED: ("0.0.1",)})
    assert decision == (
        True,
        f"grpcio {_grpc_internals.GRPCIO_VERSION}: relied-on grpc.aio source verified "
        f"(fingerprint {INSTALLED}, as in grpcio 0.0.1)",
        INSTALLED,
    )


@pytest.mark.usefixtures("not_forced_off")
def test_an_unknown_fingerprint_takes_the_fallback_with_the_reason() -> None:
    decision = _grpc_internals.decide(verified={"0123456789abcdef": ("1.63.0",)})
    assert not decision.allowed
    assert decision.reason == (
        f"grpcio {_grpc_internals.GRPCIO_VERSION}: its relied-on grpc.aio source "
        f"(fingerprint {INSTALLED}) has not been verified"
    )


@pytest.mark.usefixtures("not_forced_off")
def test_a_missing_relied_on_function_takes_the_fallback() -> None:
    relied_on = (*_grpc_internals.RELIED_ON, ("grpc.aio._channel", "Gone.__call__"))
    decision = _grpc_internals.decide(relied_on, verified={INSTALLED: ("0.0.1",)})
    assert not decision.allowed
    assert "missing" in decision.reason
    assert "Gone" in decision.reason


def test_known_sources_stand_for_the_fingerprint_of_their_files() -> None:
    digest = _grpc_internals.source_digest()
    assert digest is not None
    known = _grpc_internals.KNOWN_SOURCES.get(digest)
    assert known in (None, _grpc_internals.fingerprint())
    # A wrong entry would be believed: the table is only ever filled from `make grpc-internals`.
    assert _grpc_internals.installed_fingerprint(known_sources={digest: "f" * 16}) == "f" * 16
    assert _grpc_internals.installed_fingerprint(known_sources={}) == _grpc_internals.fingerprint()


def test_a_replaced_relied_on_function_is_fingerprinted_from_its_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from grpc.aio import _utils

    def _timeout_to_deadline(timeout: float | None) -> float | None:  # not grpc's
        return None

    monkeypatch.setattr(_utils, "_timeout_to_deadline", _timeout_to_deadline)
    # The files are unchanged, but the function is no longer theirs: their digest must not count.
    assert _grpc_internals.source_digest() is None
    assert _grpc_internals.installed_fingerprint() != INSTALLED


def test_status_prints_the_lines_to_record() -> None:
    status = _grpc_internals.status()
    assert f'    "{INSTALLED}": (' in status
    assert f'    "{_grpc_internals.source_digest()}": "{INSTALLED}",' in status
    assert _grpc_internals.DIRECT_PATH_REASON in status


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
    assert _call_factory.call_factory(raw).__qualname__.startswith("fallback_factory.")
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


def _attributes_in_a_dict(call: object) -> bool:
    """Whether ``call``'s attributes live in a dict object (CPython: a class assigned after
    construction moves them there from the instance's inline values)."""
    return any(type(referent) is dict for referent in gc.get_referents(call))


needs_cpython = pytest.mark.skipif(
    sys.implementation.name != "cpython", reason="inline instance values are CPython's"
)


@needs_cpython
@pytest.mark.parametrize("intercepted", [False, True], ids=["plain", "intercepted"])
@pytest.mark.parametrize("kind", KINDS)
async def test_fallback_calls_are_built_as_the_answering_subclass_by_grpcs_own_code(
    echo_server: EchoServer, fallback_only: None, kind: str, intercepted: bool
) -> None:
    # Not built and then given the subclass: that assignment moves a call's attributes to a
    # dict, and every later attribute read of grpc's becomes a dict lookup (BENCHMARKS.md).
    interceptors = [PassingInterceptor()] if intercepted else None
    raw_channel = grpc.aio.insecure_channel(echo_server.target, interceptors=interceptors)
    raw_call = start(raw_channel, kind)
    assert not _attributes_in_a_dict(raw_call)  # grpc's own call: inline values
    channel = aio.insecure_channel(echo_server.target, interceptors=interceptors)
    call = start(channel, kind)
    assert getattr(type(call), "_graceful_grpc_abortable", False)
    assert type(call).__mro__[1] is type(raw_call)
    assert not _attributes_in_a_dict(call)
    assert await finish(call, kind) == await finish(raw_call, kind) == ["m"]
    assert channel.in_flight == 0
    await channel.close()
    await raw_channel.close()


def test_the_building_copy_is_grpcs_function_with_the_call_classes_rebound() -> None:
    from grpc.aio import _channel

    function: Any = _channel.UnaryUnaryMultiCallable.__call__
    copy = _fallback._building_copy(function)
    assert copy is not None and copy is _fallback._building_copy(function)  # made once
    assert copy.__code__ is function.__code__
    assert copy.__kwdefaults__ == function.__kwdefaults__
    assert copy.__qualname__ == function.__qualname__
    grpcs = vars(_channel)
    assert copy.__globals__["UnaryUnaryCall"].__mro__[1] is grpcs["UnaryUnaryCall"]
    assert copy.__globals__["_timeout_to_deadline"] is grpcs["_timeout_to_deadline"]
    assert grpcs["UnaryUnaryCall"].__module__ == "grpc.aio._call"  # grpc's module untouched
    assert _fallback._building_copy(_Delegating.__call__) is None  # type: ignore[arg-type]
    outside: Any = _checks_its_call
    assert _fallback._building_copy(outside) is None  # code outside grpc: left alone


def _grpc_like(source: str) -> Any:
    """Function ``make`` defined by ``source`` in a module named like one of grpc's."""
    namespace: dict[str, Any] = {"__name__": "grpc.aio._imagined", "UnaryUnaryCall": UnaryUnaryCall}
    exec(source, namespace)
    return namespace["make"]


def test_no_building_copy_where_its_globals_could_differ_from_grpcs() -> None:
    # A copy's globals are a snapshot: any function whose globals might change under it is
    # called as it is (its calls get the class assigned), never run with stale or missing names.
    builds = "def make(*a):\n    return UnaryUnaryCall(*a) if len(a) else None\n"
    assert _fallback._building_copy(_grpc_like(builds)) is not None  # builtins are read live
    unbound = "def make(*a):\n    return UnaryUnaryCall(*a, later)\n"
    assert _fallback._building_copy(_grpc_like(unbound)) is None
    writes = "def make(*a):\n    global seen\n    seen = 1\n    return UnaryUnaryCall(*a)\n"
    assert _fallback._building_copy(_grpc_like(writes)) is None
    nested = "def make(*a):\n    return [UnaryUnaryCall(x, later) for x in a]\n"
    assert _fallback._building_copy(_grpc_like(nested)) is None


def _checks_its_call(call: object) -> bool:
    # A name of a call class outside grpc: rebinding it would change what this checks.
    return isinstance(call, UnaryUnaryCall)


class _Delegating:
    """A multicallable of another kind: it hands the call over from grpc's, naming no class."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._inner(*args, **kwargs)


class _DelegatingChannel(grpc.aio.Channel):
    """A grpc.aio.Channel of another kind, whose multicallables delegate to a real channel's."""

    def __init__(self, inner: grpc.aio.Channel) -> None:
        self._inner = inner

    async def __aenter__(self) -> _DelegatingChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, grace: float | None = None) -> None:
        await self._inner.close(grace)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self._inner.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._inner.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self._inner.channel_ready()

    def unary_unary(self, *args: Any, **kwargs: Any) -> Any:
        return _Delegating(self._inner.unary_unary(*args, **kwargs))

    def unary_stream(self, *args: Any, **kwargs: Any) -> Any:
        return _Delegating(self._inner.unary_stream(*args, **kwargs))

    def stream_unary(self, *args: Any, **kwargs: Any) -> Any:
        return _Delegating(self._inner.stream_unary(*args, **kwargs))

    def stream_stream(self, *args: Any, **kwargs: Any) -> Any:
        return _Delegating(self._inner.stream_stream(*args, **kwargs))


@pytest.mark.parametrize("kind", KINDS)
async def test_calls_of_a_multicallable_of_another_kind_get_the_subclass_assigned(
    echo_server: EchoServer, kind: str
) -> None:
    channel = aio.wrap(_DelegatingChannel(grpc.aio.insecure_channel(echo_server.target)))
    assert await finish(start(channel, kind), kind) == ["m"]
    stuck = start(channel, kind, gate="never")
    assert getattr(type(stuck), "_graceful_grpc_abortable", False)
    if sys.implementation.name == "cpython":
        assert _attributes_in_a_dict(stuck)  # assigned after grpc built it
    await echo_server.wait_arrivals("never")
    report = await asyncio.wait_for(channel.close(grace=0), timeout=5)
    assert len(report.cancelled) == 1
    with pytest.raises(DrainTimeoutError):
        await asyncio.wait_for(finish(stuck, kind), timeout=5)
    assert channel.in_flight == 0


# -- the fallback on a grpc.aio without the private names it reads (see _abortable) --


@pytest.mark.parametrize("intercepted", [False, True], ids=["plain", "intercepted"])
@pytest.mark.parametrize("kind", KINDS)
async def test_fallback_without_grpcs_start_task_names_degrades_as_documented(
    echo_server: EchoServer,
    fallback_only: None,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    intercepted: bool,
) -> None:
    monkeypatch.setattr(_abortable, "_START_TASKS", ("_renamed_start_task",))
    monkeypatch.setattr(_abortable, "_INTERCEPTORS_TASK", "_renamed_interceptors_task")
    interceptors = [PassingInterceptor()] if intercepted else None
    channel = aio.insecure_channel(echo_server.target, interceptors=interceptors)
    call = start(channel, kind, metadata=((42, 42),))  # fails locally: a key must be a str
    with pytest.raises(TypeError):  # grpc's own error, as without the names
        await asyncio.wait_for(finish(call, kind), timeout=5)
    assert channel.in_flight == 1  # not ended at once: the documented degradation
    report = await asyncio.wait_for(channel.close(grace=0.05), timeout=5)
    assert [info.method for info in report.cancelled] == [METHOD[kind]]
    assert channel.in_flight == 0


class _StreamCallWithoutMetadataEvent:
    """A stream-request call class of a grpc.aio that keeps no ``_metadata_sent`` event."""

    def __init__(self) -> None:
        self.cancelled = False

    def _metadata_sent_observer(self) -> None:
        pass

    def cancel(self) -> bool:
        self.cancelled = True
        return True


def test_cancel_without_grpcs_metadata_event_still_cancels() -> None:
    subclass = _abortable.abortable_subclass(_StreamCallWithoutMetadataEvent)
    assert subclass is not None
    call = subclass()
    assert call.cancel() is True
    assert call.cancelled


def test_call_class_without_the_metadata_observer_keeps_its_own_cancel() -> None:
    class NoObserver:
        def cancel(self) -> bool:
            return True

    subclass = _abortable.abortable_subclass(NoObserver)
    assert subclass is not None
    assert subclass.__dict__.get("cancel") is None  # NoObserver.cancel, not wrapped
