"""The built-in Temporal client's retry policy, as tenacity policy objects.

Measured with temporalio 1.35's Core against a local fake server that fails every call with a
chosen status and records when each attempt arrives: retryable codes are
UNKNOWN, RESOURCE_EXHAUSTED, ABORTED, OUT_OF_RANGE, INTERNAL, UNAVAILABLE and DATA_LOSS; the
backoff Core uses when no retry config is given starts at 100 ms, grows x1.7 with +-20% jitter, is
capped at 5 s per wait, 10 s in all and 10 attempts; RESOURCE_EXHAUSTED waits at least a throttle
backoff of 1 s, doubling, capped at 10 s. (``temporalio.service.RetryConfig()``'s own dataclass
default multiplier, 1.5, applies only when such a config is passed explicitly.)
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import grpc
import tenacity
from temporalio.service import RetryConfig
from tenacity import RetryCallState

from ...errors import ChannelClosedError

__all__ = ("RETRYABLE_CODES", "TemporalBackoff", "retrying", "should_retry")

RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


def should_retry(error: BaseException) -> bool:
    """Retry gRPC failures with a retryable code, never a call the closed channel refused."""
    if isinstance(error, ChannelClosedError):
        return False
    return isinstance(error, grpc.aio.AioRpcError) and error.code() in RETRYABLE_CODES


@dataclass(frozen=True)
class TemporalBackoff(tenacity.wait.wait_base):
    """Exponential backoff with proportional jitter, and a floor for RESOURCE_EXHAUSTED."""

    initial: float = 0.1
    multiplier: float = 1.7
    randomization: float = 0.2
    max_interval: float = 5.0
    throttle_initial: float = 1.0
    throttle_max: float = 10.0

    def __call__(self, retry_state: RetryCallState) -> float:
        attempt = retry_state.attempt_number  # the attempt that just failed, from 1
        base = min(self.initial * self.multiplier ** (attempt - 1), self.max_interval)
        wait = base * random.uniform(1 - self.randomization, 1 + self.randomization)
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if (
            isinstance(error, grpc.aio.AioRpcError)
            and error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        ):
            wait = max(wait, min(self.throttle_initial * 2 ** (attempt - 1), self.throttle_max))
        return wait


def retrying(config: RetryConfig | None = None) -> tenacity.AsyncRetrying:
    """A fresh AsyncRetrying with the built-in client's policy, or ``config``'s when given."""
    elapsed: float | None
    if config is None:
        backoff, attempts, elapsed = TemporalBackoff(), 10, 10.0
    else:
        backoff = TemporalBackoff(
            initial=config.initial_interval_millis / 1000,
            multiplier=config.multiplier,
            randomization=config.randomization_factor,
            max_interval=config.max_interval_millis / 1000,
        )
        attempts = config.max_retries
        elapsed_ms = config.max_elapsed_time_millis
        elapsed = None if elapsed_ms is None else elapsed_ms / 1000
    stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(attempts)
    if elapsed is not None:
        stop = stop | tenacity.stop_after_delay(elapsed)
    return tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception(should_retry),
        wait=backoff,
        stop=stop,
        reraise=True,
    )
