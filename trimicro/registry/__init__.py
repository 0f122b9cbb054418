"""Service discovery: the :class:`Registry` contract, Go Micro's record types and implementations."""

from ._base import Registry as Registry
from ._base import Watcher as Watcher
from ._model import Endpoint as Endpoint
from ._model import Node as Node
from ._model import Result as Result
from ._model import Service as Service
from ._model import Value as Value
from .etcd import PREFIX as PREFIX
from .etcd import EtcdRegistry as EtcdRegistry
from .etcd import EtcdWatcher as EtcdWatcher
from .etcd import node_path as node_path
from .etcd import service_path as service_path
from .gossip import GossipRegistry as GossipRegistry
from .gossip import SwimConfig as SwimConfig
from .mdns import MDNS_GROUP as MDNS_GROUP
from .mdns import MDNS_PORT as MDNS_PORT
from .mdns import MdnsRegistry as MdnsRegistry
from .memory import MemoryRegistry as MemoryRegistry
from .memory import MemoryWatcher as MemoryWatcher
from .nats import QUERY_TOPIC as QUERY_TOPIC
from .nats import WATCH_TOPIC as WATCH_TOPIC
from .nats import NatsRegistry as NatsRegistry
from .nats import NatsWatcher as NatsWatcher
from .nats import decode_result as decode_result
from .nats import encode_result as encode_result
from .zookeeper import ZookeeperRegistry as ZookeeperRegistry
from .zookeeper import ZookeeperWatcher as ZookeeperWatcher
from .zookeeper import zookeeper_answers as zookeeper_answers

__all__ = [
    "MDNS_GROUP",
    "MDNS_PORT",
    "PREFIX",
    "QUERY_TOPIC",
    "WATCH_TOPIC",
    "Endpoint",
    "EtcdRegistry",
    "EtcdWatcher",
    "GossipRegistry",
    "MdnsRegistry",
    "MemoryRegistry",
    "MemoryWatcher",
    "NatsRegistry",
    "NatsWatcher",
    "Node",
    "Registry",
    "Result",
    "Service",
    "SwimConfig",
    "Value",
    "Watcher",
    "ZookeeperRegistry",
    "ZookeeperWatcher",
    "decode_result",
    "encode_result",
    "node_path",
    "service_path",
    "zookeeper_answers",
]
