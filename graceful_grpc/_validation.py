"""Argument checks shared by the public API."""

from __future__ import annotations

import math

__all__ = ("check_seconds",)


def check_seconds(value: float, name: str, *, positive: bool = False) -> float:
    """Returns ``value`` as a float if it is a finite, non-negative (or positive) number of seconds.

    Raises:
        TypeError: ``value`` is not a real number.
        ValueError: ``value`` is NaN, infinite, negative, or zero when ``positive``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    try:
        seconds = float(value)
    except OverflowError:  # an int too large for a float, e.g. 10**400
        raise ValueError(f"{name} must be finite, got {value!r}") from None
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if seconds < 0 or (positive and seconds == 0):
        bound = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return seconds
