"""How a graceful multicallable creates its calls.

Fast path ("direct"): for grpc.aio's own multicallables without interceptors, the call is built as
the translating subclass of grpc's call class (see ``_abortable``) with exactly the arguments
grpc.aio's multicallable would pass. Swapping ``__class__`` after construction instead would cost
~3% client CPU per unary call: CPython materialises an instance's dict on class assignment, so
every later attribute access on the call gets slower. The graceful channel's own registry replaces
grpc.aio's per-call ``_register_call`` bookkeeping.

This relies on grpc.aio internals; an import-time check of their shape turns the fast path off
(falling back to calling grpc's multicallable and swapping the class) if they ever change.

Fallback ("wrapped"): any other multicallable (user interceptors, a ``wrap()``-ed channel of
another kind) is called as is, and the returned call's class is swapped.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ._abortable import abortable_subclass, make_abortable

__all__ = ("CallFactory", "call_factory")

CallFactory = Callable[[Any, Any, Any, Any, Any, Any], Any]
"""(request, timeout, metadata, credentials, wait_for_ready, compression) -> call"""

_CALL_INIT_PARAMETERS = [
    "request",
    "deadline",
    "metadata",
    "credentials",
    "wait_for_ready",
    "channel",
    "method",
    "request_serializer",
    "response_deserializer",
    "loop",
    "registered_call_handle",
]
_MULTICALLABLE_ATTRIBUTES = (
    "_channel",
    "_method",
    "_request_serializer",
    "_response_deserializer",
    "_loop",
    "_registered_call_handle",
    "_interceptors",
    "_init_metadata",
)


try:
    from grpc.aio import _call, _channel
    from grpc.aio._utils import _timeout_to_deadline
except ImportError:  # grpc.aio's internals moved: the fallback serves every call
    _call = _channel = None  # type: ignore[assignment]


def _load_direct() -> dict[type, type] | None:
    """grpc.aio multicallable class -> translating subclass of the call class it creates."""
    if _call is None or _channel is None:
        return None
    pairs = {
        _channel.UnaryUnaryMultiCallable: _call.UnaryUnaryCall,
        _channel.UnaryStreamMultiCallable: _call.UnaryStreamCall,
        _channel.StreamUnaryMultiCallable: _call.StreamUnaryCall,
        _channel.StreamStreamMultiCallable: _call.StreamStreamCall,
    }
    for call_class in pairs.values():
        parameters = list(inspect.signature(call_class).parameters)
        parameters[0] = "request"  # request / request_iterator: positional either way
        if parameters != _CALL_INIT_PARAMETERS:
            return None
    direct: dict[type, type] = {}
    for multicallable_class, call_class in pairs.items():
        subclass = abortable_subclass(call_class)
        if subclass is None:
            return None
        direct[multicallable_class] = subclass
    return direct


_DIRECT = _load_direct()
DIRECT_AVAILABLE = _DIRECT is not None


def call_factory(raw: Any) -> CallFactory:
    """Returns the fastest correct way to start calls of grpc multicallable ``raw``."""
    call_class = _DIRECT.get(type(raw)) if _DIRECT is not None else None
    if (
        call_class is not None
        and all(hasattr(raw, name) for name in _MULTICALLABLE_ATTRIBUTES)
        and not raw._interceptors
    ):
        return _direct_factory(raw, call_class)
    return _wrapped_factory(raw)


def _direct_factory(raw: Any, call_class: type) -> CallFactory:
    init_metadata = raw._init_metadata
    channel, method, loop = raw._channel, raw._method, raw._loop
    serializer, deserializer = raw._request_serializer, raw._response_deserializer
    registered_call_handle = raw._registered_call_handle

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
            registered_call_handle,
        )

    return start


def _wrapped_factory(raw: Any) -> CallFactory:
    def start(
        request: Any,
        timeout: Any,
        metadata: Any,
        credentials: Any,
        wait_for_ready: Any,
        compression: Any,
    ) -> Any:
        call = raw(
            request,
            timeout=timeout,
            metadata=metadata,
            credentials=credentials,
            wait_for_ready=wait_for_ready,
            compression=compression,
        )
        make_abortable(call)
        return call

    return start
