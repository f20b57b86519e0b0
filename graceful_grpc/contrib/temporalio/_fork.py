"""grpc's fork handlers and workers that fork (sync activities in a fork-context process pool).

grpc's core registers ``pthread_atfork`` handlers unless ``GRPC_ENABLE_FORK_SUPPORT`` is false when
grpc's extension module is imported (``import grpc``; ``import temporalio.client`` imports it
too). Those handlers do not support grpc.aio: a fork while the channel's poller thread is inside
grpc logs "Other threads are currently calling into gRPC, skipping fork() handlers" and the child
can crash (``BrokenProcessPool``). temporalio's built-in client does not use grpc, so it is not
affected. Setting the variable later in the process has no effect, so the integration cannot fix it
for the user; it warns instead.
"""

from __future__ import annotations

import os
import warnings

__all__ = ("FORK_SUPPORT_VARIABLE", "GrpcForkSupportWarning", "fork_support_disabled", "warn")

FORK_SUPPORT_VARIABLE = "GRPC_ENABLE_FORK_SUPPORT"
_FALSE = frozenset({"false", "0"})


class GrpcForkSupportWarning(RuntimeWarning):
    """grpc's fork handlers are enabled in a process that runs a worker on a graceful channel."""


def fork_support_disabled() -> bool:
    """Whether ``GRPC_ENABLE_FORK_SUPPORT`` is set to a false value (``false`` or ``0``)."""
    return os.environ.get(FORK_SUPPORT_VARIABLE, "").strip().lower() in _FALSE


def warn() -> None:
    """Warns, unless grpc's fork support is disabled, that forking workers can crash."""
    if fork_support_disabled():
        return
    warnings.warn(
        f"grpc's fork handlers are enabled: a worker that forks while the graceful channel is "
        f"in use (e.g. sync activities in a fork-context ProcessPoolExecutor) can lose its "
        f"child processes (BrokenProcessPool). Set {FORK_SUPPORT_VARIABLE}=false in the "
        f"environment before the process starts (grpc reads it when it is imported).",
        GrpcForkSupportWarning,
        stacklevel=3,
    )
