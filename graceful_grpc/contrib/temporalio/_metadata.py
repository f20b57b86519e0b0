"""RPC metadata checked and merged as temporalio's built-in client does, before grpc sees it.

temporalio raises ``ValueError`` for a metadata key or value it cannot send (a ``bytes`` value for
an ASCII key, a ``str`` value for a ``-bin`` key, an illegal key or value) and ``TypeError`` for
keys and values that are neither ``str`` nor ``bytes``. grpc is stricter than temporalio on a few
inputs (non-ASCII or tab characters in ASCII values, key characters other than ``0-9 a-z _ . -``);
those are refused with ``ValueError`` too, never handed to grpc.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ("Metadata", "check_metadata", "merge_headers")

Metadata = Mapping[str, str | bytes]

_KEY = re.compile(r"[0-9a-z_.\-]+")
_ASCII_VALUE = re.compile(r"[\x20-\x7e]*")
_AUTHORIZATION = "authorization"


def check_metadata(metadata: Metadata) -> dict[str, str | bytes]:
    """A lower-cased copy of ``metadata``, or the error temporalio raises for it.

    Raises:
        TypeError: a key that is not ``str``, or a value that is neither ``str`` nor ``bytes``.
        ValueError: a key or value that cannot be sent as gRPC metadata.
    """
    checked: dict[str, str | bytes] = {}
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise TypeError(f"metadata key must be str, got {type(key).__name__}")
        if not isinstance(value, str | bytes):
            raise TypeError(
                f"metadata value for key {key!r} must be str or bytes, got {type(value).__name__}"
            )
        name = key.lower()
        if not _KEY.fullmatch(name):
            raise ValueError(f"Invalid metadata key {key!r}: invalid gRPC metadata key name")
        if name.endswith("-bin"):
            if not isinstance(value, bytes):
                raise ValueError(f"Invalid metadata value for binary key {key}: expected bytes")
        elif not isinstance(value, str):
            raise ValueError(f"Invalid metadata value for ASCII key {key}: expected str")
        elif not _ASCII_VALUE.fullmatch(value):
            raise ValueError(
                f"Invalid metadata value for key {key!r}: only printable ASCII can be sent"
            )
        checked[name] = value
    return checked


def merge_headers(
    fixed: Metadata, client: Metadata, call: Metadata, api_key: str | None
) -> tuple[tuple[str, str | bytes], ...]:
    """The headers of one call, as the built-in client sends them.

    Later sources win: ``fixed`` (client name, version, namespace), then the client's
    ``rpc_metadata``, then the call's metadata. ``authorization: Bearer <api_key>`` is added only
    when neither metadata has an ``authorization`` header of its own.

    Raises:
        TypeError, ValueError: ``call`` is invalid (see ``check_metadata``).
    """
    headers: dict[str, str | bytes] = {**fixed, **client, **check_metadata(call)}
    if api_key and _AUTHORIZATION not in headers:
        headers[_AUTHORIZATION] = f"Bearer {api_key}"
    return tuple(headers.items())
