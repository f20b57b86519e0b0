"""Test helpers: the Echo service (all four call kinds), in-process or in a child process.

Needs protobuf, which the core does not: ``pip install 'graceful-grpc[testing]'``.
"""

try:
    import google.protobuf  # noqa: F401 - only to fail early with a clear message
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "graceful_grpc.testing needs protobuf>=5.26.1: pip install 'graceful-grpc[testing]'"
    ) from exc

from ._echo_server import EchoServer
from ._process import EchoServerProcess
from .v1 import echo_pb2, echo_pb2_grpc

__all__ = ("EchoServer", "EchoServerProcess", "echo_pb2", "echo_pb2_grpc")
