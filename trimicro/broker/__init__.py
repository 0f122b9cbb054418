"""Pub/sub brokers: the :class:`Broker` contract and implementations (http, memory, nats, and the
lazy broker a Service opens on first use)."""

from ._base import Broker as Broker
from ._base import BrokerMessage as BrokerMessage
from ._base import Event as Event
from ._base import Handler as Handler
from ._base import Subscription as Subscription
from ._envelope import decode_envelope as decode_envelope
from ._envelope import encode_envelope as encode_envelope
from .http import HttpBroker as HttpBroker
from .http import HttpBrokerStats as HttpBrokerStats
from .http import HttpEvent as HttpEvent
from .http import HttpSubscription as HttpSubscription
from .lazy import LazyBroker as LazyBroker
from .memory import BrokerStats as BrokerStats
from .memory import MemoryBroker as MemoryBroker
from .memory import MemoryEvent as MemoryEvent
from .memory import MemorySubscription as MemorySubscription
from .nats import NatsBroker as NatsBroker
from .nats import NatsBrokerSubscription as NatsBrokerSubscription
from .nats import NatsEvent as NatsEvent
from .nats import decode_message as decode_message
from .nats import encode_gomicro as encode_gomicro

__all__ = [
    "Broker",
    "BrokerMessage",
    "BrokerStats",
    "Event",
    "Handler",
    "HttpBroker",
    "HttpBrokerStats",
    "HttpEvent",
    "HttpSubscription",
    "LazyBroker",
    "MemoryBroker",
    "MemoryEvent",
    "MemorySubscription",
    "NatsBroker",
    "NatsBrokerSubscription",
    "NatsEvent",
    "Subscription",
    "decode_envelope",
    "decode_message",
    "encode_envelope",
    "encode_gomicro",
]
