"""The grpc.aio internals the direct call path reproduces, and the grpcio releases verified for it.

The direct path (``_call_factory``) builds grpc.aio's call objects itself, passing exactly what
grpc.aio's own multicallables pass. That is only right for grpc.aio code someone has read against
``_call_factory._direct_factory``. So it is enabled only when the installed grpcio release is in
``VERIFIED_GRPCIO`` *and* the source of every function in ``RELIED_ON`` still hashes to the
fingerprint recorded for that release (a patched or vendored grpcio with the same version number
is caught too). Anything else takes the fallback path, which is correct on any grpcio and costs
about 3% more client CPU per unary call. Everything here runs once, at import.

To verify a new grpcio release: read the functions named in ``RELIED_ON`` in its
``grpc/aio/_channel.py``, ``_call.py`` and ``_utils.py`` against ``_call_factory._direct_factory``,
run the suite with it installed, then add the line ``make grpc-internals`` prints (``status()``)
to ``VERIFIED_GRPCIO`` and to the README's compatibility table.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import grpc

__all__ = (
    "DIRECT_PATH_ALLOWED",
    "DIRECT_PATH_REASON",
    "DISABLE_VARIABLE",
    "GRPCIO_VERSION",
    "RELIED_ON",
    "VERIFIED_GRPCIO",
    "fingerprint",
    "refusal",
    "reverify_instructions",
    "status",
)

DISABLE_VARIABLE = "GRACEFUL_GRPC_NO_DIRECT_CALLS"
"""Set (non-empty) to force the fallback path, e.g. to test it or to rule the direct path out."""

RELIED_ON: tuple[tuple[str, str], ...] = (
    ("grpc.aio._channel", "UnaryUnaryMultiCallable.__call__"),
    ("grpc.aio._channel", "UnaryStreamMultiCallable.__call__"),
    ("grpc.aio._channel", "StreamUnaryMultiCallable.__call__"),
    ("grpc.aio._channel", "StreamStreamMultiCallable.__call__"),
    ("grpc.aio._channel", "_BaseMultiCallable.__init__"),
    ("grpc.aio._channel", "_BaseMultiCallable._init_metadata"),
    ("grpc.aio._call", "UnaryUnaryCall.__init__"),
    ("grpc.aio._call", "UnaryStreamCall.__init__"),
    ("grpc.aio._call", "StreamUnaryCall.__init__"),
    ("grpc.aio._call", "StreamStreamCall.__init__"),
    ("grpc.aio._utils", "_timeout_to_deadline"),
    # The coroutines that start each kind of RPC, which the answering call subclasses wrap to end
    # a call whose start fails locally (see _abortable._start_method), and the stream-request
    # machinery whose "metadata sent" event their cancel() sets (see _abortable._cancel_method).
    ("grpc.aio._call", "UnaryUnaryCall._invoke"),
    ("grpc.aio._call", "UnaryStreamCall._send_unary_request"),
    ("grpc.aio._call", "StreamUnaryCall._conduct_rpc"),
    ("grpc.aio._call", "StreamStreamCall._prepare_rpc"),
    ("grpc.aio._call", "_StreamRequestMixin._init_stream_request_mixin"),
    ("grpc.aio._call", "_StreamRequestMixin.cancel"),
    ("grpc.aio._call", "_StreamRequestMixin._write"),
    ("grpc.aio._call", "_StreamRequestMixin.wait_for_connection"),
)
"""(module, qualified name) of every grpc.aio function whose behaviour the direct path copies
or wraps."""

VERIFIED_GRPCIO: Mapping[str, str] = {
    # grpcio release -> fingerprint() of RELIED_ON in it, read and run through the suite.
    "1.84.0": "a953b8be9a45e569",
    "1.84.1": "a953b8be9a45e569",
    "1.84.2": "a953b8be9a45e569",
    "1.85.0": "a953b8be9a45e569",
    "1.85.1": "a953b8be9a45e569",
    "1.85.3": "a953b8be9a45e569",
}


def _resolve(module_name: str, qualname: str) -> Any:
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _normalised_source(function: Any) -> str:
    """The function's source without its indentation level, blank lines or trailing spaces."""
    lines = textwrap.dedent(inspect.getsource(function)).splitlines()
    return "\n".join(line.rstrip() for line in lines if line.strip())


def fingerprint(relied_on: Sequence[tuple[str, str]] = RELIED_ON) -> str:
    """A short sha256 over the normalised source of every function in ``relied_on``.

    Raises:
        ImportError, AttributeError, OSError, TypeError: a function is missing or has no source.
    """
    digest = hashlib.sha256()
    for module_name, qualname in relied_on:
        source = _normalised_source(_resolve(module_name, qualname))
        digest.update(f"{module_name}:{qualname}\n{source}\n".encode())
    return digest.hexdigest()[:16]


def refusal(
    version: str,
    verified: Mapping[str, str] = VERIFIED_GRPCIO,
    relied_on: Sequence[tuple[str, str]] = RELIED_ON,
) -> str | None:
    """Why the direct path must not serve grpcio ``version`` here, or None when it may."""
    if os.environ.get(DISABLE_VARIABLE):
        return f"disabled by {DISABLE_VARIABLE}"
    expected = verified.get(version)
    if expected is None:
        return f"grpcio {version} is not in the verified list ({', '.join(verified) or 'empty'})"
    try:
        found = fingerprint(relied_on)
    except (ImportError, AttributeError, OSError, TypeError) as exc:
        return f"grpcio {version}: a grpc.aio internal it relies on is missing ({exc!r})"
    if found != expected:
        return (
            f"grpcio {version}: grpc.aio internals differ from the verified ones "
            f"(fingerprint {found}, verified {expected})"
        )
    return None


def reverify_instructions(version: str) -> str:
    """What to read and where to record it to verify grpcio ``version`` for the direct path."""
    functions = ", ".join(
        f"{module.replace('.', '/')}.py {qualname}" for module, qualname in RELIED_ON
    )
    return (
        f"to verify grpcio {version}: re-check {functions} against "
        "graceful_grpc/aio/_call_factory.py _direct_factory, run the suite, then add the line "
        "printed by `make grpc-internals` to VERIFIED_GRPCIO in "
        "graceful_grpc/aio/_grpc_internals.py and to the README's compatibility table"
    )


GRPCIO_VERSION: str = grpc.__version__  # type: ignore[attr-defined]
_REFUSAL = refusal(GRPCIO_VERSION)
DIRECT_PATH_ALLOWED = _REFUSAL is None
DIRECT_PATH_REASON: str = _REFUSAL or f"grpcio {GRPCIO_VERSION} verified"
"""Why the direct path is on or off, for humans (logs, bug reports, the test that names it)."""


def status() -> str:
    """The installed grpcio's ``VERIFIED_GRPCIO`` line, whether the direct path is on, and why."""
    lines = [
        f'    "{GRPCIO_VERSION}": "{fingerprint()}",',
        f"# direct path {'on' if DIRECT_PATH_ALLOWED else 'off'}: {DIRECT_PATH_REASON}",
    ]
    if not DIRECT_PATH_ALLOWED:
        lines.append(f"# {reverify_instructions(GRPCIO_VERSION)}")
    return "\n".join(lines)
