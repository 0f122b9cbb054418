"""The server: handler reflection, routing, wrappers and the mucp connection loop."""

from ._grpc import GrpcServer as GrpcServer
from ._grpc import response_metadata as response_metadata
from ._router import HandlerFunc as HandlerFunc
from ._router import HandlerWrapper as HandlerWrapper
from ._router import Request as Request
from ._router import Router as Router
from ._server import Server as Server
from ._server import Stats as Stats
from ._spec import MethodSpec as MethodSpec
from ._subscriber import SubscriberCall as SubscriberCall
from ._subscriber import SubscriberMessage as SubscriberMessage
from ._subscriber import Subscribers as Subscribers
from ._subscriber import SubscriberWrapper as SubscriberWrapper
from ._subscriber import subscriber_stats as subscriber_stats

__all__ = [
    "GrpcServer",
    "HandlerFunc",
    "HandlerWrapper",
    "MethodSpec",
    "Request",
    "Router",
    "Server",
    "Stats",
    "SubscriberCall",
    "SubscriberMessage",
    "SubscriberWrapper",
    "Subscribers",
    "response_metadata",
    "subscriber_stats",
]
