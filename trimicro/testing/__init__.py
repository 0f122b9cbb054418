"""Test helpers: real etcd / nats-server processes and fixtures for trimicro tests."""

from .etcd import EtcdNotFound as EtcdNotFound
from .etcd import EtcdProcess as EtcdProcess
from .etcd import EtcdStartError as EtcdStartError
from .etcd import find_etcd as find_etcd
from .etcd import open_etcd as open_etcd
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
    "ZookeeperNotFound",
    "ZookeeperProcess",
    "ZookeeperStartError",
    "ensure_kafka",
    "find_etcd",
    "find_nats_server",
    "find_prometheus",
    "find_zookeeper",
    "open_ensemble",
    "open_etcd",
    "open_kafka",
    "open_nats_server",
    "open_prometheus",
    "open_zookeeper",
    "run_etcd",
]
