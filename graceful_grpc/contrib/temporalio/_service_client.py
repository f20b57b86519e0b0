"""GracefulServiceClient: temporalio's ServiceClient with every client RPC on a GracefulChannel."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar, cast

import grpc
import temporalio
import temporalio.service
from google.protobuf.message import Message
from temporalio.service import ConnectConfig, RPCError, RPCStatusCode, ServiceClient

from ...aio import GracefulChannel, UnaryUnaryMultiCallable
from ...report import DrainReport
from ._loops import LoopChannels
from ._metadata import Metadata, check_metadata, merge_headers
from ._methods import LONG_POLL_RPCS, RpcMethod, method_table
from ._retry import retrying

__all__ = ("DEFAULT_LONG_POLL_TIMEOUT", "DEFAULT_TIMEOUT", "GracefulServiceClient")

ResponseT = TypeVar("ResponseT", bound=Message)

DEFAULT_TIMEOUT = 30.0
"""Seconds a call may take when the caller gives no timeout (as the built-in client)."""
DEFAULT_LONG_POLL_TIMEOUT = 70.0
"""The same, for long polls."""
_STATUS_DETAILS_KEY = "grpc-status-details-bin"
_EAGER_START = ("workflow", "start_workflow_execution")


class GracefulServiceClient(ServiceClient):
    """A ``temporalio.service.ServiceClient`` whose RPCs run over graceful channels.

    Pass it to ``temporalio.client.Client(service_client, namespace=...)``, or use
    ``graceful_grpc.contrib.temporalio.connect``. Errors, headers, default timeouts and retries
    match temporalio's built-in client; a call the closing channel refuses or aborts surfaces as
    ``RPCError`` (UNAVAILABLE / CANCELLED), never as a bare ``UsageError`` or ``CancelledError``.

    A grpc.aio channel belongs to one event loop; given a channel factory, this client keeps one
    graceful channel per event loop it is used from (see ``channel`` and ``close``).

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
        seconds = timeout.total_seconds() if timeout is not None else _default_timeout(method, req)
        try:
            call = self._callable(method)
            if not retry:
                response: ResponseT = await call(req, metadata=headers, timeout=seconds)
                return response
            async for attempt in retrying(self.config.retry_config):
                with attempt:
                    response = await call(req, metadata=headers, timeout=seconds)
            return response
        except grpc.aio.AioRpcError as error:
            raise _rpc_error(error) from error

    def _callable(self, method: RpcMethod) -> UnaryUnaryMultiCallable[Any, Any]:
        channel = self._channels.current()
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


def _default_timeout(method: RpcMethod, req: Message) -> float:
    if (method.service, method.rpc) in LONG_POLL_RPCS or (
        method.rpc == "get_workflow_execution_history" and getattr(req, "wait_new_event", False)
    ):
        return DEFAULT_LONG_POLL_TIMEOUT
    return DEFAULT_TIMEOUT


def _rpc_error(error: grpc.aio.AioRpcError) -> RPCError:
    """The RPCError temporalio's built-in client raises for the same failure."""
    details = b""
    for key, value in error.trailing_metadata() or ():
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            details = value
    return RPCError(error.details() or "", RPCStatusCode(error.code().value[0]), details)
