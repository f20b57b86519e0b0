"""graceful_grpc: gRPC clients for asyncio that shut down without losing work."""

from typing import TYPE_CHECKING, Any

from . import aio
from ._counting import COUNTER_IMPLEMENTATION
from .errors import ChannelClosedError, DrainTimeoutError
from .state import ChannelState

if TYPE_CHECKING:
    from .report import CallInfo, CallKind, DrainReport
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

_LAZY = {
    "CallInfo": "report",
    "CallKind": "report",
    "DrainReport": "report",
    "ShutdownReport": "shutdown",
    "ShutdownSequence": "shutdown",
    "StepResult": "shutdown",
}


def __getattr__(name: str) -> Any:
    # graceful_grpc.shutdown (signals, the sequence) and graceful_grpc.report (dataclasses) are
    # imported on first use, not by every `import graceful_grpc.aio`: they are a sizeable share
    # of its import time.
    module = _LAZY.get(name)
    if module is not None:
        import importlib

        return getattr(importlib.import_module(f".{module}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
