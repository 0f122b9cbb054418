"""The client: call / stream / publish with retries, pooling and client wrappers."""

from ._client import CallFunc as CallFunc
from ._client import CallRequest as CallRequest
from ._client import Client as Client
from ._client import ClientWrapper as ClientWrapper
from ._client import PublishFunc as PublishFunc
from ._client import PublishWrapper as PublishWrapper
from ._client import StreamHook as StreamHook
from ._client import default_retry as default_retry
from ._pool import Pool as Pool

__all__ = [
    "CallFunc",
    "CallRequest",
    "Client",
    "ClientWrapper",
    "Pool",
    "StreamHook",
    "default_retry",
]
