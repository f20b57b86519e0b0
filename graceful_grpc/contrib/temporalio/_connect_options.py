"""ConnectOptions: the keyword arguments of ``temporalio.client.Client.connect``, typed, so that
``connect(target, **options)`` is checked and completed as ``Client.connect`` is.

The annotations are only read by type checkers (temporalio's types are imported for them alone),
so the class costs nothing at run time and works on every supported temporalio, whose releases
differ in a few keywords: what the installed one does not take is refused at run time by
``connect()`` (``TypeError``), as ``Client.connect`` would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    import temporalio.common
    import temporalio.converter
    import temporalio.runtime
    import temporalio.service
    from temporalio.client import Interceptor, Plugin
    from temporalio.common import HeaderCodecBehavior
    from temporalio.service import (
        DnsLoadBalancingConfig,
        GrpcCompression,
        HttpConnectProxyConfig,
        KeepAliveConfig,
        RetryConfig,
        TLSConfig,
    )

__all__ = ("NEWER_KEYWORDS", "ConnectOptions")

NEWER_KEYWORDS = frozenset({"connect_timeout", "payload_limits"})
"""Keywords of ``ConnectOptions`` that temporalio 1.30, the oldest supported, does not take
(later releases added them)."""


class ConnectOptions(TypedDict, total=False):
    """The keyword arguments of ``temporalio.client.Client.connect`` (temporalio 1.35), each with
    the same type and meaning; all optional.

    ``graceful_grpc.contrib.temporalio.connect(target, **options)`` takes them (see there for
    the few the graceful channel cannot honour). ``connect_timeout`` and ``payload_limits``
    (``NEWER_KEYWORDS``) are not in temporalio 1.30: where the installed temporalio lacks one,
    ``connect()`` refuses it at run time (``TypeError``).
    """

    namespace: str
    api_key: str | None
    data_converter: temporalio.converter.DataConverter
    plugins: Sequence[Plugin]
    interceptors: Sequence[Interceptor]
    default_workflow_query_reject_condition: temporalio.common.QueryRejectCondition | None
    tls: bool | TLSConfig | None
    retry_config: RetryConfig | None
    keep_alive_config: KeepAliveConfig | None
    connect_timeout: timedelta | None
    rpc_metadata: Mapping[str, str | bytes]
    identity: str | None
    lazy: bool
    runtime: temporalio.runtime.Runtime | None
    http_connect_proxy_config: HttpConnectProxyConfig | None
    dns_load_balancing_config: DnsLoadBalancingConfig | None
    grpc_compression: GrpcCompression
    # Not in temporalio 1.30 (a mypy run against it types payload_limits as Any).
    payload_limits: temporalio.service.PayloadLimitsConfig  # type: ignore[name-defined,unused-ignore]
    header_codec_behavior: HeaderCodecBehavior
