"""Transports: mucp over HTTP/1.1 (default), gRPC over HTTP/2."""

from .._metadata import canonical as canonical
from ._base import H2Handler as H2Handler
from ._base import Listener as Listener
from ._base import Message as Message
from ._base import Socket as Socket
from ._base import Transport as Transport
