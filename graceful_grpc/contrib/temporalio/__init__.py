"""temporalio clients on a graceful channel (optional extra ``temporal``).

temporalio's Python SDK talks to the server through its Rust core, not grpcio; this integration
plugs in at ``temporalio.service.ServiceClient``, so client calls - starting and signalling
workflows, completing activities asynchronously - get graceful_grpc's shutdown guarantees.
"""

try:
    import temporalio.service as _temporalio_service  # noqa: F401 - checked here, used below
    import tenacity as _tenacity  # noqa: F401
except ImportError as missing:  # pragma: no cover - depends on what is installed
    raise ImportError(
        f"graceful_grpc.contrib.temporalio needs {(missing.name or '').split('.')[0]!r}: "
        "pip install 'graceful-grpc[temporal]'"
    ) from missing

from ._connect import connect
from ._connect_options import ConnectOptions
from ._fork import GrpcForkSupportWarning
from ._methods import RpcMethod, method_table
from ._options import MAX_MESSAGE_BYTES, channel_options
from ._retry import RETRYABLE_CODES, TemporalBackoff
from ._service_client import DEFAULT_LONG_POLL_TIMEOUT, DEFAULT_TIMEOUT, GracefulServiceClient

__all__ = (
    "DEFAULT_LONG_POLL_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "MAX_MESSAGE_BYTES",
    "RETRYABLE_CODES",
    "ConnectOptions",
    "GracefulServiceClient",
    "GrpcForkSupportWarning",
    "RpcMethod",
    "TemporalBackoff",
    "channel_options",
    "connect",
    "method_table",
)
