"""How a graceful multicallable creates its calls.

Fast path ("direct"): for grpc.aio's own multicallables without interceptors, the call is built as
the translating subclass of grpc's call class (see ``_abortable``; its stream methods are
``_direct_methods``) with exactly the arguments grpc.aio's multicallable would pass (grpcio >= 1.84
also passes its registered-method handle). The graceful channel's own registry replaces grpc.aio's
per-call ``_register_call`` bookkeeping (grpcio >= 1.83).

This relies on grpc.aio internals, so it serves only where the installed relied-on source has a
verified fingerprint (``_grpc_internals``, checked once at import); anything else takes the
fallback.

Fallback ("wrapped"): any other multicallable (user interceptors, a ``wrap()``-ed channel of
another kind, a grpc.aio whose source is not verified) makes the call with its own code; grpc's
own multicallables build it as the translating subclass, other calls get that class assigned
(``_fallback``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._log import logger
from ._abortable import abortable_subclass
from ._fallback import fallback_factory
from ._grpc_internals import DIRECT_PATH_ALLOWED, DIRECT_PATH_REASON

__all__ = (
    "DIRECT_AVAILABLE",
    "DIRECT_REASON",
    "CallFactory",
    "announce_call_path",
    "call_factory",
)


CallFactory = Callable[[Any, Any, Any, Any, Any, Any], Any]
"""(request, timeout, metadata, credentials, wait_for_ready, compression) -> call"""

try:
    from grpc.aio import _call, _channel
    from grpc.aio._utils import _timeout_to_deadline
except ImportError:  # grpc.aio's internals moved: the fallback serves every call
    _call = _channel = None  # type: ignore[assignment]


def _load_direct() -> tuple[dict[type, type] | None, str]:
    """grpc.aio multicallable class -> translating subclass of its call class, and why (not)."""
    if not DIRECT_PATH_ALLOWED or _call is None or _channel is None:
        return None, DIRECT_PATH_REASON
    pairs = {
        _channel.UnaryUnaryMultiCallable: _call.UnaryUnaryCall,
        _channel.UnaryStreamMultiCallable: _call.UnaryStreamCall,
        _channel.StreamUnaryMultiCallable: _call.StreamUnaryCall,
        _channel.StreamStreamMultiCallable: _call.StreamStreamCall,
    }
    direct: dict[type, type] = {}
    for multicallable_class, call_class in pairs.items():
        subclass = abortable_subclass(call_class, direct=True)
        if subclass is None:
            return None, f"{call_class.__qualname__} cannot be given the translating subclass"
        direct[multicallable_class] = subclass
    return direct, DIRECT_PATH_REASON


_DIRECT, _REASON = _load_direct()

DIRECT_AVAILABLE: bool = _DIRECT is not None
"""Whether the calls of grpc.aio's own channels (without interceptors) take the direct call path.

False means every call takes the fallback path: correct on any grpcio, a few per cent more
instructions per call. Decided once, at import: True only when the installed grpcio's relied-on
grpc.aio source has a verified fingerprint (whatever its version number says), and
``GRACEFUL_GRPC_NO_DIRECT_CALLS`` is not set (set it, e.g. to ``1``, to force the fallback).
``DIRECT_REASON`` says why."""

DIRECT_REASON: str = _REASON
"""Why ``DIRECT_AVAILABLE`` is what it is, for humans: the grpcio version and the fingerprint of
its relied-on grpc.aio source (verified or not), a relied-on internal that is missing, or
``disabled by GRACEFUL_GRPC_NO_DIRECT_CALLS``."""

# Once per process, not per loop or channel: a module-level token, popped (atomically) by the
# first announcement; nothing else reads it, so a second event loop or thread changes nothing.
_UNANNOUNCED = [True]


def announce_call_path() -> None:
    """Logs, once per process, that the fallback path serves every call, and why.

    Called as each graceful channel is made (so nothing is logged at import); does nothing when
    the direct path is available. One INFO line on logger ``graceful_grpc``.
    """
    if not DIRECT_AVAILABLE:
        _announce_fallback("every call takes the fallback call path", DIRECT_REASON)


def call_factory(raw: Any) -> CallFactory:
    """Returns the fastest correct way to start calls of grpc multicallable ``raw``."""
    if _DIRECT is None:
        return fallback_factory(raw)
    call_class = _DIRECT.get(type(raw))
    if call_class is not None and not raw._interceptors:
        return _direct_factory(raw, call_class)
    if _UNANNOUNCED:
        _announce_fallback(
            "the calls of a channel take the fallback call path",
            "its grpc channel has interceptors"
            if call_class is not None
            else f"{type(raw).__qualname__} is not one of grpc.aio's own multicallables",
        )
    return fallback_factory(raw)


def _announce_fallback(what: str, reason: str) -> None:
    try:
        _UNANNOUNCED.pop()
    except IndexError:  # announced already (perhaps just now, on another thread)
        return
    logger.info("%s (a few per cent slower than the direct path): %s", what, reason)


def _direct_factory(raw: Any, call_class: type) -> CallFactory:
    init_metadata = raw._init_metadata
    channel, method, loop = raw._channel, raw._method, raw._loop
    serializer, deserializer = raw._request_serializer, raw._response_deserializer
    # grpcio >= 1.84 passes its registered-method handle to the call; older releases have none
    # (which of the two is fixed by the verified source of _BaseMultiCallable.__init__).
    handle = getattr(raw, "_registered_call_handle", None)

    if handle is None:

        def start_unregistered(
            request: Any,
            timeout: Any,
            metadata: Any,
            credentials: Any,
            wait_for_ready: Any,
            compression: Any,
        ) -> Any:
            return call_class(
                request,
                _timeout_to_deadline(timeout),
                init_metadata(metadata, compression),
                credentials,
                wait_for_ready,
                channel,
                method,
                serializer,
                deserializer,
                loop,
            )

        return start_unregistered

    def start(
        request: Any,
        timeout: Any,
        metadata: Any,
        credentials: Any,
        wait_for_ready: Any,
        compression: Any,
    ) -> Any:
        return call_class(
            request,
            _timeout_to_deadline(timeout),
            init_metadata(metadata, compression),
            credentials,
            wait_for_ready,
            channel,
            method,
            serializer,
            deserializer,
            loop,
            handle,
        )

    return start
