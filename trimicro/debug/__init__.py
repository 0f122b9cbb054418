"""Internal ``Debug`` endpoints every service answers (not advertised in the registry)."""

from ._grpc_health import CHECK_PATH as CHECK_PATH
from ._grpc_health import GrpcHealth as GrpcHealth
from ._handler import Debug as Debug

__all__ = [
    "CHECK_PATH",
    "Debug",
    "GrpcHealth",
]
