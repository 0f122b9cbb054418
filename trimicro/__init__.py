"""trimicro: Go Micro, the microservices framework, rebuilt on Trio structured concurrency.

Write a handler class, run ``trio.run(service.run)``, and get discovery, load balancing, RPC with
streaming, pub/sub and pluggable infrastructure. See docs/ for concepts and plugins.
"""

from . import errors as errors
from ._plugins import register_plugin as register_plugin
from .client import CallRequest as CallRequest
from .client import Client as Client
from .config import Options as Options
from .config import load_options as load_options
from .context import Context as Context
from .context import ResponseMetadata as ResponseMetadata
from .context import metadata as metadata
from .errors import MicroError as MicroError
from .registry import Endpoint as Endpoint
from .registry import Node as Node
from .registry import Value as Value
from .server import MethodSpec as MethodSpec
from .server import Request as Request
from .server import SubscriberMessage as SubscriberMessage
from .service import Service as Service
from .service import open_client as open_client
from .service import open_service as open_service
from .stream import ClientStream as ClientStream
from .stream import Stream as Stream

__version__ = "0.1.0"

__all__ = [
    "CallRequest",
    "Client",
    "ClientStream",
    "Context",
    "Endpoint",
    "MethodSpec",
    "MicroError",
    "Node",
    "Options",
    "Request",
    "Service",
    "Stream",
    "SubscriberMessage",
    "Value",
    "__version__",
    "errors",
    "load_options",
    "metadata",
    "open_client",
    "open_service",
    "register_plugin",
]
