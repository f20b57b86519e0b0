"""temporalio's ``ConnectConfig`` translated to a graceful grpc.aio channel with the same meaning.

Settings grpc cannot express with the same meaning are refused with ``ValueError`` saying why,
rather than silently ignored.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from temporalio.service import ConnectConfig, TLSConfig

from ...aio import GracefulChannel
from ...aio._channel import new_channel
from ...aio._options import OWN_CONNECTION, ChannelOptions
from ._methods import long_poll_paths

__all__ = (
    "MAX_MESSAGE_BYTES",
    "channel_factory",
    "channel_options",
    "rotation_factory",
    "uses_tls",
)

MAX_MESSAGE_BYTES = 128 * 1024 * 1024
"""Message size limit of the built-in client (grpc.aio's default receive limit is 4 MiB)."""

_KEEPALIVE_MS = (30_000, 15_000)


def channel_options() -> list[tuple[str, Any]]:
    """grpc channel arguments matching the built-in client's limits and default keepalive."""
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", _KEEPALIVE_MS[0]),
        ("grpc.keepalive_timeout_ms", _KEEPALIVE_MS[1]),
    ]


def uses_tls(config: ConnectConfig) -> bool:
    """Whether the built-in client would use TLS: ``tls=None`` means on when an API key is set."""
    if config.tls is None:
        return config.api_key is not None
    return bool(config.tls)


def channel_factory(config: ConnectConfig, drain_timeout: float) -> Callable[[], GracefulChannel]:
    """A function creating graceful channels as ``config`` describes (one per event loop).

    The channels interrupt long polls as their drain starts (``cancel_on_drain``): a poll waits
    for work that may never come, and would hold the drain to its deadline.

    Raises:
        ValueError: a setting grpc cannot honour with temporalio's meaning, or a bad
            ``drain_timeout``.
    """
    options = ChannelOptions.checked(drain_timeout=drain_timeout, cancel_on_drain=long_poll_paths())
    return functools.partial(_Recipe.of(config).graceful, options)


def rotation_factory(config: ConnectConfig) -> Callable[[], grpc.aio.Channel]:
    """A function creating the grpc channel a graceful channel rotates to, as ``config``
    describes, with a connection of its own (not grpc's shared one for the same target).

    Raises:
        ValueError: a setting grpc cannot honour with temporalio's meaning.
    """
    return _Recipe.of(config).raw


@dataclass(frozen=True)
class _Recipe:
    """The grpc channel arguments ``ConnectConfig`` stands for."""

    target: str
    credentials: grpc.ChannelCredentials | None  # None: insecure
    options: tuple[tuple[str, Any], ...]
    compression: grpc.Compression

    @classmethod
    def of(cls, config: ConnectConfig) -> _Recipe:
        if "://" in config.target_host:
            raise ValueError(
                f"target {config.target_host!r}: give host:port; a URL scheme is not supported"
            )
        options = [*channel_options()[:2], *_keepalive(config), *_proxy_and_balancing(config)]
        credentials = None
        if uses_tls(config):
            tls = config.tls if isinstance(config.tls, TLSConfig) else TLSConfig()
            credentials, tls_options = _credentials(tls)
            options += tls_options
        return cls(config.target_host, credentials, tuple(options), _compression(config))

    def graceful(self, options: ChannelOptions) -> GracefulChannel:
        """A graceful channel with ``options`` (checked once, shared by every loop's channel);
        its rotations build their grpc channels with ``raw()``."""
        return new_channel(self._build(self.options), options, self.raw)

    def raw(self) -> grpc.aio.Channel:
        """A grpc channel with a connection of its own (for a rotation)."""
        return self._build((*self.options, OWN_CONNECTION))

    def _build(self, options: tuple[tuple[str, Any], ...]) -> grpc.aio.Channel:
        if self.credentials is None:
            return grpc.aio.insecure_channel(self.target, options, self.compression)
        return grpc.aio.secure_channel(self.target, self.credentials, options, self.compression)


def _keepalive(config: ConnectConfig) -> list[tuple[str, Any]]:
    keep_alive = config.keep_alive_config
    if keep_alive is None:  # None disables keepalive pings, as in the built-in client
        return []
    return [
        ("grpc.keepalive_time_ms", keep_alive.interval_millis),
        ("grpc.keepalive_timeout_ms", keep_alive.timeout_millis),
    ]


def _proxy_and_balancing(config: ConnectConfig) -> list[tuple[str, Any]]:
    if getattr(config, "connect_timeout", None) is not None:
        raise ValueError(
            "connect_timeout is not supported by the graceful channel: grpc has no per-attempt "
            "TCP connect timeout (it bounds each attempt by its own reconnect backoff, 20 s at "
            "least); leave it unset or use temporalio.client.Client.connect"
        )
    proxy = config.http_connect_proxy_config
    if proxy is not None:
        # grpc sends "Proxy-Authorization: Basic ..." for credentials in the proxy URL; as in the
        # built-in client, DNS load balancing does not apply through a proxy.
        auth = f"{proxy.basic_auth[0]}:{proxy.basic_auth[1]}@" if proxy.basic_auth else ""
        return [("grpc.http_proxy", f"http://{auth}{proxy.target_host}")]
    options: list[tuple[str, Any]] = [("grpc.enable_http_proxy", 0)]  # no proxy from the env
    balancing = getattr(config, "dns_load_balancing_config", None)
    if balancing is not None:
        options += [
            ("grpc.lb_policy_name", "round_robin"),
            ("grpc.dns_min_time_between_resolutions_ms", balancing.resolution_interval_millis),
        ]
    return options


def _compression(config: ConnectConfig) -> grpc.Compression:
    setting = getattr(config, "grpc_compression", None)
    if setting is None:  # temporalio before GrpcCompression existed: uncompressed
        return grpc.Compression.NoCompression
    from temporalio.service import GrpcCompression

    if setting is GrpcCompression.NONE:
        return grpc.Compression.NoCompression
    return grpc.Compression.Gzip


def _credentials(tls: TLSConfig) -> tuple[grpc.ChannelCredentials, list[tuple[str, Any]]]:
    if getattr(tls, "verification_server_name", None):
        raise ValueError(
            "TLSConfig.verification_server_name is not supported by the graceful channel: grpc "
            "verifies the certificate against the name it sends as SNI (set TLSConfig.domain)"
        )
    credentials = grpc.ssl_channel_credentials(  # type: ignore[no-untyped-call]
        root_certificates=tls.server_root_ca_cert,
        private_key=tls.client_private_key,
        certificate_chain=tls.client_cert,
    )
    if not tls.domain:
        return credentials, []
    return credentials, [
        ("grpc.ssl_target_name_override", tls.domain),
        ("grpc.default_authority", tls.domain),
    ]
