"""Which call path serves is said: ``aio.DIRECT_AVAILABLE`` / ``DIRECT_REASON`` are public, and
the first channel on the fallback path logs one INFO line with the reason (in a fresh process
each: the notice is once per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from graceful_grpc import aio
from graceful_grpc.aio import _call_factory, _grpc_internals

# Records what logger graceful_grpc says at import, then at each of three channels made on two
# event loops (one after the other) and a thread's: {"import": [...], "channels": [...]}.
_SCRIPT = """
import asyncio, json, logging, sys, threading

class Recorder(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []
    def emit(self, record):
        self.records.append((record.levelname, record.getMessage()))

recorder = Recorder()
logger = logging.getLogger("graceful_grpc")
logger.addHandler(recorder)
logger.setLevel(logging.DEBUG)
if "raising" in sys.argv:
    class Raising(logging.Handler):
        def emit(self, record):
            raise RuntimeError("a broken log handler")
    logger.addHandler(Raising())

from graceful_grpc import aio
from tests.support.calls import PassingInterceptor

seen = {"import": list(recorder.records)}
interceptors = [PassingInterceptor()] if "interceptors" in sys.argv else None

async def one_channel():
    channel = aio.insecure_channel("127.0.0.1:1", interceptors=interceptors)
    channel.unary_unary("/pkg.Service/Method")
    await channel.close()

asyncio.run(one_channel())
asyncio.run(one_channel())  # a second event loop
thread = threading.Thread(target=asyncio.run, args=(one_channel(),))
thread.start()
thread.join()
seen["channels"] = [r for r in recorder.records if "call path" in r[1]]
seen["available"] = aio.DIRECT_AVAILABLE
seen["reason"] = aio.DIRECT_REASON
print(json.dumps(seen))
"""

_VERIFIED = _grpc_internals.installed_fingerprint() in _grpc_internals.VERIFIED_GRPCIO


def _run(*args: str, disabled: bool) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != _grpc_internals.DISABLE_VARIABLE}
    if disabled:
        env[_grpc_internals.DISABLE_VARIABLE] = "1"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, *args],
        env=env,
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_the_call_path_is_public_and_documented() -> None:
    assert aio.DIRECT_AVAILABLE is _call_factory.DIRECT_AVAILABLE
    assert aio.DIRECT_REASON == _grpc_internals.DIRECT_PATH_REASON
    assert {"DIRECT_AVAILABLE", "DIRECT_REASON"} <= set(aio.__all__)
    assert aio.__doc__ is not None
    for documented in ("DIRECT_AVAILABLE", "DIRECT_REASON", "GRACEFUL_GRPC_NO_DIRECT_CALLS"):
        assert documented in aio.__doc__


@pytest.mark.parametrize("handlers", ["", "raising"])
def test_the_first_fallback_channel_logs_one_info_line_with_the_reason(handlers: str) -> None:
    seen = _run(handlers, disabled=True)
    reason = f"disabled by {_grpc_internals.DISABLE_VARIABLE}"
    assert seen["import"] == []
    assert seen["available"] is False
    assert seen["reason"] == reason
    assert seen["channels"] == [
        [
            "INFO",
            "every call takes the fallback call path (a few per cent slower than the direct "
            f"path): {reason}",
        ]
    ]


@pytest.mark.skipif(not _VERIFIED, reason="the installed grpcio gets the fallback path")
def test_nothing_is_logged_when_the_direct_path_serves() -> None:
    seen = _run(disabled=False)
    assert seen["available"] is True
    assert seen["import"] == []
    assert seen["channels"] == []


@pytest.mark.skipif(not _VERIFIED, reason="the installed grpcio gets the fallback path")
def test_the_first_channel_with_interceptors_logs_why_it_takes_the_fallback() -> None:
    seen = _run("interceptors", disabled=False)
    assert seen["import"] == []
    assert seen["channels"] == [
        [
            "INFO",
            "the calls of a channel take the fallback call path (a few per cent slower than the "
            "direct path): its grpc channel has interceptors",
        ]
    ]
