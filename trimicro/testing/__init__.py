"""Testing kit: serve services in-process, a recording broker, dependency replacement, real servers.

``async with trimicro.testing.serve(Greeter(), name="greeter") as client:`` runs the handlers as a
real service on memory plugins and yields a client bound to it; :class:`TestBroker` records publishes
and delivers to subscribers on demand; :func:`worker_factory` swaps a handler's dependencies; the
pytest plugin (``trimicro.testing.plugin``, loaded automatically once trimicro is installed) turns
these into fixtures, with real nats-server / etcd / ZooKeeper on loopback. Conformance suites for
plugin authors live in :mod:`trimicro.testing.conformance`.
"""

from ._broker import TestBroker as TestBroker
from ._broker import TestSubscription as TestSubscription
from ._deps import autospec as autospec
from ._deps import worker_factory as worker_factory
from ._process import free_port as free_port
from ._serve import ServiceClient as ServiceClient
from ._serve import serve as serve
from ._world import World as World
from .etcd import EtcdNotFound as EtcdNotFound
from .etcd import EtcdProcess as EtcdProcess
from .etcd import EtcdStartError as EtcdStartError
from .etcd import find_etcd as find_etcd
from .etcd import open_etcd as open_etcd
from .etcd import open_etcd_cluster as open_etcd_cluster
from .etcd import run_etcd as run_etcd
from .kafka import KAFKA_VERSION as KAFKA_VERSION
from .kafka import KafkaNotFound as KafkaNotFound
from .kafka import KafkaProcess as KafkaProcess
from .kafka import KafkaStartError as KafkaStartError
from .kafka import ensure_kafka as ensure_kafka
from .kafka import open_kafka as open_kafka
from .nats import NatsServerNotFound as NatsServerNotFound
from .nats import NatsServerProcess as NatsServerProcess
from .nats import NatsStartError as NatsStartError
from .nats import find_nats_server as find_nats_server
from .nats import open_nats_server as open_nats_server
from .prometheus import PrometheusNotFound as PrometheusNotFound
from .prometheus import PrometheusServer as PrometheusServer
from .prometheus import find_prometheus as find_prometheus
from .prometheus import open_prometheus as open_prometheus
from .zookeeper import ZookeeperNotFound as ZookeeperNotFound
from .zookeeper import ZookeeperProcess as ZookeeperProcess
from .zookeeper import ZookeeperStartError as ZookeeperStartError
from .zookeeper import find_zookeeper as find_zookeeper
from .zookeeper import open_ensemble as open_ensemble
from .zookeeper import open_zookeeper as open_zookeeper

__all__ = [
    "KAFKA_VERSION",
    "EtcdNotFound",
    "EtcdProcess",
    "EtcdStartError",
    "KafkaNotFound",
    "KafkaProcess",
    "KafkaStartError",
    "NatsServerNotFound",
    "NatsServerProcess",
    "NatsStartError",
    "PrometheusNotFound",
    "PrometheusServer",
    "ServiceClient",
    "TestBroker",
    "TestSubscription",
    "World",
    "ZookeeperNotFound",
    "ZookeeperProcess",
    "ZookeeperStartError",
    "autospec",
    "ensure_kafka",
    "find_etcd",
    "find_nats_server",
    "find_prometheus",
    "find_zookeeper",
    "free_port",
    "open_ensemble",
    "open_etcd",
    "open_etcd_cluster",
    "open_kafka",
    "open_nats_server",
    "open_prometheus",
    "open_zookeeper",
    "run_etcd",
    "serve",
    "worker_factory",
]
