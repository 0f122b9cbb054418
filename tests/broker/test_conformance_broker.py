"""The Broker conformance suite (trimicro.testing.conformance) against every built-in broker, and the
test kit's TestBroker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from trimicro.broker import MemoryBroker, NatsBroker
from trimicro.broker.http import HttpBroker
from trimicro.registry import MemoryRegistry
from trimicro.testing import TestBroker
from trimicro.testing.conformance import BrokerConformance
from trimicro.testing.nats import NatsServerProcess


class TestMemoryBroker(BrokerConformance):
    @pytest.fixture
    async def broker(self) -> AsyncIterator[MemoryBroker]:
        async with MemoryBroker() as broker:
            yield broker


class TestTestBroker(BrokerConformance):
    """The kit's recording broker is a broker too."""

    @pytest.fixture
    async def broker(self) -> AsyncIterator[TestBroker]:
        async with TestBroker() as broker:
            yield broker


@pytest.mark.loopback
class TestHttpBroker(BrokerConformance):
    """Two http broker nodes that meet through one registry; ``peer`` publishes to both."""

    @pytest.fixture
    def registry(self) -> MemoryRegistry:
        return MemoryRegistry()

    @pytest.fixture
    async def broker(self, registry: MemoryRegistry) -> AsyncIterator[HttpBroker]:
        async with HttpBroker(registry=registry) as broker:
            yield broker

    @pytest.fixture
    async def peer(self, registry: MemoryRegistry) -> AsyncIterator[HttpBroker]:
        async with HttpBroker(registry=registry) as broker:
            yield broker


@pytest.mark.loopback
class TestNatsBroker(BrokerConformance):
    """Two connections to one real nats-server (trimicro.testing.nats)."""

    @pytest.fixture
    async def broker(self, nats_server: NatsServerProcess) -> AsyncIterator[NatsBroker]:
        async with NatsBroker([nats_server.address]) as broker:
            yield broker

    @pytest.fixture
    async def peer(self, nats_server: NatsServerProcess) -> AsyncIterator[NatsBroker]:
        async with NatsBroker([nats_server.address]) as broker:
            yield broker
