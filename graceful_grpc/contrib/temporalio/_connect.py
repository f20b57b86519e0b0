"""connect(): a temporalio Client whose RPCs run over a graceful channel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
import temporalio.client
import temporalio.service
from temporalio.service import ConnectConfig, TLSConfig

from ... import aio
from ._service_client import GracefulServiceClient

__all__ = ("MAX_MESSAGE_BYTES", "channel_options", "connect")

MAX_MESSAGE_BYTES = 128 * 1024 * 1024
"""Message size limit of the built-in client (grpc.aio's default receive limit is 4 MiB)."""


def channel_options() -> list[tuple[str, Any]]:
    """grpc channel arguments matching the built-in client's limits and keepalive."""
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 15_000),
    ]


def _credentials(tls: TLSConfig | bool) -> tuple[grpc.ChannelCredentials, list[tuple[str, Any]]]:
    if isinstance(tls, TLSConfig):
        credentials = grpc.ssl_channel_credentials(  # type: ignore[no-untyped-call]
            root_certificates=tls.server_root_ca_cert,
            private_key=tls.client_private_key,
            certificate_chain=tls.client_cert,
        )
        override = [("grpc.ssl_target_name_override", tls.domain)] if tls.domain else []
        return credentials, override
    return grpc.ssl_channel_credentials(), []  # type: ignore[no-untyped-call]


async def connect(
    target: str,
    *,
    namespace: str = "default",
    drain_timeout: float = 30.0,
    tls: bool | TLSConfig = False,
    api_key: str | None = None,
    rpc_metadata: Mapping[str, str | bytes] | None = None,
    identity: str | None = None,
    worker_support: bool = False,
    **client_options: Any,
) -> temporalio.client.Client:
    """Connects a temporalio Client whose every client RPC runs over a ``GracefulChannel``.

    Args:
        target: ``host:port`` of the Temporal frontend.
        namespace: The client's namespace.
        drain_timeout: Default drain deadline of the channel's ``close()``, in seconds.
        tls: False for plaintext, True for TLS with system roots, or a ``TLSConfig``.
        api_key: Sent as ``authorization: Bearer <api_key>``.
        rpc_metadata: Headers sent with every call.
        identity: The client identity (temporalio's default when None).
        worker_support: Also connect a temporalio bridge client, so that
            ``temporalio.worker.Worker(client, ...)`` runs on the returned client. The worker's
            own polls, task completions and heartbeats then use that bridge connection; client
            calls (starting workflows, async activity completion, ``activity.client()``) use the
            graceful channel.
        **client_options: Passed to ``temporalio.client.Client`` (data_converter, interceptors,
            ...).

    Returns:
        The client; ``client.service_client.channel`` is the graceful channel to close last.
    """
    config = ConnectConfig(
        target_host=target,
        api_key=api_key,
        tls=tls,
        rpc_metadata=dict(rpc_metadata or {}),
        identity=identity or "",
    )
    options = channel_options()
    if tls:
        credentials, extra = _credentials(tls)
        channel = aio.secure_channel(
            target, credentials, options + extra, drain_timeout=drain_timeout
        )
    else:
        channel = aio.insecure_channel(target, options, drain_timeout=drain_timeout)
    worker_client = None
    try:
        if worker_support:
            worker_client = await temporalio.service.ServiceClient.connect(config)
        service_client = GracefulServiceClient(config, channel, worker_service_client=worker_client)
        return temporalio.client.Client(service_client, namespace=namespace, **client_options)
    except BaseException:
        await channel.close(grace=0)
        raise
