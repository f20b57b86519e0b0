"""GracefulServiceClient: temporalio's ServiceClient with every client RPC on a GracefulChannel."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import weakref
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar, cast

import grpc
import temporalio
import temporalio.service
from google.protobuf.message import Message
from temporalio.service import ConnectConfig, RPCError, RPCStatusCode, ServiceClient, TLSConfig

from ..._validation import check_seconds
from ...aio import GracefulChannel, UnaryUnaryMultiCallable
from ...aio._options import DEFAULT_DRAIN_TIMEOUT
from ...errors import ChannelClosedError
from ...report import DrainReport
from ._loops import LoopChannels
from ._metadata import Metadata, check_metadata, merge_headers
from ._methods import RpcMethod, is_wait, method_table
from ._options import channel_factory, rotation_factory
from ._retry import retrying

__all__ = ("DEFAULT_LONG_POLL_TIMEOUT", "DEFAULT_TIMEOUT", "GracefulServiceClient")

ResponseT = TypeVar("ResponseT", bound=Message)

DEFAULT_TIMEOUT = 30.0
"""Seconds a call may take when the caller gives no timeout (as the built-in client)."""
DEFAULT_LONG_POLL_TIMEOUT = 70.0
"""The same, for long polls."""
_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_EAGER_START = ("workflow", "start_workflow_execution")


class _Keep(enum.Enum):
    """``rotate()``'s "keep the current setting"."""

    CURRENT = enum.auto()


class GracefulServiceClient(ServiceClient):
    """A ``temporalio.service.ServiceClient`` whose RPCs run over graceful channels.

    Pass it to ``temporalio.client.Client(service_client, namespace=...)``, or use
    ``graceful_grpc.contrib.temporalio.connect``. Errors, headers, default timeouts and retries
    match temporalio's built-in client; a call the closing channel refuses or aborts surfaces as
    ``RPCError`` (UNAVAILABLE / CANCELLED), never as a bare ``UsageError`` or ``CancelledError``.

    A grpc.aio channel belongs to one event loop; given a channel factory, this client keeps one
    graceful channel per event loop it is used from (see ``channel``, ``close`` and ``rotate``).
    Calls that wait rather than work (long polls, and history fetches with ``wait_new_event``)
    are marked cancel-on-drain: a closing channel interrupts them at once, and their callers get
    ``RPCError(UNAVAILABLE)`` without retries.

    Args:
        config: The connection settings; ``identity``, ``rpc_metadata``, ``api_key`` and
            ``retry_config`` are used.
        channel: A function creating a graceful channel to the frontend (called on each event
            loop that uses the client), or one channel, which then serves only its own loop.
            This client owns the channels from now on.
        worker_service_client: A connected temporalio bridge client, needed only to run
            ``temporalio.worker.Worker`` on a ``Client`` built from this service client. The
            worker's polls, task completions and heartbeats use that bridge connection, and so
            does an eager workflow start (``request_eager_start=True``), whose first workflow
            task the server hands to a worker of that connection.

    Raises:
        TypeError, ValueError: ``config.rpc_metadata`` is invalid (as temporalio).
    """

    def __init__(
        self,
        config: ConnectConfig,
        channel: GracefulChannel | Callable[[], GracefulChannel],
        *,
        worker_service_client: temporalio.service.ServiceClient | None = None,
    ) -> None:
        rpc_metadata = check_metadata(config.rpc_metadata)
        super().__init__(config)
        if isinstance(channel, grpc.aio.Channel):
            self._channels = LoopChannels(_single(channel))
        else:
            self._channels = LoopChannels(channel)
        self._worker_service_client = worker_service_client
        self._rpc_metadata = rpc_metadata
        self._api_key = config.api_key
        self._methods = method_table()
        self._callables: weakref.WeakKeyDictionary[
            GracefulChannel, dict[tuple[str, str], UnaryUnaryMultiCallable[Any, Any]]
        ] = weakref.WeakKeyDictionary()

    @property
    def channel(self) -> GracefulChannel:
        """The graceful channel of the running event loop (created on first use).

        Outside a running loop, the channel of the first loop that used the client. In the
        common single-loop program this is the one channel: hold it (``channel.hold()``) around
        work whose result must still be reported during shutdown. ``channel.close()`` closes
        only this loop's channel; ``close()`` closes them all.

        Raises:
            AssertionError: used in a forked child process (as temporalio's own client).
            ChannelClosedError: ``close()`` was called and this loop has no channel.
        """
        return self._channels.current()

    async def rotate(
        self,
        *,
        tls: bool | TLSConfig | _Keep | None = _Keep.CURRENT,
        target: str | _Keep = _Keep.CURRENT,
        grace: float | None = None,
    ) -> DrainReport:
        """Moves every event loop's channel to a new connection, with new settings if given.

        As ``GracefulChannel.rotate()``: from the moment of the call, new calls from every user
        of this client (the ``Client``, handles, ``activity.client()``) go to the new
        connections; calls in flight finish on the old ones, which close as soon as they are
        done or at ``grace``. A wait (a long poll, or ``handle.result()``'s history poll) the
        rotation interrupts on an old connection goes on, unseen by its caller, on the new one.
        The new connections are built from ``config`` with the changes, as ``connect()`` builds
        them (channels given to the constructor are replaced by such channels); a loop first
        used afterwards gets such a channel too. The worker's bridge connection is not
        rotated (see the Temporal guide, docs/temporal.md).

        Args:
            tls: The new TLS setting, as ``ConnectConfig.tls``; omitted keeps the current one.
            target: The new ``host:port`` of the frontend; omitted keeps the current one.
            grace: Seconds each old connection may drain; None means each channel's
                ``drain_timeout``.

        Returns:
            One report for the old connections of every loop: closed and drained only if every
            one was, ``waited`` the longest, calls summed (as ``close()``'s).

        Raises:
            ValueError: a setting the graceful channel cannot honour (as ``connect()``), or
                ``grace`` negative, NaN or infinite; nothing has changed then.
            TypeError: ``tls`` or ``target`` of the wrong type.
            ChannelClosedError: ``close()`` was called.
        """
        changes: dict[str, Any] = {}
        if not isinstance(target, _Keep):
            if not isinstance(target, str):
                raise TypeError(f"target must be a str 'host:port', got {type(target).__name__}")
            changes["target_host"] = target
        if not isinstance(tls, _Keep):
            if tls is not None and not isinstance(tls, bool | TLSConfig):
                raise TypeError(f"tls must be a bool, TLSConfig or None, got {type(tls).__name__}")
            changes["tls"] = tls
        if grace is not None:
            check_seconds(grace, "grace")
        config = dataclasses.replace(self.config, **changes)
        new_raw = rotation_factory(config)
        factory = channel_factory(config, self._channels.drain_timeout(DEFAULT_DRAIN_TIMEOUT))
        rotation = self._channels.rotate(factory, new_raw, grace)
        self.config = config
        return await rotation

    async def close(self, grace: float | None = None) -> DrainReport:
        """Closes the graceful channels of every event loop the client was used from.

        Channels of loops still running drain (up to ``grace`` seconds, default each channel's
        ``drain_timeout``); channels of loops that have stopped are released. Calls made
        afterwards fail with ``RPCError(UNAVAILABLE)``. The worker connection is not closed.

        Returns:
            One DrainReport for all channels: closed and drained only if every one was.
        """
        return await self._channels.close(grace)

    @property
    def worker_service_client(self) -> Any:
        """The bridge client workers poll through (``connect(..., worker_support=True)``).

        Raises:
            RuntimeError: this client was created without one.
        """
        if self._worker_service_client is None:
            raise RuntimeError(
                "GracefulServiceClient has no worker service client: create it with "
                "graceful_grpc.contrib.temporalio.connect(..., worker_support=True) to run workers"
            )
        return self._worker_service_client

    def update_rpc_metadata(self, metadata: Mapping[str, str | bytes]) -> None:
        """Replaces the headers sent with every later call (and the worker client's).

        Raises:
            TypeError, ValueError: ``metadata`` is invalid (as temporalio); the headers in force
                stay unchanged.
        """
        checked = check_metadata(metadata)
        if self._worker_service_client is not None:
            self._worker_service_client.update_rpc_metadata(metadata)
        self._rpc_metadata = checked

    def update_api_key(self, api_key: str | None) -> None:
        """Replaces the API key sent with every later call (and the worker client's)."""
        self._api_key = api_key
        if self._worker_service_client is not None:
            self._worker_service_client.update_api_key(api_key)

    async def _rpc_call(
        self,
        rpc: str,
        req: Message,
        resp_type: type[ResponseT],
        *,
        service: str,
        retry: bool,
        metadata: Mapping[str, str | bytes],
        timeout: timedelta | None,  # noqa: ASYNC109 - temporalio's signature
    ) -> ResponseT:
        method = self._methods.get((service, rpc))
        if method is None:
            raise ValueError(f"unknown Temporal RPC {service}.{rpc}")
        headers = self._headers(req, metadata)
        if (service, rpc) == _EAGER_START and getattr(req, "request_eager_execution", False):
            if self._worker_service_client is not None:
                return cast(
                    ResponseT,
                    await self._worker_service_client.workflow_service.start_workflow_execution(
                        req,  # type: ignore[arg-type]
                        retry=retry,
                        metadata=metadata,
                        timeout=timeout,
                    ),
                )
            # No local worker can take the first task: a plain start, as the built-in client
            # does when no worker of its connection polls the task queue.
            plain = type(req)()
            plain.CopyFrom(req)
            plain.request_eager_execution = False  # type: ignore[attr-defined]
            req = plain
        wait = is_wait(method, req)
        if timeout is not None:
            seconds = timeout.total_seconds()
        else:
            seconds = DEFAULT_LONG_POLL_TIMEOUT if wait else DEFAULT_TIMEOUT
        try:
            channel = self._channels.current()
            multicallable = self._callable(channel, method)

            deadline = asyncio.get_running_loop().time() + seconds

            async def call() -> ResponseT:
                while True:
                    remaining = deadline - asyncio.get_running_loop().time()
                    started = multicallable(req, metadata=headers, timeout=max(remaining, 0.0))
                    if not wait:
                        response: ResponseT = await started
                        return response
                    channel.cancel_on_drain(started)  # it would hold a drain to its deadline
                    try:
                        response = await started
                        return response
                    except ChannelClosedError as error:
                        if error.reason != "rotated":
                            raise
                        # A rotation interrupted the wait on the old connection; the channel
                        # lives on, so the wait goes on on the new one.

            if not retry:
                return await call()
            async for attempt in retrying(self.config.retry_config):
                with attempt:
                    response = await call()
            return response
        except grpc.aio.AioRpcError as error:
            raise _rpc_error(error) from error

    def _callable(
        self, channel: GracefulChannel, method: RpcMethod
    ) -> UnaryUnaryMultiCallable[Any, Any]:
        callables = self._callables.setdefault(channel, {})
        key = (method.service, method.rpc)
        callable_ = callables.get(key)
        if callable_ is None:
            callable_ = callables[key] = channel.unary_unary(
                method.path,
                request_serializer=method.request_serializer,
                response_deserializer=method.response_deserializer,
                _registered_method=True,
            )
        return callable_

    def _headers(self, req: Message, metadata: Metadata) -> tuple[tuple[str, str | bytes], ...]:
        fixed: dict[str, str | bytes] = {
            "client-name": "temporal-python",
            "client-version": temporalio.__version__,
        }
        namespace = getattr(req, "namespace", None)
        if isinstance(namespace, str) and namespace:
            fixed["temporal-namespace"] = namespace
        return merge_headers(fixed, self._rpc_metadata, metadata, self._api_key)


def _single(channel: GracefulChannel) -> Callable[[], GracefulChannel]:
    """A factory handing out ``channel`` once: a second event loop cannot use it."""
    handed_out = False

    def factory() -> GracefulChannel:
        nonlocal handed_out
        if handed_out:
            raise RuntimeError(
                "this GracefulServiceClient was given one channel, which serves only the event "
                "loop it was first used from; pass a channel factory to use it from several loops"
            )
        handed_out = True
        return channel

    return factory


def _rpc_error(error: grpc.aio.AioRpcError) -> RPCError:
    """The RPCError temporalio's built-in client raises for the same failure."""
    details = b""
    for key, value in error.trailing_metadata() or ():
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            details = value
    return RPCError(error.details() or "", RPCStatusCode(error.code().value[0]), details)
