"""The call side of the drain: every caller of an aborted call gets a typed answer, at once.

grpc.aio raises a bare ``asyncio.CancelledError`` from inside its call methods when a call is
cancelled locally, and some of them never return at all after a cancellation (a ``write()`` waiting
for flow control or for headers that will never come). So the translation lives on the call object
the caller holds. Rather than wrapping every call in a proxy (measured: +6-8% CPU per unary call),
every call is an instance of a subclass of its own grpc.aio class whose awaiting methods:

- note which task awaits them, so that ``abort()`` can wake that task whatever the network does;
- turn a cancellation that ``abort()`` caused into ``DrainTimeoutError`` (or the error the abort
  names) - decided from what the abort did to that task, never from the task's cancel counter
  alone, so a task that swallowed an earlier cancellation is still answered correctly - while the
  owner's own cancellation stays ``CancelledError`` (and cancels the RPC, as grpc.aio intends but
  does not always do while a stream is being set up).

A call whose start fails locally (metadata grpc rejects, a request that cannot be serialised) is
cancelled at once, so that grpc reports it done and it leaves the channel's books; its caller gets
the original error, as with grpc.aio.

``abortable_subclass`` builds that subclass; the graceful channel constructs its calls as it
(``_call_factory``), and on the fallback path (for any grpcio) grpc's own code builds them as it,
or ``_fallback`` assigns it to a call built elsewhere.

Besides the public call API, the fallback reads a few private grpc.aio names, each guarded (they
are in ``_grpc_internals.RELIED_ON``, so the direct path only ever runs where they exist). On a
grpc.aio without one, the fallback degrades, never raising in a user's call:

- the attributes holding a call's start task (``_START_TASKS``) or its interceptor chain's task
  (``_INTERCEPTORS_TASK``): a call whose start fails locally is not ended at once. Its caller still
  gets grpc's own error; the call stays in flight until grpc collects it (which cancels it) or a
  drain's deadline cancels it (reported in ``cancelled``);
- ``_metadata_sent`` (with its setter ``_metadata_sent_observer``): cancelling a stream-request
  call does not wake a task blocked in ``write()`` or ``wait_for_connection()`` before the headers
  went out. A drain's abort still answers that task (it is woken as a waiter); otherwise it waits
  for its own timeout, as on plain grpc.aio;
- grpc.aio's unary-request call classes (``_UNARY_REQUEST``): without them every call is watched
  from the start (see ``_fallback``), which costs a loop callback per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import types
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any, NoReturn

__all__ = (
    "Abort",
    "abort",
    "abortable_subclass",
    "aborted",
    "answer_cancellation",
    "end_failed_start",
    "running_loop",
    "take_back_wake",
    "task_of",
    "watch_start",
)

# Per-call attributes (class defaults None). The answering methods, which only ever run on the
# subclass, read the first two by their literal names: a plain attribute access is the cheapest.
_ABORT = "_graceful_grpc_abort"  # the Abort that ended the call, or None
_WAITERS = "_graceful_grpc_waiters"  # the tasks awaiting the call now, or None
_FAILURE = "_graceful_grpc_failure"  # the exception the call's start failed with, or None
# The task awaiting a call's method, found with C calls only: ``task_of(running_loop())``. (On
# CPython 3.11 ``asyncio.current_task`` is Python code: a frame per await and stream message.)
running_loop = asyncio.events._get_running_loop
_TASKS = getattr(asyncio.tasks, "_current_tasks", None)
if isinstance(_TASKS, dict):
    task_of: Callable[[Any], asyncio.Task[Any] | None] = _TASKS.get
else:  # pragma: no cover - an asyncio that keeps its current tasks elsewhere

    def task_of(loop: Any) -> asyncio.Task[Any] | None:
        return asyncio.current_task(loop) if loop is not None else None


class Abort:
    """Why and how the channel ended a call: the error its callers get, and which of their
    tasks the channel cancelled to deliver it."""

    __slots__ = ("error", "woken")

    def __init__(self, error: Callable[[], BaseException]) -> None:
        self.error = error
        self.woken: set[asyncio.Task[Any]] = set()


def abort(call: Any, reason: Abort) -> bool:
    """Cancels ``call`` for ``reason``; every task awaiting it gets ``reason.error()`` at once.

    Returns:
        Whether the call was still running (``call.cancel()``'s answer).
    """
    try:
        setattr(call, _ABORT, reason)
    except AttributeError:  # no instance dict: its callers see CancelledError, as with grpc.aio
        return bool(call.cancel())
    for task in getattr(call, _WAITERS, None) or ():
        if not task.done():
            reason.woken.add(task)
            task.cancel()
    return bool(call.cancel())


def aborted(call: Any) -> bool:
    """Whether ``abort()`` has ended ``call``."""
    return getattr(call, _ABORT, None) is not None


def answer_cancellation(
    call: Any,
    task: asyncio.Task[Any] | None,
    level: int,
    error: BaseException,
    ends_rpc: bool = True,
) -> NoReturn:
    """Raises what the caller of ``call`` must see for ``error`` (a CancelledError) in ``task``,
    whose cancel counter was ``level`` when it began awaiting. ``ends_rpc``: the owner's own
    cancellation of this method ends the RPC (as for grpc.aio's awaiting, reading and writing -
    but not for waiting on status, metadata or the connection)."""
    reason: Abort | None = getattr(call, _ABORT, None)
    if reason is not None and task is not None and task in reason.woken:
        reason.woken.discard(task)
        task.uncancel()
    owner_cancelled = task is not None and task.cancelling() > level
    if reason is not None and not owner_cancelled:
        raise reason.error() from None
    failure: BaseException | None = getattr(call, _FAILURE, None)
    if failure is not None and not owner_cancelled:
        raise failure
    # The owner's own cancellation. Where grpc.aio means to cancel the RPC then, it misses it
    # while a stream is still being set up (the RPC would stay open): close that gap.
    if ends_rpc and not call.done():
        call.cancel()
    raise error


def take_back_wake(reason: Abort, task: asyncio.Task[Any]) -> None:
    if task in reason.woken:
        # Woken by the abort, yet grpc returned normally (it absorbed the cancellation): take
        # back the cancel request, or the task's later asyncio.timeout() would misread it.
        reason.woken.discard(task)
        task.uncancel()


def _await_method(original: Callable[[Any], Generator[Any, None, Any]]) -> Any:
    # Not registered as a waiter: cancelling the call cancels the very task awaited here.
    def __await__(self: Any) -> Generator[Any, None, Any]:
        task = task_of(running_loop())
        level = task.cancelling() if task is not None else 0
        try:
            return (yield from original(self))
        except asyncio.CancelledError as error:
            answer_cancellation(self, task, level, error)
        except Exception:
            if self._graceful_grpc_unwatched:  # the start may have failed: end the call if so
                _watch_start_now(self)
            raise

    return __await__


def _coroutine_method(
    original: Callable[..., Any], ends_rpc: bool = True, refused_after_abort: bool = False
) -> Any:
    """An awaiting method: ``ends_rpc``, the owner cancelling it ends the RPC (see
    answer_cancellation);
    ``refused_after_abort``, it raises the abort's error once the call is aborted."""

    @functools.wraps(original)
    async def method(self: Any, *args: Any) -> Any:
        if refused_after_abort and self._graceful_grpc_abort is not None:
            raise self._graceful_grpc_abort.error()
        if not ends_rpc and self._graceful_grpc_unwatched and not self.done():
            _watch_start_now(self)  # a wait for status would outlast a failed start
        # Waiter bookkeeping written out, not in helpers: this runs for every stream message
        # (_answering_iterator and _direct_methods have the same lines, for the same reason).
        task = task_of(running_loop())
        level = 0
        if task is not None:
            level = task.cancelling()
            if self._graceful_grpc_waiters is None:
                self._graceful_grpc_waiters = set()
            self._graceful_grpc_waiters.add(task)
        try:
            return await original(self, *args)
        except asyncio.CancelledError as error:
            answer_cancellation(self, task, level, error, ends_rpc)
        except Exception:
            if self._graceful_grpc_unwatched:
                _watch_start_now(self)
            raise
        finally:
            if task is not None:
                self._graceful_grpc_waiters.discard(task)
                if self._graceful_grpc_abort is not None:
                    take_back_wake(self._graceful_grpc_abort, task)

    return method


def _waiting_method(original: Callable[..., Any]) -> Any:
    """A method that only waits (for status, metadata, the connection): the owner cancelling it
    leaves the RPC running, as grpc.aio does."""
    return _coroutine_method(original, ends_rpc=False)


def _write_method(original: Callable[..., Any]) -> Any:
    """A write after the abort raises the abort's error (grpc.aio: InvalidStateError)."""
    return _coroutine_method(original, refused_after_abort=True)


def _aiter_method(original: Callable[[Any], AsyncIterator[Any]]) -> Any:
    def __aiter__(self: Any) -> AsyncIterator[Any]:
        return _answering_iterator(self, original(self))

    return __aiter__


async def _answering_iterator(call: Any, inner: AsyncIterator[Any]) -> AsyncIterator[Any]:
    while True:
        # The waiter bookkeeping of _coroutine_method, written out for the same reason.
        task = task_of(running_loop())
        level = 0
        if task is not None:
            level = task.cancelling()
            if call._graceful_grpc_waiters is None:
                call._graceful_grpc_waiters = set()
            call._graceful_grpc_waiters.add(task)
        try:
            message = await anext(inner)
        except StopAsyncIteration:
            return
        except asyncio.CancelledError as error:
            answer_cancellation(call, task, level, error)
        except Exception:
            if call._graceful_grpc_unwatched:
                _watch_start_now(call)
            raise
        finally:
            if task is not None:
                call._graceful_grpc_waiters.discard(task)
                if call._graceful_grpc_abort is not None:
                    take_back_wake(call._graceful_grpc_abort, task)
        yield message


def _start_method(original: Callable[[Any], Any]) -> Any:
    """grpc.aio's task that starts the RPC: a local failure cancels the call, so it is done."""

    @functools.wraps(original)
    async def start(self: Any) -> Any:
        try:
            return await original(self)
        except asyncio.CancelledError:
            raise
        except BaseException as failure:
            end_failed_start(self, failure)
            raise

    return start


def end_failed_start(call: Any, failure: BaseException) -> None:
    """Cancels ``call``, whose start failed locally with ``failure``, so that grpc reports it
    done; its callers get ``failure`` (see answer_cancellation)."""
    if not call.done():
        with contextlib.suppress(AttributeError):  # a foreign call without an instance dict
            setattr(call, _FAILURE, failure)
        call.cancel()


def _cancel_method(original: Callable[[Any], bool]) -> Any:
    """grpc.aio's stream-request calls wait for "headers sent" in ``write()`` and
    ``wait_for_connection()`` on an event that a cancelled call never sets: set it then."""

    @functools.wraps(original)
    def cancel(self: Any) -> bool:
        cancelled = original(self)
        metadata_sent = getattr(self, "_metadata_sent", None)
        if cancelled and isinstance(metadata_sent, asyncio.Event):
            metadata_sent.set()
        return cancelled

    return cancel


_WRAPPERS: dict[str, Callable[[Any], Any]] = {
    "__await__": _await_method,
    "__aiter__": _aiter_method,
    "read": _coroutine_method,
    "write": _write_method,
    "done_writing": _coroutine_method,
    "wait_for_connection": _waiting_method,
    "initial_metadata": _waiting_method,
    "trailing_metadata": _waiting_method,
    "code": _waiting_method,
    "details": _waiting_method,
}

# grpc.aio's (private) coroutines that start each kind of RPC, wrapped on the direct path only:
# there, the verified source says which one a call's constructor schedules. (A fallback call
# gets a start watch instead, see ``_fallback``.)
_START_WRAPPERS: dict[str, Callable[[Any], Any]] = {
    "_invoke": _start_method,
    "_send_unary_request": _start_method,
    "_conduct_rpc": _start_method,
    "_prepare_rpc": _start_method,
}


def abortable_subclass(base: type, direct: bool = False, unwatched: bool = False) -> type | None:
    """The subclass of call class ``base`` whose awaiting methods answer aborts.

    Args:
        base: A call class.
        direct: ``base`` is one of grpc.aio's own, on grpc.aio source verified for the direct
            path: its thin public stream methods are reproduced (``_direct_methods``) rather than
            wrapped, and the coroutine that starts its RPC ends the call if the start fails.
        unwatched: Calls of it get no start watch when made (see ``_fallback``): their
            awaiting methods install it once it can matter.
    """
    if getattr(base, "_graceful_grpc_abortable", False):
        return None
    namespace: dict[str, Any] = {
        "_graceful_grpc_abortable": True,
        _ABORT: None,
        _WAITERS: None,
        _FAILURE: None,
        "_graceful_grpc_unwatched": unwatched,
    }
    wrappers = {**_WRAPPERS, **_START_WRAPPERS} if direct else _WRAPPERS
    for name, wrap in wrappers.items():
        original = getattr(base, name, None)
        if original is not None:
            namespace[name] = wrap(original)
    if direct:
        from ._direct_methods import (  # it imports this module
            direct_stream_methods,
            direct_unary_methods,
        )

        namespace.update(direct_stream_methods(base))
        namespace.update(direct_unary_methods(base))
    if hasattr(base, "_metadata_sent_observer"):  # grpc.aio's stream-request calls
        namespace["cancel"] = _cancel_method(base.cancel)  # type: ignore[attr-defined]
    subclass = types.new_class(base.__name__, (base,), {}, lambda ns: ns.update(namespace))
    subclass.__module__ = base.__module__
    subclass.__qualname__ = base.__qualname__
    return subclass


# Where grpc.aio keeps the task that starts each kind of call, and an interceptor chain's task.
_START_TASKS = ("_invocation_task", "_send_unary_request_task", "_initializer", "_call_response")
_INTERCEPTORS_TASK = "_interceptors_task"


def _watch_start_now(call: Any) -> None:
    """Installs the start watch of an unwatched call (once)."""
    call._graceful_grpc_unwatched = False
    watch_start(call, call)


def watch_start(owner: Any, call: Any) -> None:
    """Ends ``owner`` if the start of ``call`` (itself, or the grpc call an interceptor chain
    produced for it) fails locally. grpc.aio reports a failed interceptor chain done itself."""
    # Read with getattr(), never through ``__dict__``: on CPython that would move the call's
    # attributes out of its inline values for good, making every later read of grpc's a dict
    # lookup. (No isinstance() of the Nones: about 50 ns each, on every watched call.)
    for name in (*_START_TASKS, _INTERCEPTORS_TASK):
        try:
            task = getattr(call, name, None)
        except Exception:  # a foreign call's own __getattr__ failing: no task there
            continue
        if task is None or not isinstance(task, asyncio.Future):
            continue
        if name == _INTERCEPTORS_TASK:  # the chain's call, once the chain has produced it
            task.add_done_callback(functools.partial(_watch_produced, owner))
        else:
            task.add_done_callback(functools.partial(_end_on_local_failure, owner))
        return


def _watch_produced(owner: Any, chain: asyncio.Future[Any]) -> None:
    if not chain.cancelled() and chain.exception() is None:
        watch_start(owner, chain.result())


def _end_on_local_failure(owner: Any, start: asyncio.Future[Any]) -> None:
    failure = None if start.cancelled() else start.exception()
    if failure is not None:
        end_failed_start(owner, failure)
