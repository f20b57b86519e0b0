"""graceful_grpc: gRPC clients for asyncio that shut down without losing work."""

from . import aio
from ._counting import COUNTER_IMPLEMENTATION
from .errors import ChannelClosedError, DrainTimeoutError
from .report import CallInfo, CallKind, DrainReport
from .shutdown import ShutdownReport, ShutdownSequence, StepResult
from .state import ChannelState

__all__ = (
    "COUNTER_IMPLEMENTATION",
    "CallInfo",
    "CallKind",
    "ChannelClosedError",
    "ChannelState",
    "DrainReport",
    "DrainTimeoutError",
    "ShutdownReport",
    "ShutdownSequence",
    "StepResult",
    "aio",
)
__version__ = "0.1.0"
