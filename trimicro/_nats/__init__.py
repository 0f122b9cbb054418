"""trimicro's trio-native NATS client, shared by the nats broker, registry, transport and events.

Private to trimicro (any of its packages may use it; users pick ``nats`` plugins by name):
``protocol`` is the sans-IO NATS protocol (parser and command encoders), ``client`` the trio client
on it (reconnect, resubscribe, request/reply), ``connect`` the bounded-retry opening every nats plugin
uses.
"""

from . import protocol as protocol
from .client import NatsClient as NatsClient
from .client import NatsSubscription as NatsSubscription
from .client import NoResponders as NoResponders
from .client import RequestTimeout as RequestTimeout
from .client import parse_server as parse_server
from .client import str_list as str_list
from .connect import DEFAULT_NATS_ADDRESS as DEFAULT_NATS_ADDRESS
from .connect import nats_servers as nats_servers
from .connect import open_nats as open_nats
from .protocol import Msg as Msg
from .protocol import validate_subject as validate_subject

__all__ = [
    "DEFAULT_NATS_ADDRESS",
    "Msg",
    "NatsClient",
    "NatsSubscription",
    "NoResponders",
    "RequestTimeout",
    "nats_servers",
    "open_nats",
    "parse_server",
    "protocol",
    "str_list",
    "validate_subject",
]
