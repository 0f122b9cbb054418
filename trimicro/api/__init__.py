"""The HTTP/websocket gateway: Go Micro's ``micro api`` (rpc handler) on hypercorn's trio worker.

``Gateway(client)`` is an ASGI app; ``await nursery.start(gateway.serve, "127.0.0.1:8080")`` serves it.
Importing this package does not import hypercorn; ``serve`` does (``pip install 'trimicro[gateway]'``).
See docs/api.md.
"""

from ._gateway import DEFAULT_MAX_BODY as DEFAULT_MAX_BODY
from ._gateway import DEFAULT_MAX_HEADER as DEFAULT_MAX_HEADER
from ._gateway import GATEWAY_ID as GATEWAY_ID
from ._gateway import Gateway as Gateway
from ._gateway import request_metadata as request_metadata
from ._policy import Access as Access
from ._policy import AllowList as AllowList
from ._policy import Authorize as Authorize
from ._policy import MissCache as MissCache
from ._policy import is_internal as is_internal
from ._resolver import Resolver as Resolver
from ._resolver import Route as Route
from ._resolver import rpc_resolver as rpc_resolver

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_HEADER",
    "GATEWAY_ID",
    "Access",
    "AllowList",
    "Authorize",
    "Gateway",
    "MissCache",
    "Resolver",
    "Route",
    "is_internal",
    "request_metadata",
    "rpc_resolver",
]
