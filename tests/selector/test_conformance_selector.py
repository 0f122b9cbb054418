"""The Selector conformance suite (trimicro.testing.conformance) against the caching selector with
each built-in strategy (random, roundrobin, p2c) and the uncached registry selector."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from trimicro.registry import Registry
from trimicro.selector import CachingSelector, RegistrySelector, strategy_from_name
from trimicro.testing.conformance import SelectorConformance


class CachedWith(SelectorConformance):
    strategy = "random"

    @pytest.fixture
    async def selector(self, registry: Registry) -> AsyncIterator[CachingSelector]:
        async with CachingSelector(registry, strategy=strategy_from_name(self.strategy)) as sel:
            yield sel


class TestRandom(CachedWith):
    strategy = "random"


class TestRoundRobin(CachedWith):
    strategy = "roundrobin"


class TestP2C(CachedWith):
    strategy = "p2c"


class TestRegistrySelector(SelectorConformance):
    @pytest.fixture
    async def selector(self, registry: Registry) -> AsyncIterator[RegistrySelector]:
        async with RegistrySelector(registry) as sel:
            yield sel
