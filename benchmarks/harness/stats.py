"""Summaries of interleaved rounds: medians, quartiles, per-round ratios."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

__all__ = ("iqr", "median", "percentile", "ratios")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def iqr(values: Sequence[float]) -> tuple[float, float]:
    """The first and third quartiles."""
    if len(values) < 2:
        return (values[0], values[0])
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return (q1, q3)


def ratios(mode: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """Per-round ratio mode/baseline (rounds are paired by index)."""
    return [m / b for m, b in zip(mode, baseline, strict=True)]


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile (nearest rank)."""
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[rank]
