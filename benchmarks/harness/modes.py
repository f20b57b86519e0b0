"""Client modes: how each builds its channel, and which process and event loop it needs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from graceful_grpc import aio

__all__ = ("MODES", "Mode", "available_modes", "interceptor_channel")


class _NoOpUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(details, request)


class _NoOpUnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(details, request)


class _NoOpStreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(details, requests)


class _NoOpStreamStream(grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(details, requests)


def interceptor_channel(target: str) -> grpc.aio.Channel:
    # What users hand-roll today: one no-op interceptor per call kind (counting would add to it).
    noops = [_NoOpUnaryUnary(), _NoOpUnaryStream(), _NoOpStreamUnary(), _NoOpStreamStream()]
    return grpc.aio.insecure_channel(target, interceptors=noops)


def _tracker_channel(target: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target, interceptors=aio.InFlightTracker().interceptors)


@dataclass(frozen=True)
class Mode:
    name: str
    channel: Callable[[str], grpc.aio.Channel]
    process: str  # "c": default extensions; "py": GRACEFUL_GRPC_NO_EXTENSIONS=1
    uvloop: bool
    baseline: str  # the mode its ratios are taken against


MODES = {
    mode.name: mode
    for mode in (
        Mode("raw", grpc.aio.insecure_channel, "c", False, "raw"),
        Mode("interceptor", interceptor_channel, "c", False, "raw"),
        Mode("tracker", _tracker_channel, "c", False, "raw"),
        Mode("graceful-c", aio.insecure_channel, "c", False, "raw"),
        Mode("graceful-py", aio.insecure_channel, "py", False, "raw"),
        Mode("raw+uvloop", grpc.aio.insecure_channel, "c", True, "raw+uvloop"),
        Mode("graceful-c+uvloop", aio.insecure_channel, "c", True, "raw+uvloop"),
    )
}


def available_modes() -> tuple[list[str], str]:
    """The modes this machine can run, and a note on what was left out."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        names = [name for name, mode in MODES.items() if not mode.uvloop]
        return (
            names,
            "uvloop not installed (pip install --group bench): uvloop modes skipped",
        )
    return list(MODES), ""
