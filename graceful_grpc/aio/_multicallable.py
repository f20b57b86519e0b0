"""The four multicallables of a graceful channel: grpc.aio's own, admitted and tracked.

Each returns a real grpc.aio call object (no proxy; see ``_call_factory`` for how it is built),
tracked until its done-callback. An open handle implies an OPEN connection, so the only check on
the hot path is the handle's ``closed``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import grpc
from grpc import aio

from ..state import ChannelState
from ._call_factory import call_factory
from ._connection import CallSite, Handle
from ._link import Link

__all__ = (
    "StreamStreamMultiCallable",
    "StreamUnaryMultiCallable",
    "UnaryStreamMultiCallable",
    "UnaryUnaryMultiCallable",
)

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")

MetadataType = aio.Metadata | Any  # grpc.aio accepts Metadata or a sequence of pairs

if TYPE_CHECKING:
    _UnaryUnaryBase = aio.UnaryUnaryMultiCallable
    _UnaryStreamBase = aio.UnaryStreamMultiCallable
    _StreamUnaryBase = aio.StreamUnaryMultiCallable
    _StreamStreamBase = aio.StreamStreamMultiCallable
else:
    # grpc.aio's multicallables are generic only from grpcio 1.84 on: at run time each is
    # subclassed as it is, and Generic supplies the subscripting that type checkers see.

    class _Unsubscripted:
        __slots__ = ("_base",)

        def __init__(self, base: type) -> None:
            self._base = base

        def __getitem__(self, _: object) -> type:
            return self._base

    _UnaryUnaryBase = _Unsubscripted(aio.UnaryUnaryMultiCallable)
    _UnaryStreamBase = _Unsubscripted(aio.UnaryStreamMultiCallable)
    _StreamUnaryBase = _Unsubscripted(aio.StreamUnaryMultiCallable)
    _StreamStreamBase = _Unsubscripted(aio.StreamStreamMultiCallable)


class _Wrapped:
    """Starts calls on the connection's current grpc channel, re-binding after a rotation."""

    __slots__ = ("_handle", "_link", "_make_raw", "_new_call", "_site")

    def __init__(
        self, handle: Handle, make_raw: Callable[[aio.Channel], Any], site: CallSite
    ) -> None:
        """``make_raw(grpc_channel)`` returns grpc's multicallable for this method on it."""
        self._handle = handle
        self._site = site
        self._make_raw = make_raw
        self._link: Link | None = None  # bound on the first call admitted (see _call_unary)
        self._new_call: Callable[..., Any] = _unbound
        if handle.connection.state is not ChannelState.CLOSED:  # grpc may crash on a closed one
            self._bind(handle.connection.current)

    def _bind(self, link: Link) -> None:
        self._link = link
        self._new_call = call_factory(self._make_raw(link.raw))

    # The two ways grpc.aio's multicallables take their arguments; each is a class's __call__
    # itself (no frame of its own per unary call).

    def _call_unary(
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: MetadataType | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        handle = self._handle
        connection = handle.connection
        if handle.closed:
            connection.admit("call")  # first: a CLOSED connection's grpc channel is closed
            if connection.current is not self._link:
                self._bind(connection.current)
            call = self._new_call(
                request, timeout, metadata, credentials, wait_for_ready, compression
            )
            return connection.track_admitted(call, self._site)
        link = connection.current
        if link is not self._link:  # rotated since the last call
            self._bind(link)
        call = self._new_call(request, timeout, metadata, credentials, wait_for_ready, compression)
        return link.track(call, self._site)

    def _call_stream(
        self,
        request_iterator: Any | None = None,
        timeout: float | None = None,
        metadata: MetadataType | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        # Once per stream (not per message): a call more is nothing here.
        return self._call_unary(
            request_iterator,
            timeout=timeout,
            metadata=metadata,
            credentials=credentials,
            wait_for_ready=wait_for_ready,
            compression=compression,
        )

    def __repr__(self) -> str:
        return f"<graceful {self._site.kind} {self._site.method}>"


def _unbound(*args: Any) -> Any:
    raise AssertionError("unreachable: a multicallable is bound before its first call")


class UnaryUnaryMultiCallable(
    _Wrapped,
    _UnaryUnaryBase[RequestT, ResponseT],
    Generic[RequestT, ResponseT],
):
    """grpc.aio's UnaryUnaryMultiCallable, tracked by a graceful channel."""

    if TYPE_CHECKING:  # grpc.aio's signature, for type checkers

        def __call__(
            self,
            request: RequestT,
            *,
            timeout: float | None = None,
            metadata: MetadataType | None = None,
            credentials: grpc.CallCredentials | None = None,
            wait_for_ready: bool | None = None,
            compression: grpc.Compression | None = None,
        ) -> aio.UnaryUnaryCall[RequestT, ResponseT]:
            return self._call_unary(  # type: ignore[no-any-return]
                request,
                timeout=timeout,
                metadata=metadata,
                credentials=credentials,
                wait_for_ready=wait_for_ready,
                compression=compression,
            )

    else:
        __call__ = _Wrapped._call_unary


class UnaryStreamMultiCallable(
    _Wrapped,
    _UnaryStreamBase[RequestT, ResponseT],
    Generic[RequestT, ResponseT],
):
    """grpc.aio's UnaryStreamMultiCallable, tracked by a graceful channel."""

    if TYPE_CHECKING:  # grpc.aio's signature, for type checkers

        def __call__(
            self,
            request: RequestT,
            *,
            timeout: float | None = None,
            metadata: MetadataType | None = None,
            credentials: grpc.CallCredentials | None = None,
            wait_for_ready: bool | None = None,
            compression: grpc.Compression | None = None,
        ) -> aio.UnaryStreamCall[RequestT, ResponseT]:
            return self._call_unary(  # type: ignore[no-any-return]
                request,
                timeout=timeout,
                metadata=metadata,
                credentials=credentials,
                wait_for_ready=wait_for_ready,
                compression=compression,
            )

    else:
        __call__ = _Wrapped._call_unary


class StreamUnaryMultiCallable(
    _Wrapped,
    _StreamUnaryBase[RequestT, ResponseT],
    Generic[RequestT, ResponseT],
):
    """grpc.aio's StreamUnaryMultiCallable, tracked by a graceful channel."""

    if TYPE_CHECKING:  # grpc.aio's signature, for type checkers

        def __call__(
            self,
            request_iterator: Any | None = None,
            timeout: float | None = None,
            metadata: MetadataType | None = None,
            credentials: grpc.CallCredentials | None = None,
            wait_for_ready: bool | None = None,
            compression: grpc.Compression | None = None,
        ) -> aio.StreamUnaryCall[RequestT, ResponseT]:
            return self._call_stream(  # type: ignore[no-any-return]
                request_iterator, timeout, metadata, credentials, wait_for_ready, compression
            )

    else:
        __call__ = _Wrapped._call_stream


class StreamStreamMultiCallable(
    _Wrapped,
    _StreamStreamBase[RequestT, ResponseT],
    Generic[RequestT, ResponseT],
):
    """grpc.aio's StreamStreamMultiCallable, tracked by a graceful channel."""

    if TYPE_CHECKING:  # grpc.aio's signature, for type checkers

        def __call__(
            self,
            request_iterator: Any | None = None,
            timeout: float | None = None,
            metadata: MetadataType | None = None,
            credentials: grpc.CallCredentials | None = None,
            wait_for_ready: bool | None = None,
            compression: grpc.Compression | None = None,
        ) -> aio.StreamStreamCall[RequestT, ResponseT]:
            return self._call_stream(  # type: ignore[no-any-return]
                request_iterator, timeout, metadata, credentials, wait_for_ready, compression
            )

    else:
        __call__ = _Wrapped._call_stream
