"""The Registry conformance suite: what every :class:`~trimicro.registry.Registry` must do.

Subclass it in a test module and provide a ``registry`` fixture yielding an *open* registry::

    from trimicro.testing.conformance import RegistryConformance

    class TestMyRegistry(RegistryConformance):
        @pytest.fixture
        async def registry(self):
            async with MyRegistry(...) as reg:
                yield reg

Optionally override ``peer`` (a second open registry of the same backend, to check that another
client sees the records: a second etcd client, another mDNS responder); it defaults to ``registry``
itself. Class attributes tune the suite to the backend: ``ttl`` (the shortest TTL it honours, in
seconds), ``expiry_slack`` (how late an expired record may linger), ``settle`` (how long a write
may take to become visible to the peer) and ``keeps_alive`` (the registry refreshes its own records).

What it checks, from the contract in trimicro/registry/_base.py: register/get_service with every
field kept; nodes of one version accumulate; versions are separate services; list_services;
deregistering one node keeps the others and the last takes the service away; re-registering updates
a node; deregistering an unknown node is harmless; watch yields create/update/delete with only the
changed node, for one service or all; a record whose TTL lapses disappears (and a watcher hears of it).
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import trio

from ...registry import Endpoint, Node, Registry, Result, Service, Value
from ._util import eventually, unique

__all__ = ["RegistryConformance"]


def _service(name: str, node: str, *, version: str = "1.0", port: int = 8080, **md: str) -> Service:
    return Service(
        name=name,
        version=version,
        metadata={"team": "conformance"},
        endpoints=(
            Endpoint(
                "Greeter.Hello",
                Value("HelloRequest", "HelloRequest", (Value("name", "string"),)),
                Value("HelloResponse", "HelloResponse", (Value("greeting", "string"),)),
                {"stream": "false"},
            ),
        ),
        nodes=(Node(node, f"127.0.0.1:{port}", {"transport": "http", **md}),),
    )


def _nodes(services: list[Service]) -> dict[str, Node]:
    return {n.id: n for s in services for n in s.nodes}


class RegistryConformance:
    """Base class of a registry's conformance tests (see the module doc)."""

    ttl: ClassVar[float] = 1.0
    expiry_slack: ClassVar[float] = 5.0
    settle: ClassVar[float] = 5.0
    timeout: ClassVar[float] = 10.0  # bound on any single step
    #: True for a registry that refreshes its own registrations while open (etcd's keep-alive): the
    #: TTL check then asserts that a record outlives its TTL instead of expiring.
    keeps_alive: ClassVar[bool] = False

    @pytest.fixture
    async def peer(self, registry: Registry) -> Any:
        """Another client of the same registry; the registry itself unless overridden."""
        return registry

    async def _seen(self, reg: Registry, name: str, check: Any, what: str) -> list[Service]:
        return await eventually(lambda: reg.get_service(name), check, timeout=self.settle, what=what)

    async def test_register_and_get_keep_every_field(self, registry: Registry, peer: Registry) -> None:
        name = unique("conf-get")
        record = _service(name, f"{name}-1")
        await registry.register(record, ttl=60)
        [got] = await self._seen(peer, name, lambda s: bool(s and s[0].nodes), "registered service")
        assert (got.name, got.version, got.nodes) == (record.name, record.version, record.nodes)
        assert got.endpoints == record.endpoints
        assert got.metadata == record.metadata

    async def test_unknown_service_is_empty(self, registry: Registry) -> None:
        with trio.fail_after(self.timeout):
            assert await registry.get_service(unique("conf-nobody")) == []

    async def test_nodes_of_a_version_accumulate(self, registry: Registry, peer: Registry) -> None:
        name = unique("conf-nodes")
        await registry.register(_service(name, f"{name}-1", port=1), ttl=60)
        await registry.register(_service(name, f"{name}-2", port=2), ttl=60)
        got = await self._seen(peer, name, lambda s: len(_nodes(s)) == 2, "two nodes")
        assert len(got) == 1
        assert set(_nodes(got)) == {f"{name}-1", f"{name}-2"}

    async def test_versions_are_separate(self, registry: Registry, peer: Registry) -> None:
        name = unique("conf-versions")
        await registry.register(_service(name, f"{name}-1", version="1"), ttl=60)
        await registry.register(_service(name, f"{name}-2", version="2"), ttl=60)
        got = await self._seen(peer, name, lambda s: len(s) == 2, "two versions")
        assert {s.version: [n.id for n in s.nodes] for s in got} == {"1": [f"{name}-1"], "2": [f"{name}-2"]}

    async def test_list_services(self, registry: Registry, peer: Registry) -> None:
        name = unique("conf-list")
        await registry.register(_service(name, f"{name}-1"), ttl=60)
        listed = await eventually(
            peer.list_services, lambda ss: name in {s.name for s in ss}, timeout=self.settle, what="listed"
        )
        assert all(isinstance(s, Service) for s in listed)

    async def test_deregister_one_node_then_the_last(self, registry: Registry, peer: Registry) -> None:
        name = unique("conf-dereg")
        a, b = _service(name, f"{name}-1", port=1), _service(name, f"{name}-2", port=2)
        await registry.register(a, ttl=60)
        await registry.register(b, ttl=60)
        await self._seen(peer, name, lambda s: len(_nodes(s)) == 2, "two nodes")
        await registry.deregister(a)
        got = await self._seen(peer, name, lambda s: set(_nodes(s)) == {f"{name}-2"}, "one node left")
        assert _nodes(got)[f"{name}-2"] == b.nodes[0]
        await registry.deregister(b)
        await self._seen(peer, name, lambda s: s == [], "service gone with its last node")
        await eventually(
            peer.list_services,
            lambda ss: name not in {s.name for s in ss},
            timeout=self.settle,
            what="unlisted",
        )

    async def test_register_again_updates_the_node(self, registry: Registry, peer: Registry) -> None:
        name = unique("conf-update")
        await registry.register(_service(name, f"{name}-1", colour="red"), ttl=60)
        await self._seen(peer, name, lambda s: bool(_nodes(s)), "registered")
        await registry.register(_service(name, f"{name}-1", colour="blue"), ttl=60)
        got = await self._seen(
            peer, name, lambda s: _nodes(s).get(f"{name}-1", Node("", "")).metadata.get("colour") == "blue",
            "updated metadata",
        )  # fmt: skip
        assert len(_nodes(got)) == 1

    async def test_deregister_unknown_is_harmless(self, registry: Registry) -> None:
        with trio.fail_after(self.timeout):
            await registry.deregister(_service(unique("conf-ghost"), "ghost-1"))

    async def test_watch_one_service(self, registry: Registry, peer: Registry) -> None:
        name, other = unique("conf-watch"), unique("conf-other")
        record = _service(name, f"{name}-1")
        async with peer.watch(name) as watcher:
            with trio.fail_after(self.timeout):
                await registry.register(_service(other, f"{other}-1"), ttl=60)  # filtered out
                await registry.register(record, ttl=60)
                created = await watcher.__anext__()
                assert (created.action, created.service.name) == ("create", name)
                assert created.service.nodes == record.nodes
                await registry.register(_service(name, f"{name}-2", port=2), ttl=60)
                second = await watcher.__anext__()
                assert second.action == "create"
                assert [n.id for n in second.service.nodes] == [f"{name}-2"]  # only the changed node
                await registry.deregister(record)
                deleted = await watcher.__anext__()
                assert deleted.action == "delete"
                assert [n.id for n in deleted.service.nodes] == [f"{name}-1"]

    async def test_watch_sees_updates(self, registry: Registry, peer: Registry) -> None:
        name = unique("conf-watchup")
        async with peer.watch(name) as watcher:
            with trio.fail_after(self.timeout):
                await registry.register(_service(name, f"{name}-1", colour="red"), ttl=60)
                assert (await watcher.__anext__()).action == "create"
                await registry.register(_service(name, f"{name}-1", colour="blue"), ttl=60)
                event = await watcher.__anext__()
                assert event.action == "update"
                assert event.service.nodes[0].metadata["colour"] == "blue"

    async def test_watch_all(self, registry: Registry, peer: Registry) -> None:
        names = [unique("conf-all"), unique("conf-all")]
        async with peer.watch() as watcher:
            with trio.fail_after(self.timeout):
                for n in names:
                    await registry.register(_service(n, f"{n}-1"), ttl=60)
                seen: set[str] = set()
                async for event in watcher:
                    assert isinstance(event, Result)
                    if event.service.name in names and event.action == "create":
                        seen.add(event.service.name)
                    if seen == set(names):
                        break

    async def test_ttl_expiry(self, registry: Registry, peer: Registry) -> None:
        if self.keeps_alive:
            return await self._check_kept_alive(registry, peer)
        name = unique("conf-ttl")
        async with peer.watch(name) as watcher:
            await registry.register(_service(name, f"{name}-1"), ttl=self.ttl)
            await self._seen(peer, name, lambda s: bool(_nodes(s)), "registered")
            with trio.fail_after(self.ttl + self.expiry_slack):
                actions = []
                async for event in watcher:
                    actions.append(event.action)
                    if event.action == "delete":
                        break
            assert actions[0] == "create"
        with trio.fail_after(self.timeout):
            assert _nodes(await peer.get_service(name)) == {}

    async def _check_kept_alive(self, registry: Registry, peer: Registry) -> None:
        name = unique("conf-alive")
        async with peer.watch(name) as watcher:
            await registry.register(_service(name, f"{name}-1"), ttl=self.ttl)
            with trio.fail_after(self.timeout):
                assert (await watcher.__anext__()).action == "create"
            with trio.move_on_after(self.ttl * 3):  # three TTLs: no delete may arrive
                async for event in watcher:
                    assert event.action != "delete", "a kept-alive record expired"
        assert _nodes(await peer.get_service(name))
