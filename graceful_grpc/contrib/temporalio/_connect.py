"""connect(): ``temporalio.client.Client.connect`` with every client RPC on a graceful channel."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Unpack

import temporalio.api.workflowservice.v1 as workflow_service
import temporalio.client
import temporalio.service
from temporalio.service import ConnectConfig, RPCError, ServiceClient

from ...aio._options import DEFAULT_DRAIN_TIMEOUT
from . import _fork
from ._connect_options import ConnectOptions
from ._options import channel_factory
from ._service_client import GracefulServiceClient

__all__ = ("connect",)

_ConnectNext = Callable[[ConnectConfig], Awaitable[ServiceClient]]
_CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(ConnectConfig))
_CONNECT_ARGUMENTS = frozenset(inspect.signature(temporalio.client.Client.connect).parameters)


async def connect(
    target_host: str,
    *,
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
    worker_support: bool = False,
    **options: Unpack[ConnectOptions],
) -> temporalio.client.Client:
    """``temporalio.client.Client.connect`` whose client RPCs run over graceful channels.

    Accepts every argument of the installed temporalio's ``Client.connect`` with the same
    meaning: ``tls=None`` turns TLS on when ``api_key`` is given, ``retry_config``,
    ``keep_alive_config``, ``http_connect_proxy_config``, ``grpc_compression`` and
    ``dns_load_balancing_config`` shape the graceful channel, ``plugins`` run their
    ``configure_client`` and ``connect_service_client`` hooks, ``lazy=False`` (the default)
    checks the connection now. Settings grpc cannot honour (``connect_timeout``,
    ``TLSConfig.verification_server_name``, a target URL) raise ``ValueError`` saying why.

    Args:
        target_host: ``host:port`` of the Temporal frontend.
        drain_timeout: Default drain deadline of the graceful channels' ``close()``, in seconds.
        worker_support: Also connect a temporalio bridge client (with the same config, so
            ``runtime``, ``lazy`` and the rest apply to it), so that
            ``temporalio.worker.Worker(client, ...)`` runs on the returned client. The worker's
            own polls, task completions and heartbeats, and eager workflow starts, use that
            bridge connection; other client calls use the graceful channels.
        **options: The other arguments of ``temporalio.client.Client.connect``, typed by
            ``ConnectOptions`` (so type checkers and IDEs check and complete them).

    Returns:
        The client; ``client.service_client`` is a ``GracefulServiceClient`` (close it last).

    Raises:
        TypeError: an argument ``Client.connect`` does not take.
        ValueError: a setting the graceful channel cannot honour.
        RuntimeError: ``lazy=False`` and the server cannot be reached, or ``rpc_metadata`` is
            invalid ("Failed client connect: ...", as the built-in client).
    """
    given: dict[str, Any] = dict(options)
    unknown = set(given) - _CONNECT_ARGUMENTS - {"target_host"}
    if unknown:
        raise TypeError(f"connect() got unexpected keyword arguments: {sorted(unknown)}")
    config = ConnectConfig(
        target_host=target_host,
        **{k: v for k, v in given.items() if k in _CONFIG_FIELDS and k != "identity"},
        identity=given.get("identity") or "",
    )
    client_options = {k: v for k, v in given.items() if k not in _CONFIG_FIELDS}
    plugins = client_options.get("plugins", [])

    async def connect_graceful(config: ConnectConfig) -> ServiceClient:
        return await _connect_service_client(config, drain_timeout, worker_support)

    next_function: _ConnectNext = connect_graceful
    for plugin in reversed(plugins):
        next_function = _chained(plugin, next_function)
    service_client = await next_function(config)
    return temporalio.client.Client(service_client, **client_options)


def _chained(plugin: Any, next_function: _ConnectNext) -> _ConnectNext:
    async def connect_through_plugin(config: ConnectConfig) -> ServiceClient:
        service_client: ServiceClient = await plugin.connect_service_client(config, next_function)
        return service_client

    return connect_through_plugin


async def _connect_service_client(
    config: ConnectConfig, drain_timeout: float, worker_support: bool
) -> GracefulServiceClient:
    factory = channel_factory(config, drain_timeout)
    try:
        worker_client = None
        if worker_support:
            worker_client = await ServiceClient.connect(config)
            _fork.warn()
        service_client = GracefulServiceClient(config, factory, worker_service_client=worker_client)
    except ValueError as error:  # invalid rpc_metadata, as the built-in client reports it
        raise RuntimeError(f"Failed client connect: Invalid headers: {error}") from error
    if not config.lazy:
        try:
            await service_client.workflow_service.get_system_info(
                workflow_service.GetSystemInfoRequest(), retry=True
            )
        except RPCError as error:
            await service_client.close(grace=0)
            raise RuntimeError(f"Failed client connect: {error}") from error
    return service_client
