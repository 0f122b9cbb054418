"""Internal ``Debug`` endpoints every service answers (not advertised in the registry)."""

from ._grpc_health import CHECK_PATH as CHECK_PATH
from ._grpc_health import WATCH_PATH as WATCH_PATH
from ._grpc_health import GrpcHealth as GrpcHealth
from ._grpc_reflection import REFLECTION_PATHS as REFLECTION_PATHS
from ._grpc_reflection import GrpcReflection as GrpcReflection
from ._handler import Debug as Debug

__all__ = [
    "CHECK_PATH",
    "REFLECTION_PATHS",
    "WATCH_PATH",
    "Debug",
    "GrpcHealth",
    "GrpcReflection",
]
