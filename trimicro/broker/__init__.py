"""Pub/sub brokers: the :class:`Broker` contract and implementations (http, memory, nats, and the
lazy broker a Service opens on first use)."""

from ._base import Broker as Broker
from ._base import BrokerMessage as BrokerMessage
from ._base import Event as Event
from ._base import Handler as Handler
from ._base import Subscription as Subscription
from .lazy import LazyBroker as LazyBroker
from .memory import BrokerStats as BrokerStats
from .memory import MemoryBroker as MemoryBroker
from .nats import NatsBroker as NatsBroker
