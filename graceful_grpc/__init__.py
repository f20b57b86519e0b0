"""graceful_grpc: gRPC clients for asyncio that shut down without losing work."""

from ._counting import COUNTER_IMPLEMENTATION

__all__ = ("COUNTER_IMPLEMENTATION",)
__version__ = "0.1.0"
