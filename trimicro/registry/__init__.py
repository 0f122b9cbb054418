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
from .mdns import MDNS_GROUP as MDNS_GROUP
from .mdns import MDNS_PORT as MDNS_PORT
from .mdns import MdnsRegistry as MdnsRegistry
from .memory import MemoryRegistry as MemoryRegistry
from .memory import MemoryWatcher as MemoryWatcher

__all__ = [
    "MDNS_GROUP",
    "MDNS_PORT",
    "PREFIX",
    "Endpoint",
    "EtcdRegistry",
    "EtcdWatcher",
    "MdnsRegistry",
    "MemoryRegistry",
    "MemoryWatcher",
    "Node",
    "Registry",
    "Result",
    "Service",
    "Value",
    "Watcher",
    "node_path",
    "service_path",
]
