"""The direct path's answering stream methods: grpc.aio's thin public ones, reproduced.

grpc.aio's ``write()``, ``read()`` and ``__aiter__()`` are thin public layers over private
coroutines (``_write()``, ``_read()``): an API-style check, and for reading the end-of-stream
status. Wrapping the public method, as ``_abortable`` does for any call, puts a second coroutine
frame on every stream message. On the direct path, whose grpc.aio source is verified
(``_grpc_internals.RELIED_ON`` names every function reproduced or called here), these methods do
grpc.aio's thin layer themselves around the waiter bookkeeping and await the private coroutine
directly: one frame per message, as on grpc.aio. They answer exactly as ``_abortable``'s wrappers
do (each copy of the bookkeeping names its twins there: a shared helper would cost a call per
message).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from ._abortable import answer_cancellation, take_back_wake

__all__ = ("direct_stream_methods",)

_current_task = asyncio.current_task


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
        task = _current_task()
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
        task = _current_task()
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
        task = _current_task()
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
