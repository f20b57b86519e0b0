"""A graceful channel's options: their defaults, their checks (made once), and the frozen result
that the channel factories, ``wrap()`` and contrib.temporalio share."""

from __future__ import annotations

from typing import Any, Literal

from .._validation import check_seconds
from ._method_filter import MethodFilter, MethodPredicate, compile_method_filter

__all__ = (
    "ADMIT_POLICIES",
    "DEFAULT_ADMIT_DURING_DRAIN",
    "DEFAULT_DRAIN_TIMEOUT",
    "DEFAULT_MAX_AGE_JITTER",
    "OWN_CONNECTION",
    "AdmitPolicy",
    "ChannelOptions",
)

AdmitPolicy = Literal["held", "all", "none"]
"""Which new calls and holds a draining channel admits (``admit_during_drain``): ``"held"`` (the
default) those made from code inside a hold of the channel (a ``with channel.hold()`` block, code
after ``channel.hold()`` in the same task, tasks created from there, a server handler run with
``holds=[channel]``); ``"all"`` every one; ``"none"`` none. A refused one raises
``ChannelClosedError`` with reason ``"draining"``."""
ADMIT_POLICIES: tuple[AdmitPolicy, ...] = ("held", "all", "none")

DEFAULT_DRAIN_TIMEOUT = 30.0
DEFAULT_ADMIT_DURING_DRAIN: AdmitPolicy = "held"
DEFAULT_MAX_AGE_JITTER = 0.1

# grpc shares one connection between channels with the same target and arguments: a rotation's
# channel built without this would land on the very connection it means to leave.
OWN_CONNECTION: tuple[str, Any] = ("grpc.use_local_subchannel_pool", 1)


class ChannelOptions:
    """A channel's options, checked. Make one with ``ChannelOptions.checked()``.

    Immutable. A plain class rather than a frozen dataclass: a dataclass's generated methods
    cost about 0.6 ms of every ``import graceful_grpc.aio``.

    Attributes:
        drain_timeout: Default drain deadline of ``close()`` and grace of ``rotate()``, seconds.
        admit_during_drain: Which new calls and holds a draining channel admits.
        cancel_on_drain: Which methods' calls a drain interrupts as it starts, or None.
        max_age: Seconds between rotations by age, or None.
        max_age_jitter: The relative spread of ``max_age``, in [0, 1).
    """

    __slots__ = (
        "admit_during_drain",
        "cancel_on_drain",
        "drain_timeout",
        "max_age",
        "max_age_jitter",
    )

    drain_timeout: float
    admit_during_drain: AdmitPolicy
    cancel_on_drain: MethodPredicate | None
    max_age: float | None
    max_age_jitter: float

    def __init__(
        self,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
        admit_during_drain: AdmitPolicy = DEFAULT_ADMIT_DURING_DRAIN,
        cancel_on_drain: MethodPredicate | None = None,
        max_age: float | None = None,
        max_age_jitter: float = DEFAULT_MAX_AGE_JITTER,
    ) -> None:
        """Stores the values as given, unchecked: ``checked()`` is the constructor to use."""
        set_ = object.__setattr__
        set_(self, "drain_timeout", drain_timeout)
        set_(self, "admit_during_drain", admit_during_drain)
        set_(self, "cancel_on_drain", cancel_on_drain)
        set_(self, "max_age", max_age)
        set_(self, "max_age_jitter", max_age_jitter)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ChannelOptions is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"ChannelOptions is immutable: cannot delete {name!r}")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, ChannelOptions)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"ChannelOptions({fields})"

    @classmethod
    def checked(
        cls,
        *,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
        admit_during_drain: AdmitPolicy = DEFAULT_ADMIT_DURING_DRAIN,
        cancel_on_drain: MethodFilter | None = None,
        max_age: float | None = None,
        max_age_jitter: float = DEFAULT_MAX_AGE_JITTER,
        has_factory: bool = True,
    ) -> ChannelOptions:
        """The options, checked, with ``cancel_on_drain`` compiled (read once: it may be a
        one-shot iterable).

        Raises:
            ValueError: ``drain_timeout`` negative, NaN or infinite; unknown
                ``admit_during_drain``; a malformed method name in ``cancel_on_drain``;
                ``max_age`` not positive and finite; ``max_age_jitter`` outside [0, 1).
            TypeError: a value of the wrong type; bad ``cancel_on_drain``; ``max_age``
                without a factory (``has_factory`` False).
        """
        if admit_during_drain not in ADMIT_POLICIES:
            raise ValueError(
                f"admit_during_drain must be one of {ADMIT_POLICIES}, got {admit_during_drain!r}"
            )
        seconds = check_seconds(drain_timeout, "drain_timeout")
        check_seconds(max_age_jitter, "max_age_jitter")
        if max_age_jitter >= 1:
            raise ValueError(f"max_age_jitter must be below 1, got {max_age_jitter!r}")
        age = None if max_age is None else check_seconds(max_age, "max_age", positive=True)
        if age is not None and not has_factory:
            raise TypeError(
                "max_age needs a factory to build each new connection: wrap(factory=...)"
            )
        return cls(
            drain_timeout=seconds,
            admit_during_drain=admit_during_drain,
            cancel_on_drain=compile_method_filter(cancel_on_drain, "cancel_on_drain"),
            max_age=age,
            max_age_jitter=float(max_age_jitter),
        )
