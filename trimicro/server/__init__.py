"""The server: handler reflection, routing, wrappers and the mucp connection loop."""

from ._grpc import GrpcServer as GrpcServer
from ._grpc import response_metadata as response_metadata
from ._limit import HandlerLimit as HandlerLimit
from ._limit import Overloaded as Overloaded
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
from ._workers import notify_ready as notify_worker_ready
from ._workers import supervise as supervise_workers
from ._workers import worker_address as worker_address

__all__ = [
    "GrpcServer",
    "HandlerFunc",
    "HandlerLimit",
    "HandlerWrapper",
    "MethodSpec",
    "Overloaded",
    "Request",
    "Router",
    "Server",
    "Stats",
    "SubscriberCall",
    "SubscriberMessage",
    "SubscriberWrapper",
    "Subscribers",
    "notify_worker_ready",
    "response_metadata",
    "subscriber_stats",
    "supervise_workers",
    "worker_address",
]
