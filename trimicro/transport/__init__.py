"""Transports: mucp over HTTP/1.1 (default), gRPC over HTTP/2."""

from .._metadata import canonical as canonical
from ._base import H2Handler as H2Handler
from ._base import Listener as Listener
from ._base import Message as Message
from ._base import Socket as Socket
from ._base import Transport as Transport
from ._h2grpc import GRPC_CONTENT_TYPES as GRPC_CONTENT_TYPES
from ._h2grpc import Status as Status
from ._h2grpc import check_metadata as check_metadata
from ._h2grpc import endpoint_for_path as endpoint_for_path
from ._h2grpc import incoming_metadata as incoming_metadata
from ._h2grpc import status_details_for_error as status_details_for_error
from ._h2grpc import status_for_error as status_for_error
from ._h2policy import H2Policy as H2Policy
from ._h2server import H2App as H2App
from ._h2server import H2Server as H2Server
from ._h2server import H2ServerStream as H2ServerStream
from .grpc import GrpcSocket as GrpcSocket
from .grpc import GrpcTransport as GrpcTransport
from .grpc import client_ssl_context as client_ssl_context
from .http import HttpListener as HttpListener
from .http import HttpSocket as HttpSocket
from .http import HttpTransport as HttpTransport
from .http import split_address as split_address
from .memory import MemoryListener as MemoryListener
from .memory import MemoryNetwork as MemoryNetwork
from .memory import MemoryStream as MemoryStream
from .memory import MemoryTransport as MemoryTransport
from .memory import default_network as default_network
from .memory import memory_stream_pair as memory_stream_pair
from .mucp import DEFAULT_MAX_BODY_SIZE as DEFAULT_MAX_BODY_SIZE
from .mucp import DEFAULT_MAX_HEADER_SIZE as DEFAULT_MAX_HEADER_SIZE
from .mucp import H2_PREFACE as H2_PREFACE
from .mucp import NEED_DATA as NEED_DATA
from .mucp import ClientConnection as ClientConnection
from .mucp import EndOfStream as EndOfStream
from .mucp import FrameState as FrameState
from .mucp import ServerConnection as ServerConnection
from .nats import NatsClientSocket as NatsClientSocket
from .nats import NatsListener as NatsListener
from .nats import NatsServerSocket as NatsServerSocket
from .nats import NatsTransport as NatsTransport

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_MAX_HEADER_SIZE",
    "GRPC_CONTENT_TYPES",
    "H2_PREFACE",
    "NEED_DATA",
    "ClientConnection",
    "EndOfStream",
    "FrameState",
    "GrpcSocket",
    "GrpcTransport",
    "H2App",
    "H2Handler",
    "H2Policy",
    "H2Server",
    "H2ServerStream",
    "HttpListener",
    "HttpSocket",
    "HttpTransport",
    "Listener",
    "MemoryListener",
    "MemoryNetwork",
    "MemoryStream",
    "MemoryTransport",
    "Message",
    "NatsClientSocket",
    "NatsListener",
    "NatsServerSocket",
    "NatsTransport",
    "ServerConnection",
    "Socket",
    "Status",
    "Transport",
    "canonical",
    "check_metadata",
    "client_ssl_context",
    "default_network",
    "endpoint_for_path",
    "incoming_metadata",
    "memory_stream_pair",
    "split_address",
    "status_details_for_error",
    "status_for_error",
]
