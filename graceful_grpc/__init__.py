"""graceful_grpc: gRPC clients for asyncio that shut down without losing work."""

from typing import TYPE_CHECKING, Any

from . import aio
from ._counting import COUNTER_IMPLEMENTATION
from .errors import ChannelClosedError, DrainTimeoutError
from .report import CallInfo, CallKind, DrainReport
from .state import ChannelState

if TYPE_CHECKING:
    from .shutdown import ShutdownReport, ShutdownSequence, StepResult

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

_LAZY = {"ShutdownReport", "ShutdownSequence", "StepResult"}


def __getattr__(name: str) -> Any:
    # graceful_grpc.shutdown (signals, the sequence) is imported on first use, not by every
    # `import graceful_grpc.aio`: it is a sizeable share of the import time.
    if name in _LAZY:
        from . import shutdown

        return getattr(shutdown, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
