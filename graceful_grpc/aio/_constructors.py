"""insecure_channel, secure_channel and wrap: graceful channels made as grpc.aio makes its own."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from grpc import aio

from ._channel import GracefulChannel, new_channel
from ._method_filter import MethodFilter
from ._options import (
    DEFAULT_ADMIT_DURING_DRAIN,
    DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_MAX_AGE_JITTER,
    OWN_CONNECTION,
    AdmitPolicy,
    ChannelOptions,
)

__all__ = ("insecure_channel", "secure_channel", "wrap")


def insecure_channel(
    target: str,
    options: Sequence[tuple[str, Any]] | None = None,
    compression: grpc.Compression | None = None,
    interceptors: Sequence[Any] | None = None,
    *,
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
    admit_during_drain: AdmitPolicy = DEFAULT_ADMIT_DURING_DRAIN,
    cancel_on_drain: MethodFilter | None = None,
    max_age: float | None = None,
    max_age_jitter: float = DEFAULT_MAX_AGE_JITTER,
) -> GracefulChannel:
    """Creates an insecure graceful channel; arguments as ``grpc.aio.insecure_channel``.

    Args:
        target: The server address.
        options: Channel arguments, as grpc.aio.
        compression: The channel's default compression, as grpc.aio.
        interceptors: grpc.aio client interceptors; they run, and their calls are tracked.
        drain_timeout: Default drain deadline of ``close()`` (and ``rotate()``), in seconds.
        admit_during_drain: Which new calls and holds a draining channel admits: ``"held"``
            (from code inside a hold), ``"all"``, or ``"none"``.
        cancel_on_drain: Methods whose calls the drain interrupts as it starts (see
            ``GracefulChannel``).
        max_age: Rotate to a new connection every ``max_age * (1 +- max_age_jitter)`` seconds
            while OPEN; None never rotates by age.
        max_age_jitter: The relative spread of ``max_age``, in [0, 1).

    A rotation builds its grpc channel with these same arguments plus
    ``("grpc.use_local_subchannel_pool", 1)``, so that it gets a connection of its own (a new
    handshake, DNS answer and load-balancer pick) rather than grpc's shared one.

    Raises:
        ValueError: a bad option value, naming the argument.
        TypeError: bad ``cancel_on_drain``.
    """

    def build(rotated: bool) -> aio.Channel:
        return aio.insecure_channel(target, _options(options, rotated), compression, interceptors)

    return _new(
        build,
        drain_timeout=drain_timeout,
        admit_during_drain=admit_during_drain,
        cancel_on_drain=cancel_on_drain,
        max_age=max_age,
        max_age_jitter=max_age_jitter,
    )


def secure_channel(
    target: str,
    credentials: grpc.ChannelCredentials,
    options: Sequence[tuple[str, Any]] | None = None,
    compression: grpc.Compression | None = None,
    interceptors: Sequence[Any] | None = None,
    *,
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
    admit_during_drain: AdmitPolicy = DEFAULT_ADMIT_DURING_DRAIN,
    cancel_on_drain: MethodFilter | None = None,
    max_age: float | None = None,
    max_age_jitter: float = DEFAULT_MAX_AGE_JITTER,
) -> GracefulChannel:
    """Creates a secure graceful channel; arguments as ``grpc.aio.secure_channel`` and
    ``insecure_channel``. To rotate to new credentials, pass a new channel to ``rotate()``."""

    def build(rotated: bool) -> aio.Channel:
        return aio.secure_channel(
            target, credentials, _options(options, rotated), compression, interceptors
        )

    return _new(
        build,
        drain_timeout=drain_timeout,
        admit_during_drain=admit_during_drain,
        cancel_on_drain=cancel_on_drain,
        max_age=max_age,
        max_age_jitter=max_age_jitter,
    )


def wrap(
    channel: aio.Channel,
    *,
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
    admit_during_drain: AdmitPolicy = DEFAULT_ADMIT_DURING_DRAIN,
    cancel_on_drain: MethodFilter | None = None,
    factory: Callable[[], aio.Channel] | None = None,
    max_age: float | None = None,
    max_age_jitter: float = DEFAULT_MAX_AGE_JITTER,
) -> GracefulChannel:
    """Makes an existing grpc.aio channel graceful. The graceful channel takes ownership of it:
    calls must go through the returned channel to be tracked, and closing it closes ``channel``.
    Options as ``GracefulChannel``; ``factory`` builds the channel of each rotation.
    """
    return GracefulChannel(
        channel,
        drain_timeout=drain_timeout,
        admit_during_drain=admit_during_drain,
        cancel_on_drain=cancel_on_drain,
        factory=factory,
        max_age=max_age,
        max_age_jitter=max_age_jitter,
    )


def _options(
    options: Sequence[tuple[str, Any]] | None, rotated: bool
) -> Sequence[tuple[str, Any]] | None:
    if not rotated:
        return options
    return (*(options or ()), OWN_CONNECTION)


def _new(
    build: Callable[[bool], aio.Channel],
    *,
    drain_timeout: float,
    admit_during_drain: AdmitPolicy,
    cancel_on_drain: MethodFilter | None,
    max_age: float | None,
    max_age_jitter: float,
) -> GracefulChannel:
    # Every option is checked, once, before the grpc channel exists: a bad one leaks nothing.
    options = ChannelOptions.checked(
        drain_timeout=drain_timeout,
        admit_during_drain=admit_during_drain,
        cancel_on_drain=cancel_on_drain,
        max_age=max_age,
        max_age_jitter=max_age_jitter,
    )
    return new_channel(build(False), options, functools.partial(build, True))
