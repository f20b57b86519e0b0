"""The direct path's answering methods: grpc.aio's thin ones, reproduced.

grpc.aio's ``write()``, ``read()`` and ``__aiter__()`` are thin public layers over private
coroutines (``_write()``, ``_read()``): an API-style check, and for reading the end-of-stream
status. A unary response's ``__await__()`` waits for the task running ``_invoke()`` and turns its
result into the response or the RPC's error. Wrapping these, as ``_abortable`` does for any call,
puts a second frame on every stream message and on every unary call. On the direct path, whose
grpc.aio source is verified (``_grpc_internals.RELIED_ON`` names every function reproduced or
called here), these methods do grpc.aio's part themselves around the answering bookkeeping: one
frame, as on grpc.aio. They answer exactly as ``_abortable``'s wrappers do (each copy of the
bookkeeping names its twins there: a shared helper would cost a call per message).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any

from ._abortable import (
    answer_cancellation,
    end_failed_start,
    running_loop,
    take_back_wake,
    task_of,
)

__all__ = ("direct_stream_methods", "direct_unary_methods")


def direct_stream_methods(base: type) -> dict[str, Callable[..., Any]]:
    """The answering ``write``/``read``/``__aiter__`` for grpc.aio call class ``base`` (those of
    its methods that it has), or none if grpc.aio's names are not there."""
    try:
        from grpc._cython import cygrpc
        from grpc.aio._call import _APIStyle
    except ImportError:
        return {}
    methods: dict[str, Callable[..., Any]] = {}
    if hasattr(base, "_write") and hasattr(base, "_raise_for_different_style"):
        methods["write"] = _write_method(_APIStyle.READER_WRITER)
    if hasattr(base, "_read") and hasattr(base, "_update_response_style"):
        methods["read"] = _read_method(_APIStyle.READER_WRITER, cygrpc.EOF)
        methods["__aiter__"] = _aiter_method(_APIStyle.ASYNC_GENERATOR, cygrpc.EOF)
    return methods


def _write_method(reader_writer: Any) -> Callable[..., Any]:
    async def write(self: Any, request: Any) -> None:
        """grpc.aio's ``write()``: the API-style check, then ``_write()``."""
        if self._graceful_grpc_abort is not None:
            raise self._graceful_grpc_abort.error()
        self._raise_for_different_style(reader_writer)
        # The waiter bookkeeping of _abortable._coroutine_method.
        task = task_of(running_loop())
        level = 0
        if task is not None:
            level = task.cancelling()
            if self._graceful_grpc_waiters is None:
                self._graceful_grpc_waiters = set()
            self._graceful_grpc_waiters.add(task)
        try:
            await self._write(request)
        except asyncio.CancelledError as error:
            answer_cancellation(self, task, level, error)
        finally:
            if task is not None:
                self._graceful_grpc_waiters.discard(task)
                if self._graceful_grpc_abort is not None:
                    take_back_wake(self._graceful_grpc_abort, task)

    return write


def _read_method(reader_writer: Any, eof: Any) -> Callable[..., Any]:
    async def read(self: Any) -> Any:
        """grpc.aio's ``read()``: EOF once done, the API-style check, ``_read()``, and the status
        at the end of the stream."""
        # The waiter bookkeeping of _abortable._coroutine_method.
        task = task_of(running_loop())
        level = 0
        if task is not None:
            level = task.cancelling()
            if self._graceful_grpc_waiters is None:
                self._graceful_grpc_waiters = set()
            self._graceful_grpc_waiters.add(task)
        try:
            if self.done():
                await self._raise_for_status()
                return eof
            self._update_response_style(reader_writer)
            message = await self._read()
            if message is eof:
                await self._raise_for_status()
            return message
        except asyncio.CancelledError as error:
            answer_cancellation(self, task, level, error)
        finally:
            if task is not None:
                self._graceful_grpc_waiters.discard(task)
                if self._graceful_grpc_abort is not None:
                    take_back_wake(self._graceful_grpc_abort, task)

    return read


def _aiter_method(async_generator: Any, eof: Any) -> Callable[..., Any]:
    def __aiter__(self: Any) -> AsyncIterator[Any]:
        """grpc.aio's ``__aiter__()``: one iterator per call, reading with ``_read()``."""
        self._update_response_style(async_generator)
        if self._message_aiter is None:
            self._message_aiter = _answering_messages(self, eof)
        return self._message_aiter  # type: ignore[no-any-return]

    return __aiter__


async def _answering_messages(call: Any, eof: Any) -> AsyncIterator[Any]:
    """grpc.aio's ``_fetch_stream_responses()``, answering aborts."""
    while True:
        # The waiter bookkeeping of _abortable._answering_iterator.
        task = task_of(running_loop())
        level = 0
        if task is not None:
            level = task.cancelling()
            if call._graceful_grpc_waiters is None:
                call._graceful_grpc_waiters = set()
            call._graceful_grpc_waiters.add(task)
        try:
            message = await call._read()
            if message is eof:
                await call._raise_for_status()  # the status at the end of the stream
                return
        except asyncio.CancelledError as error:
            answer_cancellation(call, task, level, error)
        finally:
            if task is not None:
                call._graceful_grpc_waiters.discard(task)
                if call._graceful_grpc_abort is not None:
                    take_back_wake(call._graceful_grpc_abort, task)
        yield message


def direct_unary_methods(base: type) -> dict[str, Callable[..., Any]]:
    """The answering ``__await__`` of grpc.aio call class ``base`` (if it has a unary response),
    and its ``_invoke`` (if it is grpc.aio's unary-unary call), or none if grpc.aio's names are
    not there."""
    try:
        from grpc import _common
        from grpc._cython import cygrpc
        from grpc.aio._call import _create_rpc_error
    except ImportError:
        return {}
    methods: dict[str, Callable[..., Any]] = {}
    if hasattr(base, "_init_unary_response_mixin"):
        methods["__await__"] = _await_method(cygrpc.EOF, _create_rpc_error)
    if hasattr(base, "_invoke"):
        methods["_invoke"] = _invoke_method(cygrpc.EOF, _common.serialize, _common.deserialize)
    return methods


def _await_method(eof: Any, create_rpc_error: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    # Not registered as a waiter (as _abortable._await_method): cancelling the call cancels the
    # very task awaited here.
    def __await__(self: Any) -> Generator[Any, None, Any]:
        """grpc.aio's ``__await__()``: the response, or the RPC's error."""
        task = task_of(running_loop())
        level = task.cancelling() if task is not None else 0
        try:
            response = yield from self._call_response
            if response is eof:
                if self._cython_call.is_locally_cancelled():
                    raise asyncio.CancelledError()
                raise create_rpc_error(
                    self._cython_call._initial_metadata, self._cython_call._status
                )
            return response
        except asyncio.CancelledError as error:
            answer_cancellation(self, task, level, error)

    return __await__


def _invoke_method(
    eof: Any, serialize: Callable[[Any, Any], Any], deserialize: Callable[[Any, Any], Any]
) -> Callable[..., Any]:
    async def _invoke(self: Any) -> Any:
        """grpc.aio's ``_invoke()``, the task that runs a unary-unary RPC; a local failure of its
        start cancels the call, so that it is done (as _abortable._start_method)."""
        try:
            serialized_request = serialize(self._request, self._request_serializer)
            try:
                serialized_response = await self._cython_call.unary_unary(
                    serialized_request, self._metadata, self._context
                )
            except asyncio.CancelledError:
                if not self.cancelled():
                    self.cancel()
                return eof  # as grpcio >= 1.83 (older ones find the call not ok, the same)
            if self._cython_call.is_ok():
                return deserialize(serialized_response, self._response_deserializer)
            return eof
        except asyncio.CancelledError:
            raise
        except BaseException as failure:
            end_failed_start(self, failure)
            raise

    return _invoke
