"""GracefulChannel: a drop-in grpc.aio channel that is reference-counted and drains on close.

A facade: every decision is the shared ``Connection``'s; the channel checks arguments and forwards.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from operator import methodcaller
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import grpc
from grpc import aio

from .._validation import check_seconds
from ..errors import ChannelClosedError
from ..state import ChannelState
from ._call_factory import announce_call_path
from ._connection import CallSite, Connection, Handle
from ._hold import Hold
from ._method_filter import MethodFilter
from ._multicallable import (
    StreamStreamMultiCallable,
    StreamUnaryMultiCallable,
    UnaryStreamMultiCallable,
    UnaryUnaryMultiCallable,
)
from ._options import (
    DEFAULT_ADMIT_DURING_DRAIN,
    DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_MAX_AGE_JITTER,
    AdmitPolicy,
    ChannelOptions,
)

if TYPE_CHECKING:
    from ..report import CallKind, DrainReport

__all__ = ("GracefulChannel", "new_channel")

CallT = TypeVar("CallT")


class GracefulChannel(aio.Channel):
    """A grpc.aio channel that refuses to really close while work is outstanding.

    A handle on a shared connection. The connection stays OPEN while any handle (see ``share()``)
    is open; closing the last one drains it: calls in flight and holds are awaited, new calls are
    admitted per ``admit_during_drain``, and at the drain deadline whatever remains is cancelled
    (its callers get ``DrainTimeoutError``). ``async with channel:`` exits through ``close()``, so
    it drains too - unlike grpc.aio, whose ``__aexit__`` cancels every call.

    Create one with ``insecure_channel``, ``secure_channel`` or ``wrap``.
    """

    _handle: Handle

    def __init__(
        self,
        channel: aio.Channel,
        *,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
        admit_during_drain: AdmitPolicy = DEFAULT_ADMIT_DURING_DRAIN,
        cancel_on_drain: MethodFilter | None = None,
        factory: Callable[[], aio.Channel] | None = None,
        max_age: float | None = None,
        max_age_jitter: float = DEFAULT_MAX_AGE_JITTER,
    ) -> None:
        """Wraps ``channel``, which it then owns (closing the last handle closes it).

        Args:
            channel: The grpc.aio channel.
            drain_timeout: Default drain deadline of ``close()``, in seconds.
            admit_during_drain: Which new calls and holds a draining channel admits: ``"held"``
                (from code inside a hold), ``"all"``, or ``"none"``.
            cancel_on_drain: Methods whose calls never end by themselves (watches, long polls):
                full method names (``"/pkg.Service/Method"``) and/or predicates on the method
                name, or one predicate. Their calls are interrupted the moment the drain starts;
                their callers get ``ChannelClosedError``, and the report lists them as
                ``interrupted``.
            factory: Builds the grpc channel a rotation moves to (``rotate()`` without
                ``new_channel``, and ``max_age``). It should not share its connection with
                ``channel`` (grpc shares one TCP connection between channels made with the same
                target and options): e.g. pass ``("grpc.use_local_subchannel_pool", 1)``. Each
                call must return a new grpc.aio channel: a rotation refuses anything else
                (``TypeError``, or ``ValueError`` for a channel already in use) and stays on
                its connection; under ``max_age`` the refusal is logged.
            max_age: Rotate every ``max_age * (1 +- max_age_jitter)`` seconds while OPEN (needs a
                factory); None never rotates by age. The timer does not keep the channel alive:
                one dropped without ``close()`` is collected and stops rotating.
            max_age_jitter: The relative spread of ``max_age``, in [0, 1).

        Raises:
            TypeError: ``channel`` is not a grpc.aio channel, or is already a GracefulChannel
                (share() it instead: wrapping would drain twice, one drain inside the other);
                ``factory`` is not callable.
            ValueError: ``drain_timeout`` negative, NaN or infinite; unknown ``admit_during_drain``;
                a malformed method name in ``cancel_on_drain``; ``max_age`` not positive and
                finite; ``max_age_jitter`` outside [0, 1).
        """
        options = ChannelOptions.checked(
            drain_timeout=drain_timeout,
            admit_during_drain=admit_during_drain,
            cancel_on_drain=cancel_on_drain,
            max_age=max_age,
            max_age_jitter=max_age_jitter,
            has_factory=factory is not None,
        )
        self._open(channel, options, factory)

    def _open(
        self,
        channel: aio.Channel,
        options: ChannelOptions,
        factory: Callable[[], aio.Channel] | None,
    ) -> None:
        if isinstance(channel, GracefulChannel):
            raise TypeError(
                "channel is already a GracefulChannel; use its share() for another handle"
            )
        _check_grpc_channel(channel, "channel")
        checked = None if factory is None else _checked_factory(factory)
        self._handle = Handle(Connection(channel, options, checked))
        announce_call_path()

    # -- reference counting --------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """RPCs of all four kinds started on the connection and not yet at a final status."""
        return self._handle.connection.in_flight.value

    @property
    def holds(self) -> int:
        """Outstanding holds on the connection."""
        return self._handle.connection.holds.count.value

    @property
    def state(self) -> ChannelState:
        """The connection's state (shared by every handle)."""
        return self._handle.connection.state

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called on this handle."""
        return self._handle.closed

    @property
    def drain_timeout(self) -> float:
        """The default drain deadline of ``close()``, in seconds."""
        return self._handle.connection.options.drain_timeout

    @property
    def connections(self) -> int:
        """grpc connections open: the current one and old ones still draining after rotations."""
        return self._handle.connection.connections

    @property
    def rotations(self) -> int:
        """Rotations so far (``rotate()`` and ``max_age``)."""
        return self._handle.connection.rotations

    @property
    def _loop(self) -> asyncio.AbstractEventLoop:
        # grpc.aio channels have this attribute; grpc's own tests and some libraries read it.
        return self._handle.connection.raw._loop  # type: ignore[attr-defined,no-any-return]

    async def wait_idle(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 - API
        """Waits until no call is in flight and no hold is outstanding on the connection.

        Args:
            timeout: Seconds to wait at most; None waits indefinitely.

        Returns:
            True if idle, False if the timeout passed first.

        Raises:
            ValueError: ``timeout`` negative, NaN or infinite.
        """
        return await self._handle.connection.idle.wait_for(timeout)

    def add_drain_listener(self, listener: Callable[[DrainReport], object]) -> None:
        """Calls ``listener(report)`` once each time a drain finishes: the channel's own drain
        (``close()``), and the drain of each old connection after a rotation.

        Each grpc connection's drain is reported once, so that every call is counted once:
        when old connections are still draining as ``close()`` runs, the close's listeners get
        the report of the connection current at the close (the old connections' calls are in
        their rotations' reports), while ``close()`` returns the report covering them all.

        Listeners belong to the connection, so every handle shares them. They run on the event
        loop right after the drain, before ``close()`` (or ``rotate()``) returns; an exception from
        one (any short of KeyboardInterrupt and SystemExit, CancelledError included) is logged on
        logger ``graceful_grpc`` and never raised. Keep them quick.

        Raises:
            TypeError: ``listener`` is not callable.
            ValueError: ``listener`` (or one equal to it) is already added.
        """
        self._handle.connection.drain_listeners.add(listener)

    def remove_drain_listener(self, listener: Callable[[DrainReport], object]) -> None:
        """Removes a listener added with ``add_drain_listener``.

        Raises:
            ValueError: ``listener`` was not added.
        """
        self._handle.connection.drain_listeners.remove(listener)

    def add_rotation_listener(self, listener: Callable[[int], object]) -> None:
        """Calls ``listener(rotations)`` at each rotation (``rotate()`` or ``max_age``), as new
        calls move to the new connection; ``rotations`` counts them so far. Shared by every
        handle; exceptions are logged, never raised (as drain listeners').

        Raises:
            TypeError: ``listener`` is not callable.
            ValueError: ``listener`` (or one equal to it) is already added.
        """
        self._handle.connection.rotation_listeners.add(listener)

    def remove_rotation_listener(self, listener: Callable[[int], object]) -> None:
        """Removes a listener added with ``add_rotation_listener``.

        Raises:
            ValueError: ``listener`` was not added.
        """
        self._handle.connection.rotation_listeners.remove(listener)

    def cancel_on_drain(self, call: CallT) -> CallT:
        """Marks a call already started as cancel-on-drain, and returns it.

        For methods that are long only with some requests:
        ``call = channel.cancel_on_drain(stub.Watch(request))``. The call is interrupted when the
        drain starts (at once if it has): its callers get ``ChannelClosedError``.

        Raises:
            TypeError: ``call`` is not a grpc.aio call.
            ValueError: ``call`` was not started on this channel's connection.
        """
        self._handle.connection.mark_cancel_on_drain(call)
        return call

    async def wait_draining(self) -> None:
        """Returns when the drain starts (at once if it has started).

        Cooperative code can then wind a stream down itself (half-close, finish the current
        message) and end within the drain; ``state`` is DRAINING by then.
        """
        await self._handle.connection.wait_draining()

    def hold(self) -> Hold:
        """Takes a hold: the connection stays open for a unit of work until it is released.

        Keep the hold referenced until the work is done (``with channel.hold():`` does): one that
        is garbage-collected unreleased is released then, with a ``ResourceWarning`` at the line
        that took it. One still out at the drain deadline is abandoned, and the drain's log names
        where it was taken (``Hold.taken_at``; the whole stack with
        ``GRACEFUL_GRPC_DEBUG_HOLDS=1`` or asyncio's debug mode).

        Raises:
            ChannelClosedError: the channel is closed, or this handle is closed or draining and
                ``admit_during_drain`` refuses new work from here.
        """
        return self._handle.connection.hold(self._handle, sys._getframe(1))

    def share(self) -> Self:
        """Returns a new handle on the same connection, for another owner to close.

        The handle is of this handle's class.

        Raises:
            ChannelClosedError: this handle is closed.
        """
        if self._handle.closed:
            raise ChannelClosedError("cannot share a closed graceful_grpc channel handle", "closed")
        handle = type(self).__new__(type(self))
        handle._handle = Handle(self._handle.connection)
        return handle

    async def rotate(
        self, new_channel: aio.Channel | None = None, *, grace: float | None = None
    ) -> DrainReport:
        """Moves the channel to a new connection; the old one drains on its own and closes.

        From the moment of the call (before it first suspends), every new call on every handle
        goes to the new connection. Calls in flight finish on the old one, which closes as soon
        as none is left, or at ``grace``, when its remaining calls are aborted with
        ``DrainTimeoutError`` exactly as by ``close()``. Holds belong to the channel and carry
        over. Rotations may overlap; each old connection drains on its own. ``close()`` drains
        old connections too, under its own deadline.

        Args:
            new_channel: The grpc.aio channel to move to, which the graceful channel then owns
                (e.g. built with new credentials); None builds one with the channel's factory
                (``insecure_channel``/``secure_channel`` arguments, or ``wrap(factory=...)``).
            grace: Seconds the old connection may drain; None means ``drain_timeout``.

        Returns:
            The old connection's DrainReport (``abandoned_holds`` is always 0: holds carry over).
            If the awaiting task is cancelled, the old connection still drains to its deadline.
            A ``close()`` meanwhile brings that deadline forward to its own when sooner; calls it
            then aborts are listed both here and in the close's report.

        Raises:
            ChannelClosedError: the channel is DRAINING or CLOSED, or this handle is closed
                (other handles may still rotate); ``new_channel`` is not taken.
            TypeError: ``new_channel`` is None and the channel has no factory; ``new_channel``
                (or what the factory returned) is not a grpc.aio channel, or is a
                GracefulChannel.
            ValueError: ``grace`` negative, NaN or infinite; ``new_channel`` (or what the
                factory returned) is the grpc channel in use, or one an old connection still
                drains on.

        A refused rotation changes nothing: the channel stays on its connection.
        """
        seconds = self.drain_timeout if grace is None else check_seconds(grace, "grace")
        if new_channel is not None:
            _check_grpc_channel(new_channel, "new_channel")
        rotation = self._handle.connection.rotate(self._handle, new_channel, seconds)
        return await asyncio.shield(rotation)

    async def close(self, grace: float | None = None) -> DrainReport:
        """Closes this handle; the last one to close drains and closes the connection.

        Args:
            grace: The drain deadline in seconds; None means ``drain_timeout``; 0 cancels what is
                in flight at once. A later close with a shorter deadline brings it forward.

        Returns:
            The drain's report. Every close of the last handle, from any task, gets the same
            one, and so does a repeated close of any handle once the drain has started; the first
            close of a handle that leaves others open returns at once with ``closed=False``.
            If the awaiting task is cancelled, the drain continues to its deadline. After
            rotations it covers the old connections still draining too (their calls also appear
            in their rotation's report).

        Raises:
            ValueError: ``grace`` negative, NaN or infinite.
        """
        seconds = self.drain_timeout if grace is None else check_seconds(grace, "grace")
        drain = self._handle.connection.close(self._handle, seconds)
        if drain is None:
            return _not_last()
        return await asyncio.shield(drain)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- grpc.aio.Channel ----------------------------------------------------------------------

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        """As grpc.aio: the connectivity state of the underlying channel."""
        return self._handle.connection.raw.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        """As grpc.aio: waits for the connectivity state to change."""
        await self._handle.connection.raw.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        """As grpc.aio: waits until the channel is READY."""
        await self._handle.connection.raw.channel_ready()

    def _site(self, method: str, kind: CallKind) -> CallSite:
        return self._handle.connection.site(method, kind)

    def unary_unary(
        self,
        method: str,
        request_serializer: Any | None = None,
        response_deserializer: Any | None = None,
        _registered_method: bool | None = False,
    ) -> UnaryUnaryMultiCallable[Any, Any]:
        """As grpc.aio, with every call tracked by this channel."""
        make_raw = methodcaller(
            "unary_unary", method, request_serializer, response_deserializer, _registered_method
        )
        return UnaryUnaryMultiCallable(self._handle, make_raw, self._site(method, "unary_unary"))

    def unary_stream(
        self,
        method: str,
        request_serializer: Any | None = None,
        response_deserializer: Any | None = None,
        _registered_method: bool | None = False,
    ) -> UnaryStreamMultiCallable[Any, Any]:
        """As grpc.aio, with every call tracked by this channel."""
        make_raw = methodcaller(
            "unary_stream", method, request_serializer, response_deserializer, _registered_method
        )
        return UnaryStreamMultiCallable(self._handle, make_raw, self._site(method, "unary_stream"))

    def stream_unary(
        self,
        method: str,
        request_serializer: Any | None = None,
        response_deserializer: Any | None = None,
        _registered_method: bool | None = False,
    ) -> StreamUnaryMultiCallable[Any, Any]:
        """As grpc.aio, with every call tracked by this channel."""
        make_raw = methodcaller(
            "stream_unary", method, request_serializer, response_deserializer, _registered_method
        )
        return StreamUnaryMultiCallable(self._handle, make_raw, self._site(method, "stream_unary"))

    def stream_stream(
        self,
        method: str,
        request_serializer: Any | None = None,
        response_deserializer: Any | None = None,
        _registered_method: bool | None = False,
    ) -> StreamStreamMultiCallable[Any, Any]:
        """As grpc.aio, with every call tracked by this channel."""
        make_raw = methodcaller(
            "stream_stream", method, request_serializer, response_deserializer, _registered_method
        )
        return StreamStreamMultiCallable(
            self._handle, make_raw, self._site(method, "stream_stream")
        )

    def __repr__(self) -> str:
        handle = "closed" if self._handle.closed else "open"
        return (
            f"<GracefulChannel {handle} handle, {self.state.value}: "
            f"in_flight={self.in_flight} holds={self.holds}>"
        )


def new_channel(
    channel: aio.Channel, options: ChannelOptions, factory: Callable[[], aio.Channel] | None
) -> GracefulChannel:
    """A GracefulChannel with options checked already (``insecure_channel`` and the rest)."""
    graceful = GracefulChannel.__new__(GracefulChannel)
    graceful._open(channel, options, factory)
    return graceful


def _check_grpc_channel(value: object, what: str) -> None:
    if isinstance(value, GracefulChannel) or not isinstance(value, aio.Channel):
        raise TypeError(f"{what} must be a grpc.aio.Channel, got {type(value).__name__}")


def _checked_factory(factory: Callable[[], aio.Channel]) -> Callable[[], aio.Channel]:
    """``factory``, its result checked: a rotation onto anything else would break the channel."""
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {factory!r}")

    def build() -> aio.Channel:
        raw = factory()
        _check_grpc_channel(raw, "the factory's result")
        return raw

    return build


def _not_last() -> DrainReport:
    """The report of a close() that was not the last open handle: nothing drained."""
    from ..report import DrainReport

    return DrainReport(
        closed=False, drained=True, waited=0.0, completed=0, cancelled=(), abandoned_holds=0
    )
