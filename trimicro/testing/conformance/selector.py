"""The Selector conformance suite: what every :class:`~trimicro.selector.Selector` must do.

Subclass it and provide a ``selector`` fixture yielding an *open* selector that reads the
``registry`` fixture (a fresh :class:`~trimicro.registry.MemoryRegistry` unless overridden)::

    class TestMySelector(SelectorConformance):
        @pytest.fixture
        async def selector(self, registry):
            async with MySelector(registry) as sel:
                yield sel

``spread``: whether the strategy is expected to use every node over many picks (a sticky strategy
sets it False); ``settle``: how long a registry change may take to reach the selector.

What it checks (trimicro/selector/_base.py): an unknown service raises
:class:`~trimicro.errors.ServiceNotFound` (from ``select`` or from ``next()``); ``next()`` yields
nodes of the service, and over many picks all of them; filters narrow the choice (version, label,
endpoint) and a filter leaving nothing is ServiceNotFound; a per-call ``strategy`` is used;
``mark`` accepts success and failure; a node registered or deregistered later is picked up or dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest
import trio

from ...errors import ServiceNotFound
from ...registry import Endpoint, MemoryRegistry, Node, Registry, Service
from ...selector import Next, Selector, filter_endpoint, filter_label, filter_version
from ._util import unique

__all__ = ["SelectorConformance"]


def _record(name: str, version: str, *node_ids: str, **md: str) -> Service:
    return Service(
        name=name,
        version=version,
        endpoints=(Endpoint("Greeter.Hello"),),
        nodes=tuple(Node(n, f"127.0.0.1:{1000 + i}", dict(md)) for i, n in enumerate(node_ids)),
    )


class SelectorConformance:
    """Base class of a selector's conformance tests (see the module doc)."""

    spread: ClassVar[bool] = True
    picks: ClassVar[int] = 300
    settle: ClassVar[float] = 5.0

    @pytest.fixture
    def registry(self) -> Registry:
        return MemoryRegistry()

    async def _pick(self, selector: Selector, name: str, **kw: Any) -> set[str]:
        nxt = await selector.select(name, **kw)
        return {nxt().id for _ in range(self.picks)}

    async def _not_found(self, selector: Selector, name: str, **kw: Any) -> None:
        with pytest.raises(ServiceNotFound):
            nxt = await selector.select(name, **kw)
            nxt()

    async def _until(self, selector: Selector, name: str, check: Callable[[set[str]], bool]) -> set[str]:
        """Pick until ``check`` holds: a selector may learn of registry changes a little later."""
        seen: set[str] = set()
        with trio.move_on_after(self.settle):
            while True:
                try:
                    seen = await self._pick(selector, name)
                except ServiceNotFound:
                    seen = set()
                if check(seen):
                    return seen
                await trio.sleep(0.01)
        raise AssertionError(f"selector never converged for {name}; last picks {seen}")

    async def test_unknown_service(self, selector: Selector) -> None:
        await self._not_found(selector, unique("conf-nobody"))

    async def test_picks_nodes_of_the_service(self, selector: Selector, registry: Registry) -> None:
        name = unique("conf-sel")
        await registry.register(_record(name, "1", "a", "b", "c"), ttl=60)
        await registry.register(_record(unique("conf-other"), "1", "x"), ttl=60)
        picked = await self._pick(selector, name)
        assert picked <= {"a", "b", "c"}
        if self.spread:
            assert picked == {"a", "b", "c"}

    async def test_next_returns_nodes(self, selector: Selector, registry: Registry) -> None:
        name = unique("conf-next")
        record = _record(name, "1", "only")
        await registry.register(record, ttl=60)
        nxt: Next = await selector.select(name)
        node = nxt()
        assert isinstance(node, Node)
        assert (node.id, node.address) == ("only", record.nodes[0].address)

    async def test_filters(self, selector: Selector, registry: Registry) -> None:
        name = unique("conf-filter")
        await registry.register(_record(name, "1", "v1-a", "v1-b", zone="north"), ttl=60)
        await registry.register(_record(name, "2", "v2-a", zone="south"), ttl=60)
        assert await self._pick(selector, name, filters=[filter_version("2")]) == {"v2-a"}
        north = await self._pick(selector, name, filters=[filter_label("zone", "north")])
        assert north <= {"v1-a", "v1-b"} and north
        assert await self._pick(selector, name, filters=[filter_endpoint("Greeter.Hello")])
        await self._not_found(selector, name, filters=[filter_version("3")])
        await self._not_found(selector, name, filters=[filter_endpoint("Nope.Nothing")])

    async def test_per_call_strategy(self, selector: Selector, registry: Registry) -> None:
        name = unique("conf-strategy")
        await registry.register(_record(name, "1", "a", "b"), ttl=60)
        calls: list[int] = []

        def always_b(services: list[Service]) -> Next:
            calls.append(1)
            nodes = [n for s in services for n in s.nodes if n.id == "b"]
            return lambda: nodes[0]

        assert await self._pick(selector, name, strategy=always_b) == {"b"}
        assert calls

    async def test_mark(self, selector: Selector, registry: Registry) -> None:
        name = unique("conf-mark")
        await registry.register(_record(name, "1", "a", "b"), ttl=60)
        nxt = await selector.select(name)
        node = nxt()
        selector.mark(name, node, None)
        selector.mark(name, node, RuntimeError("conformance: a failed call"))
        assert await self._pick(selector, name)  # still selectable

    async def test_follows_the_registry(self, selector: Selector, registry: Registry) -> None:
        name = unique("conf-follow")
        first = _record(name, "1", "a")
        await registry.register(first, ttl=60)
        assert await self._pick(selector, name) == {"a"}
        await registry.register(_record(name, "1", "b"), ttl=60)
        await self._until(selector, name, lambda s: "b" in s if not self.spread else s == {"a", "b"})
        await registry.deregister(first)
        await self._until(selector, name, lambda s: s == {"b"})
        await registry.deregister(_record(name, "1", "b"))
        await self._until(selector, name, lambda s: s == set())
