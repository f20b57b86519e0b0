"""Fixtures shared by the whole suite."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from graceful_grpc import _counter_py
from graceful_grpc.testing import EchoServer

if TYPE_CHECKING:
    from .support.temporal_server import TemporalDevServer

# The core suite runs without the temporal extra (`pip install '.[testing,opentelemetry]' --group
# test`): the Temporal tests are then not collected at all. `make test` installs them and runs
# everything.
TEMPORAL_INSTALLED = all(
    importlib.util.find_spec(name) is not None for name in ("temporalio", "tenacity")
)
collect_ignore_glob = [] if TEMPORAL_INSTALLED else ["test_temporal*.py", "support/temporal_*.py"]


@pytest.fixture(params=["c", "py"])
def counter_cls(request: pytest.FixtureRequest) -> Any:
    """Each Counter implementation in turn; the C case is skipped only when it is not built."""
    if request.param == "py":
        return _counter_py.Counter
    try:
        return importlib.import_module("graceful_grpc._counter").Counter
    except ImportError as exc:
        pytest.skip(f"C extension graceful_grpc._counter is not built: {exc}")


@pytest.fixture
async def echo_server() -> AsyncIterator[EchoServer]:
    """A real Echo server on 127.0.0.1, port 0."""
    async with EchoServer() as server:
        yield server


@pytest.fixture(scope="session")
def temporal_server() -> Iterator[TemporalDevServer]:
    """A real Temporal dev server for the session, started and stopped by the suite."""
    from .support.temporal_server import TemporalDevServer

    server = TemporalDevServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
