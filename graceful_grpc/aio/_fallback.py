"""The fallback call path: grpc's own multicallable makes the call, whose class is then swapped.

Correct on any grpcio: besides the public call API it reads only what ``_abortable`` documents,
each guarded. A start watch costs a loop callback per call (about 3% of a unary call). A call with
a stream of requests, or of a class not known here, is watched from the start: a failed start
would leave its writers waiting. grpc.aio's unary-request calls report a failed start to whoever
awaits them, so their answering methods install the watch only then, or before waiting for the
status or metadata; such a call never awaited at all stays in flight until grpc collects it
(which cancels it) or a drain's deadline ends it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._abortable import abortable_subclass, watch_start

__all__ = ("fallback_factory", "make_abortable")

# call class -> its translating subclass (None where __class__ cannot be assigned), and whether
# its calls are watched from the start
_SUBCLASSES: dict[type, tuple[type | None, bool]] = {}

try:
    from grpc.aio._call import UnaryStreamCall, UnaryUnaryCall
except ImportError:  # grpc.aio's internals moved: every call is watched from the start
    _UNARY_REQUEST: tuple[type, ...] = ()
else:
    _UNARY_REQUEST = (UnaryUnaryCall, UnaryStreamCall)


def make_abortable(call: Any) -> None:
    """Gives ``call`` the answering subclass of its class (a no-op for unsupported types), and
    makes a local failure of its start end the call (see the module's docstring)."""
    cls = call.__class__
    try:
        subclass, watched = _SUBCLASSES[cls]
    except KeyError:
        unwatched = issubclass(cls, _UNARY_REQUEST)
        subclass = abortable_subclass(cls, unwatched=unwatched)
        watched = subclass is None or not unwatched
        _SUBCLASSES[cls] = subclass, watched
    if subclass is not None:
        try:
            call.__class__ = subclass
        except TypeError:  # an instance layout that forbids it: callers see CancelledError
            _SUBCLASSES[cls] = None, True
            watched = True
    if watched:
        watch_start(call, call)


def fallback_factory(raw: Any) -> Callable[..., Any]:
    """Starts calls with grpc multicallable ``raw`` itself, each made abortable."""
    classes = _SUBCLASSES

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
        known = classes.get(call.__class__)
        if known is None:  # the first call of its class
            make_abortable(call)
            return call
        subclass, watched = known  # make_abortable's decisions, taken in line (a call per call)
        if subclass is not None:
            call.__class__ = subclass
        if watched:
            watch_start(call, call)
        return call

    return start
