"""Fixtures for registry tests: a real etcd, ZooKeeper or nats-server on a free loopback port, one per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from trimicro.testing.etcd import EtcdNotFound, EtcdProcess, find_etcd, open_etcd
from trimicro.testing.nats import NatsServerNotFound, NatsServerProcess, open_nats_server
from trimicro.testing.zookeeper import ZookeeperNotFound, ZookeeperProcess, find_zookeeper, open_zookeeper


@pytest.fixture
async def etcd() -> AsyncIterator[EtcdProcess]:
    """A fresh single-member etcd (about 0.1 s to start); skips when the binary is missing."""
    try:
        find_etcd()
    except EtcdNotFound as exc:
        pytest.skip(str(exc))
    async with open_etcd() as process:
        yield process


@pytest.fixture
async def zookeeper() -> AsyncIterator[ZookeeperProcess]:
    """A fresh standalone ZooKeeper (a JVM: about 1 s to start); skips when it is not installed."""
    try:
        find_zookeeper()
    except ZookeeperNotFound as exc:
        pytest.skip(str(exc))
    async with open_zookeeper() as process:
        yield process


@pytest.fixture
async def nats_server() -> AsyncIterator[NatsServerProcess]:
    """A fresh nats-server on a free loopback port; skips when the binary is missing."""
    try:
        async with open_nats_server() as server:
            yield server
    except NatsServerNotFound as exc:
        pytest.skip(str(exc))
