"""Wraps each RPC's handler so the server's books see it from its start to its real end.

The wrapping happens in a server interceptor placed before the user's own, so the wrapper is the
outermost layer of whatever handler the interceptors return. grpc.aio picks how to run a handler
from its type, so each style keeps its own: coroutine functions stay coroutine functions (an
async generator becomes one that writes each message with ``context.write()``, so that its end is
awaited rather than left to garbage collection), plain functions and generators stay plain (they
run on the server's thread pool).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
from grpc import aio

from .._log import logger
from ..errors import ChannelClosedError
from ..report import CallKind
from ._channel import GracefulChannel
from ._hold import Hold
from ._server_drain import Handler, ServerDrain
from ._server_holds import ServerHolds

__all__ = ("SHUTTING_DOWN", "TrackingInterceptor")

SHUTTING_DOWN = "server is shutting down: reconnect to another backend"
"""The details of the UNAVAILABLE status that interrupted handlers end with."""

_MAX_METHODS = 10_000  # wrapped handlers kept, one per method name

_current_task = asyncio.current_task
_NO_HOLDS: list[Hold] = []  # never appended to: the holds of a server without holds=

_KINDS: dict[tuple[bool, bool], tuple[CallKind, str, Callable[..., grpc.RpcMethodHandler]]] = {
    (False, False): ("unary_unary", "unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", "unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", "stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", "stream_stream", grpc.stream_stream_rpc_method_handler),
}


class TrackingInterceptor(aio.ServerInterceptor):
    """Books every handler in a ServerDrain and runs it held on the server's channels.

    The wrapped handler of a method is built once and reused while the handler found for that
    method is the same object (as grpc's registered and generated handlers are), so a call pays
    a dictionary lookup here, not the wrapping.
    """

    def __init__(self, drain: ServerDrain, holds: ServerHolds) -> None:
        self._drain = drain
        self._holds = holds
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        found = await continuation(handler_call_details)
        if found is None:  # no such method: grpc answers UNIMPLEMENTED
            return found
        method: str = handler_call_details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is found:
            return known[1]
        wrapped = self._wrap(found, method)
        if known is not None or len(self._wrapped) < _MAX_METHODS:  # names come from clients
            self._wrapped[method] = (found, wrapped)
        return wrapped

    def _wrap(self, found: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        handler: Any = found
        kind, attribute, build = _KINDS[
            (bool(handler.request_streaming), bool(handler.response_streaming))
        ]
        behavior = getattr(handler, attribute)
        if behavior is None:
            return found
        return build(
            _wrap(behavior, method, kind, self._drain, self._holds.handles),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _wrap(
    behavior: Callable[..., Any],
    method: str,
    kind: CallKind,
    drain: ServerDrain,
    holds: tuple[GracefulChannel, ...],
) -> Callable[..., Any]:
    streams = kind in ("unary_stream", "stream_stream")
    if inspect.iscoroutinefunction(behavior):
        return _async_handler(behavior, method, kind, drain, holds)
    if inspect.isasyncgenfunction(behavior):
        return _async_generator_handler(behavior, method, kind, drain, holds)
    if streams:
        return _sync_stream_handler(behavior, method, kind, drain, holds)
    return _sync_handler(behavior, method, kind, drain, holds)


def _take_holds(holds: tuple[GracefulChannel, ...]) -> list[Hold]:
    """Takes a hold on each channel; a closed channel is skipped. If taking one raises, the
    holds taken so far are released."""
    taken: list[Hold] = []
    try:
        for channel in holds:
            try:
                taken.append(channel.hold())
            except ChannelClosedError:  # its calls will say so; the handler still runs
                logger.debug("server handler runs unheld on closed %r", channel)
    except BaseException:
        _release(taken)
        raise
    return taken


def _release(taken: list[Hold]) -> None:
    for hold in taken:
        hold.release()


async def _end_interrupted(handler: Handler, context: Any, drain: ServerDrain) -> None:
    """Ends an interrupted handler's RPC with UNAVAILABLE (raises grpc's abort error)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        task.uncancel()
    if context.done():  # the handler had already sent its status
        return
    if drain.holding:  # its client re-opens on hearing it: after grpc's GOAWAY
        await drain.released()
    await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)


def _async_handler(
    behavior: Callable[..., Awaitable[Any]],
    method: str,
    kind: CallKind,
    drain: ServerDrain,
    holds: tuple[GracefulChannel, ...],
) -> Callable[..., Awaitable[Any]]:
    enter, leave = drain.enter, drain.leave

    async def handle(request: Any, context: Any) -> Any:
        handler = enter(method, kind, _current_task())
        taken = _NO_HOLDS
        try:
            if holds:
                taken = _take_holds(holds)
            if handler.interrupted:
                await _end_interrupted(handler, context, drain)
                return None
            if handler.interruptible:
                context = _Guarded(context, handler, drain)
            try:
                response = await behavior(request, context)
            finally:
                if drain.holding:  # its answer waits for grpc's GOAWAY (ServerDrain._settle)
                    await drain.released()
            return response
        except asyncio.CancelledError:
            if not handler.interrupted or handler.cancelled:
                raise
            await _end_interrupted(handler, context, drain)
            return None
        finally:
            if taken:
                _release(taken)
            leave(handler)

    return handle


def _async_generator_handler(
    behavior: Callable[..., Any],
    method: str,
    kind: CallKind,
    drain: ServerDrain,
    holds: tuple[GracefulChannel, ...],
) -> Callable[..., Awaitable[None]]:
    enter, leave = drain.enter, drain.leave

    async def handle(request: Any, context: Any) -> None:
        handler = enter(method, kind, _current_task())
        taken = _NO_HOLDS
        try:
            if holds:
                taken = _take_holds(holds)
            if handler.interrupted:
                await _end_interrupted(handler, context, drain)
                return
            if handler.interruptible:
                context = _Guarded(context, handler, drain)
            messages = behavior(request, context)
            try:
                async for message in messages:
                    if drain.holding:
                        await drain.released()
                    await context.write(message)
            finally:
                await messages.aclose()
                if drain.holding:
                    await drain.released()
        except asyncio.CancelledError:
            if not handler.interrupted or handler.cancelled:
                raise
            await _end_interrupted(handler, context, drain)
        finally:
            if taken:
                _release(taken)
            leave(handler)

    return handle


def _sync_handler(
    behavior: Callable[..., Any],
    method: str,
    kind: CallKind,
    drain: ServerDrain,
    holds: tuple[GracefulChannel, ...],
) -> Callable[..., Any]:
    enter, leave = drain.enter, drain.leave

    def handle(request: Any, context: Any) -> Any:
        handler = enter(method, kind, None)
        taken = _NO_HOLDS
        try:
            if holds:
                taken = _take_holds(holds)
            if handler.interrupted:
                if drain.holding:
                    drain.released_in_thread()
                context.abort(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
            try:
                return behavior(request, context)
            finally:
                if drain.holding:
                    drain.released_in_thread()
        finally:
            if taken:
                _release(taken)
            leave(handler)

    return handle


def _sync_stream_handler(
    behavior: Callable[..., Any],
    method: str,
    kind: CallKind,
    drain: ServerDrain,
    holds: tuple[GracefulChannel, ...],
) -> Callable[..., Iterator[Any]]:
    # grpc runs a plain generator ahead of the messages it writes (a queue of one), so an abort
    # from here could race the write of the message just yielded: an interrupted generator ends
    # instead, with the status set, and grpc sends that status after the last message.
    enter, leave = drain.enter, drain.leave

    def handle(request: Any, context: Any) -> Iterator[Any]:
        handler = enter(method, kind, None)
        taken = _NO_HOLDS
        try:
            if holds:
                taken = _take_holds(holds)
            if handler.interrupted:
                _set_shutting_down(context)
                return
            messages = iter(behavior(request, context))
            try:
                for message in messages:
                    told = drain.draining  # made after the drain began (read before the yield)
                    if drain.holding:
                        drain.released_in_thread()
                    yield message
                    if handler.interruptible and drain.sent(handler, wrote=told):
                        _set_shutting_down(context)
                        return
            finally:
                close = getattr(messages, "close", None)
                if close is not None:
                    close()
        finally:
            if taken:
                _release(taken)
            leave(handler)

    return handle


def _set_shutting_down(context: Any) -> None:
    context.set_code(grpc.StatusCode.UNAVAILABLE)
    context.set_details(SHUTTING_DOWN)


class _Guarded:
    """The context a cancel-on-drain handler gets: the drain never interrupts it inside a
    ``write()`` or ``send_initial_metadata()`` (grpc cannot then send the UNAVAILABLE status:
    its batch would repeat the pending one's operations), but right after; and a write tells the
    drain, which then interrupts a health Watch that has just told its watcher NOT_SERVING."""

    def __init__(self, context: Any, handler: Handler, drain: ServerDrain) -> None:
        self._context = context
        self._handler = handler
        self._drain = drain

    async def write(self, message: Any) -> None:
        told = self._drain.draining  # a message written after the drain began
        await self._sending(self._context.write(message), wrote=told)

    async def send_initial_metadata(self, metadata: Any) -> None:
        await self._sending(self._context.send_initial_metadata(metadata), wrote=False)

    async def _sending(self, sending: Awaitable[None], *, wrote: bool) -> None:
        self._handler.sending = True
        try:
            await sending
        finally:
            self._handler.sending = False
        if self._drain.sent(self._handler, wrote=wrote):
            task = asyncio.current_task()
            if task is not None:
                task.cancel()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)
