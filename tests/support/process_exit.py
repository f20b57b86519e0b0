"""Ending a test subprocess that ran temporalio's Rust bridge without CPython's finalization.

The bridge's Tokio threads can still complete a Python future while the interpreter finalizes;
CPython then aborts the process (SIGABRT, "Fatal Python error: PyGILState_Release: thread state
... must be current when releasing", "Python runtime state: finalizing"). This is temporalio's
open issue https://github.com/temporalio/sdk-python/issues/300: it comes from the bridge, whatever
channel the client uses (seen in 2 of 75 runs of the plain grpc.aio scenario). A subprocess whose
exit code a test checks therefore flushes its output and leaves with ``os._exit``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn


def exit_skipping_finalization(code: int) -> NoReturn:
    """Flushes logging, stdout and stderr, then ends the process with ``code`` at once."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
