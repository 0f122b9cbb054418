"""The trimicro pytest plugin (entry point ``pytest11: trimicro``): fixtures for testing services.

Installed with trimicro, so any project's tests can use them (run under pytest-trio):

- ``trimicro_world``: a fresh :class:`~trimicro.testing.World` (memory registry, network, TestBroker);
- ``trimicro_service``: ``await trimicro_service(Greeter(), name="greeter")`` starts a service in the
  world, inside the fixture's nursery, and returns a :class:`~trimicro.testing.ServiceClient` bound to
  it; services started by one test share the world, so they can call each other;
- ``trimicro_client``: ``await trimicro_client()`` returns a standalone client of that world;
- ``trimicro_broker``: the world's :class:`~trimicro.testing.TestBroker`;
- ``trimicro_nats`` / ``trimicro_etcd`` / ``trimicro_zookeeper``: a real server on free 127.0.0.1
  ports for the test (skipped when the binary is not installed).

Everything stops when the test ends: the fixtures own the nurseries their services run in.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio

from ..client import Client
from ._broker import TestBroker
from ._serve import ServiceClient
from ._world import World
from .etcd import EtcdNotFound, EtcdProcess, open_etcd
from .nats import NatsServerNotFound, NatsServerProcess, open_nats_server

# Fixtures reach tests through pytest (the pytest11 entry point), not through imports.
__all__: list[str] = []


@pytest.fixture
def trimicro_world() -> World:
    """The registry, memory network and broker that this test's services and clients share."""
    return World()


@pytest.fixture
def trimicro_broker(trimicro_world: World) -> TestBroker:
    """The test broker of ``trimicro_world`` (``published[topic]``, ``await deliver(topic, msg)``)."""
    return trimicro_world.broker


@pytest.fixture
async def trimicro_service(trimicro_world: World) -> AsyncIterator[Callable[..., Awaitable[ServiceClient]]]:
    """``await trimicro_service(*handlers, name=..., **serve_options)`` -> a client bound to it."""
    async with trio.open_nursery() as nursery:

        async def start(*handlers: object, **kw: Any) -> ServiceClient:
            return await trimicro_world.start(nursery, *handlers, **kw)

        yield start
        nursery.cancel_scope.cancel()


@pytest.fixture
async def trimicro_client(trimicro_world: World) -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    """``await trimicro_client(**options)`` -> a standalone client of the test's world."""
    async with trio.open_nursery() as nursery:

        async def start(**kw: Any) -> Client:
            return await trimicro_world.start_client(nursery, **kw)

        yield start
        nursery.cancel_scope.cancel()


@pytest.fixture
async def trimicro_nats() -> AsyncIterator[NatsServerProcess]:
    """A real nats-server on a free loopback port (``.address``); skips without the binary."""
    try:
        async with open_nats_server() as server:
            yield server
    except NatsServerNotFound as exc:
        pytest.skip(str(exc))


@pytest.fixture
async def trimicro_etcd() -> AsyncIterator[EtcdProcess]:
    """A fresh single-member etcd on free loopback ports (``.endpoint``); skips without the binary."""
    try:
        async with open_etcd() as etcd:
            yield etcd
    except EtcdNotFound as exc:
        pytest.skip(str(exc))


@pytest.fixture
async def trimicro_zookeeper() -> AsyncIterator[Any]:
    """A real ZooKeeper on a free loopback port (``.endpoint``); skips without it."""
    try:
        zk: Any = importlib.import_module("trimicro.testing.zookeeper")
    except ImportError as exc:
        pytest.skip(f"trimicro.testing.zookeeper is not available: {exc}")
    try:
        async with zk.open_zookeeper() as server:
            yield server
    except zk.ZookeeperNotFound as exc:
        pytest.skip(str(exc))
