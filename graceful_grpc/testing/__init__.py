"""Test helpers: the Echo service (all four call kinds), in-process or in a child process."""

from ._echo_server import EchoServer
from ._process import EchoServerProcess
from .v1 import echo_pb2, echo_pb2_grpc

__all__ = ("EchoServer", "EchoServerProcess", "echo_pb2", "echo_pb2_grpc")
