"""The Registry conformance suite (trimicro.testing.conformance) against every built-in registry."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from trimicro.registry import MemoryRegistry
from trimicro.registry.etcd import EtcdRegistry
from trimicro.registry.mdns import MdnsRegistry
from trimicro.testing.conformance import RegistryConformance
from trimicro.testing.etcd import EtcdProcess


class TestMemoryRegistry(RegistryConformance):
    ttl = 0.3
    expiry_slack = 2.0

    @pytest.fixture
    async def registry(self) -> AsyncIterator[MemoryRegistry]:
        async with MemoryRegistry() as reg:
            yield reg


@pytest.mark.loopback
class TestMdnsRegistry(RegistryConformance):
    """Two responders on a private multicast port of the loopback interface: one registers, the other
    (``peer``) reads and watches."""

    ttl = 1.0

    @pytest.fixture
    def port(self) -> int:
        return random.randrange(20000, 60000)

    @pytest.fixture
    async def registry(self, port: int) -> AsyncIterator[MdnsRegistry]:
        async with MdnsRegistry(port=port) as reg:
            yield reg

    @pytest.fixture
    async def peer(self, port: int) -> AsyncIterator[MdnsRegistry]:
        async with MdnsRegistry(port=port) as reg:
            yield reg


@pytest.mark.loopback
class TestEtcdRegistry(RegistryConformance):
    """A real etcd (trimicro.testing.etcd); ``peer`` is a second client of it. etcd's shortest lease
    is one second; the registry keeps its leases alive while open (unlike Go Micro's)."""

    ttl = 1.0
    keeps_alive = True

    @pytest.fixture
    async def registry(self, etcd: EtcdProcess) -> AsyncIterator[EtcdRegistry]:
        async with EtcdRegistry([etcd.endpoint], timeout=2.0) as reg:
            yield reg

    @pytest.fixture
    async def peer(self, etcd: EtcdProcess) -> AsyncIterator[EtcdRegistry]:
        async with EtcdRegistry([etcd.endpoint], timeout=2.0) as reg:
            yield reg
