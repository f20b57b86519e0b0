"""Selects the Counter implementation: C when built and allowed, else the Python twin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ._compat import USE_EXTENSIONS

COUNTER_IMPLEMENTATION: Literal["c", "python"]

if TYPE_CHECKING or not USE_EXTENSIONS:
    from ._counter_py import Counter

    COUNTER_IMPLEMENTATION = "python"
else:
    try:
        from ._counter import Counter

        COUNTER_IMPLEMENTATION = "c"
    except ImportError:  # not built: no compiler at install time
        from ._counter_py import Counter

        COUNTER_IMPLEMENTATION = "python"

__all__ = ("COUNTER_IMPLEMENTATION", "Counter")
