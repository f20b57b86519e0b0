"""The grpc.aio internals the call paths rely on, and the fingerprints verified for the direct path.

The direct path (``_call_factory``) builds grpc.aio's call objects itself, passing exactly what
grpc.aio's own multicallables pass. That is only right for grpc.aio code someone has read against
``_call_factory._direct_factory``. So it is enabled only when the source of every function in
``RELIED_ON``, as installed, hashes to a fingerprint in ``VERIFIED_GRPCIO`` - whatever grpcio's
version number says: a new patch release with the same source gets the direct path, a patched or
vendored grpcio with a known version number but other source does not. Anything else takes the
fallback path (``_abortable.make_abortable``), which is correct on any grpcio.

Reading the functions' source with ``inspect`` costs several milliseconds, so the decision first
hashes the *bytes* of the files that define them (well under a millisecond) and looks that digest
up in ``KNOWN_SOURCES``: identical files hold identical functions, so a known digest stands for its
fingerprint exactly. Only files never seen before (a new grpcio release) are fingerprinted function
by function. Everything here runs once, at import.

To verify a new fingerprint: read the functions named in ``RELIED_ON`` in its ``grpc/aio/`` against
``_call_factory._direct_factory`` and ``_abortable``, run the suite with that grpcio installed, then
add the lines ``make grpc-internals`` prints (``status()``) to ``VERIFIED_GRPCIO`` and
``KNOWN_SOURCES`` and the release to the compatibility table in ``docs/compatibility.md``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import grpc

if TYPE_CHECKING:
    from hashlib import sha256
else:  # CPython's own sha256: hashlib would load OpenSSL, a sizeable part of the import time
    try:
        from _sha2 import sha256  # CPython >= 3.12
    except ImportError:
        try:
            from _sha256 import sha256  # CPython 3.11
        except ImportError:  # another implementation
            from hashlib import sha256

__all__ = (
    "DIRECT_PATH_ALLOWED",
    "DIRECT_PATH_REASON",
    "DISABLE_VARIABLE",
    "GRPCIO_VERSION",
    "KNOWN_SOURCES",
    "RELIED_ON",
    "VERIFIED_GRPCIO",
    "Decision",
    "decide",
    "fingerprint",
    "installed_fingerprint",
    "reverify_instructions",
    "source_digest",
    "status",
)

DISABLE_VARIABLE = "GRACEFUL_GRPC_NO_DIRECT_CALLS"
"""Set (non-empty) to force the fallback path, e.g. to test it or to rule the direct path out."""

RELIED_ON: tuple[tuple[str, str], ...] = (
    # What the direct path reproduces: grpc.aio's multicallables building their calls.
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
    ("grpc.aio._call", "_StreamRequestMixin._metadata_sent_observer"),
    ("grpc.aio._call", "_StreamRequestMixin.cancel"),
    ("grpc.aio._call", "_StreamRequestMixin._write"),
    ("grpc.aio._call", "_StreamRequestMixin.wait_for_connection"),
    # The thin public stream methods _direct_methods reproduces, and what they call.
    ("grpc.aio._call", "_StreamRequestMixin.write"),
    ("grpc.aio._call", "_StreamRequestMixin._raise_for_different_style"),
    ("grpc.aio._call", "_StreamResponseMixin.read"),
    ("grpc.aio._call", "_StreamResponseMixin.__aiter__"),
    ("grpc.aio._call", "_StreamResponseMixin._fetch_stream_responses"),
    ("grpc.aio._call", "_StreamResponseMixin._update_response_style"),
    ("grpc.aio._call", "_StreamResponseMixin._read"),
    ("grpc.aio._call", "Call._raise_for_status"),
    # The unary response's __await__ and the unary-unary _invoke, reproduced there too, and what
    # they call.
    ("grpc.aio._call", "_UnaryResponseMixin.__await__"),
    ("grpc.aio._call", "_create_rpc_error"),
    ("grpc._common", "serialize"),
    ("grpc._common", "deserialize"),
    # Where the fallback path finds the task that starts a call (_abortable._START_TASKS, and an
    # interceptor chain's task); on grpc.aio code without them it degrades as documented there.
    ("grpc.aio._call", "_UnaryResponseMixin._init_unary_response_mixin"),
    ("grpc.aio._interceptor", "InterceptedCall.__init__"),
)
"""(module, qualified name) of every grpc.aio function whose behaviour a call path copies, wraps
or reads attributes of."""

# fmt: off
VERIFIED_GRPCIO: Mapping[str, tuple[str, ...]] = {
    # fingerprint() of RELIED_ON -> the grpcio releases it was seen in. Each fingerprint's source
    # was read against _call_factory, _abortable and _direct_methods, and the suite passed on a
    # release of it.
    "680e90e25fdb6d6d": (
        "1.63.0", "1.63.2", "1.64.0", "1.64.1", "1.64.3",
    ),
    "8cbe6fe297c5ea00": (
        "1.65.1", "1.65.2", "1.65.4", "1.65.5", "1.66.0", "1.66.1", "1.66.2", "1.67.0",
        "1.67.1", "1.68.0", "1.68.1", "1.69.0", "1.70.0", "1.71.0", "1.71.2", "1.72.1",
        "1.72.2", "1.73.0", "1.73.1", "1.74.0",
    ),
    "4deaee106451ee36": (
        "1.75.0", "1.75.1",
    ),
    "cbbd04b1752701d4": (
        "1.76.0", "1.78.0", "1.78.2",
    ),
    "8ff6c30ad46c3075": (
        "1.80.0", "1.80.1", "1.81.0", "1.81.1", "1.81.2",
    ),
    "1f36e73c5a32f4e5": (
        "1.82.1", "1.82.2", "1.82.3",
    ),
    "6dd57fd916df000f": (
        "1.83.0", "1.83.1", "1.83.2",
    ),
    "f15084a1849a3bf5": (
        "1.84.0", "1.84.1", "1.84.2", "1.85.0", "1.85.1", "1.85.3", "1.85.4",
    ),
}
# fmt: on
"""Verified fingerprints, with the grpcio releases each was seen in (for docs/compatibility.md)."""

# fmt: off
KNOWN_SOURCES: Mapping[str, str] = {
    # source_digest() -> the fingerprint() of the same files, so that a known install is decided
    # without reading its functions' source. Seen in the grpcio releases named.
    "094c13f165e334fe": "680e90e25fdb6d6d",  # 1.63.0, 1.63.2, 1.64.0, 1.64.1, 1.64.3
    "5358155262d52b03": "8cbe6fe297c5ea00",  # 1.65.1, 1.65.2, 1.65.4, 1.65.5
    "393669f8b7d54ce0": "8cbe6fe297c5ea00",  # 1.66.0 ... 1.68.1 (all 7)
    "074f6e66d46cc458": "8cbe6fe297c5ea00",  # 1.69.0 ... 1.74.0 (all 9)
    "41e78a4d227226ce": "4deaee106451ee36",  # 1.75.0, 1.75.1
    "7c8ba200f016f03c": "cbbd04b1752701d4",  # 1.76.0
    "e8079b1066099cfb": "cbbd04b1752701d4",  # 1.78.0
    "cd9210f9ece2d21d": "cbbd04b1752701d4",  # 1.78.2
    "e60bd85229f8d3bf": "8ff6c30ad46c3075",  # 1.80.0, 1.81.0, 1.81.1
    "3282958bfbbc758e": "8ff6c30ad46c3075",  # 1.80.1, 1.81.2
    "8998e187a3294a3d": "1f36e73c5a32f4e5",  # 1.82.1, 1.82.2
    "e96f5d8b3ce1ba5f": "1f36e73c5a32f4e5",  # 1.82.3
    "c589775685b06269": "6dd57fd916df000f",  # 1.83.0, 1.83.1
    "c886e7066dc4a251": "6dd57fd916df000f",  # 1.83.2
    "2c993de6e29ad207": "f15084a1849a3bf5",  # 1.84.0, 1.84.1, 1.85.0
    "d15c740ec0892e78": "f15084a1849a3bf5",  # 1.84.2, 1.85.1, 1.85.3, 1.85.4
}
# fmt: on
"""Digests of relied-on grpc.aio files already fingerprinted."""


class Decision(NamedTuple):
    """Whether the direct path may serve the installed grpcio, and why.

    Attributes:
        allowed: The direct path may serve.
        reason: Why (or why not), for humans: logs, bug reports, the test that names it.
        fingerprint: The installed relied-on source's fingerprint, or None when it could not be
            taken (a function is missing) or was not needed (disabled).
    """

    allowed: bool
    reason: str
    fingerprint: str | None


def _resolve(module_name: str, qualname: str) -> Any:
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _normalised_source(function: Any) -> str:
    """The function's source without its indentation level, blank lines or trailing spaces."""
    import inspect  # here: only a grpcio whose files are not in KNOWN_SOURCES needs it
    import textwrap

    lines = textwrap.dedent(inspect.getsource(function)).splitlines()
    return "\n".join(line.rstrip() for line in lines if line.strip())


def fingerprint(relied_on: Sequence[tuple[str, str]] = RELIED_ON) -> str:
    """A short sha256 over the normalised source of every function in ``relied_on``.

    Raises:
        ImportError, AttributeError, OSError, TypeError: a function is missing or has no source.
    """
    digest = sha256()
    for module_name, qualname in relied_on:
        source = _normalised_source(_resolve(module_name, qualname))
        digest.update(f"{module_name}:{qualname}\n{source}\n".encode())
    return digest.hexdigest()[:16]


def source_digest(relied_on: Sequence[tuple[str, str]] = RELIED_ON) -> str | None:
    """A short sha256 over the bytes of the files that define ``relied_on``.

    Returns:
        The digest, or None when it would not stand for the functions' source: a function is not
        plain Python code defined in its module's file (replaced at run time, say), or a file
        cannot be read.

    Raises:
        ImportError, AttributeError: a function is missing.
    """
    files: dict[str, str] = {}
    for module_name, qualname in relied_on:
        code = getattr(_resolve(module_name, qualname), "__code__", None)
        module_file = getattr(sys.modules[module_name], "__file__", None)
        if code is None or module_file is None or code.co_filename != module_file:
            return None
        files[module_name] = module_file
    digest = sha256()
    for module_name in sorted(files):
        try:
            with open(files[module_name], "rb") as source:
                data = source.read()
        except OSError:
            return None
        digest.update(f"{module_name}\n{len(data)}\n".encode())
        digest.update(data)
    return digest.hexdigest()[:16]


def installed_fingerprint(
    relied_on: Sequence[tuple[str, str]] = RELIED_ON,
    known_sources: Mapping[str, str] = KNOWN_SOURCES,
) -> str:
    """``fingerprint(relied_on)``, read from ``known_sources`` where the files are known.

    Raises:
        ImportError, AttributeError, OSError, TypeError: a function is missing or has no source.
    """
    digest = source_digest(relied_on)
    known = known_sources.get(digest) if digest is not None else None
    return known if known is not None else fingerprint(relied_on)


def _releases(releases: Sequence[str]) -> str:
    return releases[0] if len(releases) == 1 else f"{releases[0]} ... {releases[-1]}"


def decide(
    relied_on: Sequence[tuple[str, str]] = RELIED_ON,
    verified: Mapping[str, tuple[str, ...]] = VERIFIED_GRPCIO,
    known_sources: Mapping[str, str] = KNOWN_SOURCES,
) -> Decision:
    """Whether the direct path may serve the installed grpcio (``verified`` names the verified
    fingerprints; the arguments exist for tests)."""
    version = GRPCIO_VERSION
    if os.environ.get(DISABLE_VARIABLE):
        return Decision(False, f"disabled by {DISABLE_VARIABLE}", None)
    try:
        found = installed_fingerprint(relied_on, known_sources)
    except (ImportError, AttributeError, OSError, TypeError) as exc:
        return Decision(
            False, f"grpcio {version}: a grpc.aio internal it relies on is missing ({exc!r})", None
        )
    releases = verified.get(found)
    if releases is None:
        return Decision(
            False,
            f"grpcio {version}: its relied-on grpc.aio source (fingerprint {found}) has not been "
            "verified",
            found,
        )
    return Decision(
        True,
        f"grpcio {version}: relied-on grpc.aio source verified "
        f"(fingerprint {found}, as in grpcio {_releases(releases)})",
        found,
    )


def reverify_instructions() -> str:
    """What to read and where to record it to verify the installed grpcio for the direct path."""
    functions = ", ".join(
        f"{module.replace('.', '/')}.py {qualname}" for module, qualname in RELIED_ON
    )
    return (
        f"to verify grpcio {GRPCIO_VERSION}: re-check {functions} against "
        "graceful_grpc/aio/_call_factory.py _direct_factory and _abortable.py, run the suite, "
        "then add the lines printed by `make grpc-internals` to VERIFIED_GRPCIO and KNOWN_SOURCES "
        "in graceful_grpc/aio/_grpc_internals.py and the release to the table in "
        "docs/compatibility.md"
    )


GRPCIO_VERSION: str = grpc.__version__  # type: ignore[attr-defined]
_DECISION = decide()
DIRECT_PATH_ALLOWED = _DECISION.allowed
DIRECT_PATH_REASON: str = _DECISION.reason
"""Why the direct path is on or off, for humans (logs, bug reports, the test that names it)."""


def status() -> str:
    """The installed grpcio's lines for ``VERIFIED_GRPCIO`` and ``KNOWN_SOURCES``, and whether
    the direct path is on, and why."""
    found = fingerprint()
    releases = (*VERIFIED_GRPCIO.get(found, ()), GRPCIO_VERSION)
    listed = ", ".join(f'"{r}"' for r in dict.fromkeys(releases))
    lines = [
        f"# grpcio {GRPCIO_VERSION}, fingerprint {found}, source digest {source_digest()}",
        "# VERIFIED_GRPCIO:",
        f'    "{found}": ({listed},),',
        "# KNOWN_SOURCES:",
        f'    "{source_digest()}": "{found}",',
        f"# direct path {'on' if DIRECT_PATH_ALLOWED else 'off'}: {DIRECT_PATH_REASON}",
    ]
    if not DIRECT_PATH_ALLOWED and found not in VERIFIED_GRPCIO:
        lines.append(f"# {reverify_instructions()}")
    return "\n".join(lines)
