"""GracefulServiceClient: temporalio's ServiceClient with every client RPC on a GracefulChannel."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, TypeVar

import google.protobuf.message
import grpc
import temporalio
import temporalio.service
from temporalio.service import ConnectConfig, RPCError, RPCStatusCode, ServiceClient

from ...aio import GracefulChannel, UnaryUnaryMultiCallable
from ._methods import LONG_POLL_RPCS, RpcMethod, method_table
from ._retry import retrying

__all__ = ("DEFAULT_LONG_POLL_TIMEOUT", "DEFAULT_TIMEOUT", "GracefulServiceClient")

ResponseT = TypeVar("ResponseT", bound=google.protobuf.message.Message)

DEFAULT_TIMEOUT = 30.0
"""Seconds a call may take when the caller gives no timeout (as the built-in client)."""
DEFAULT_LONG_POLL_TIMEOUT = 70.0
"""The same, for long polls."""
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


class GracefulServiceClient(ServiceClient):
    """A ``temporalio.service.ServiceClient`` whose RPCs run over a ``GracefulChannel``.

    Pass it to ``temporalio.client.Client(service_client, namespace=...)``, or use
    ``graceful_grpc.contrib.temporalio.connect``. Errors, headers, default timeouts and retries
    match temporalio's built-in client; a call the closing channel refuses or aborts surfaces as
    ``RPCError`` (UNAVAILABLE / CANCELLED), never as a bare ``UsageError`` or ``CancelledError``.

    Args:
        config: The connection settings; ``identity``, ``rpc_metadata`` and ``api_key`` are used.
        channel: The graceful channel to the frontend. This client owns it from now on.
        worker_service_client: A connected temporalio bridge client, needed only to run
            ``temporalio.worker.Worker`` on a ``Client`` built from this service client. The
            worker's polls, task completions and heartbeats use that bridge connection, not the
            graceful channel.

    Attributes:
        channel: The graceful channel; hold it (``channel.hold()``) around work whose result must
            still be reported during shutdown, and close it last.
    """

    def __init__(
        self,
        config: ConnectConfig,
        channel: GracefulChannel,
        *,
        worker_service_client: temporalio.service.ServiceClient | None = None,
    ) -> None:
        super().__init__(config)
        self.channel = channel
        self._worker_service_client = worker_service_client
        self._rpc_metadata: dict[str, str | bytes] = dict(config.rpc_metadata)
        self._api_key = config.api_key
        self._methods = method_table()
        self._callables: dict[tuple[str, str], UnaryUnaryMultiCallable[Any, Any]] = {}

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
        """Replaces the headers sent with every later call (and the worker client's)."""
        self._rpc_metadata = dict(metadata)
        if self._worker_service_client is not None:
            self._worker_service_client.update_rpc_metadata(metadata)

    def update_api_key(self, api_key: str | None) -> None:
        """Replaces the API key sent with every later call (and the worker client's)."""
        self._api_key = api_key
        if self._worker_service_client is not None:
            self._worker_service_client.update_api_key(api_key)

    async def _rpc_call(
        self,
        rpc: str,
        req: google.protobuf.message.Message,
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
        call = self._callable(method)
        headers = self._headers(req, metadata)
        seconds = timeout.total_seconds() if timeout is not None else _default_timeout(method, req)
        try:
            if not retry:
                response: ResponseT = await call(req, metadata=headers, timeout=seconds)
                return response
            async for attempt in retrying():
                with attempt:
                    response = await call(req, metadata=headers, timeout=seconds)
            return response
        except grpc.aio.AioRpcError as error:
            raise _rpc_error(error) from error

    def _callable(self, method: RpcMethod) -> UnaryUnaryMultiCallable[Any, Any]:
        key = (method.service, method.rpc)
        callable_ = self._callables.get(key)
        if callable_ is None:
            callable_ = self._callables[key] = self.channel.unary_unary(
                method.path,
                request_serializer=method.request_serializer,
                response_deserializer=method.response_deserializer,
                _registered_method=True,
            )
        return callable_

    def _headers(
        self, req: google.protobuf.message.Message, metadata: Mapping[str, str | bytes]
    ) -> tuple[tuple[str, str | bytes], ...]:
        headers: dict[str, str | bytes] = {
            "client-name": "temporal-python",
            "client-version": temporalio.__version__,
        }
        namespace = getattr(req, "namespace", None)
        if isinstance(namespace, str) and namespace:
            headers["temporal-namespace"] = namespace
        for key, value in (*self._rpc_metadata.items(), *metadata.items()):
            headers[key.lower()] = value
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        return tuple(headers.items())


def _default_timeout(method: RpcMethod, req: google.protobuf.message.Message) -> float:
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
