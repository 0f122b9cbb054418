"""The in-process memory registry: register/get/list/watch, TTL expiry on trio's clock, deregister."""

from __future__ import annotations

import trio
import trio.testing

from trimicro.config import Options
from trimicro.registry import MemoryRegistry, Node, Registry, Result, Service
from trimicro.registry.memory import from_options


def svc(node: str = "n1", name: str = "greeter", version: str = "1.0", **meta: str) -> Service:
    return Service(name, version, nodes=[Node(node, f"127.0.0.1:{len(node)}", meta)])


async def test_is_a_registry() -> None:
    async with MemoryRegistry() as reg:
        assert isinstance(reg, Registry)
    assert from_options(Options()) is from_options(Options())


async def test_register_get_list_merges_nodes_per_version() -> None:
    reg = MemoryRegistry()
    await reg.register(svc("n1"))
    await reg.register(svc("n2"))
    await reg.register(svc("v2", version="2.0"))
    await reg.register(svc("o1", name="other"))
    got = {s.version: sorted(n.id for n in s.nodes) for s in await reg.get_service("greeter")}
    assert got == {"1.0": ["n1", "n2"], "2.0": ["v2"]}
    assert sorted(s.name for s in await reg.list_services()) == ["greeter", "greeter", "other"]
    assert await reg.get_service("nobody") == []


async def test_deregister_removes_node_then_service() -> None:
    reg = MemoryRegistry()
    await reg.register(svc("n1"))
    await reg.register(svc("n2"))
    await reg.deregister(svc("n1"))
    assert [n.id for s in await reg.get_service("greeter") for n in s.nodes] == ["n2"]
    await reg.deregister(svc("n2"))
    assert await reg.get_service("greeter") == []
    await reg.deregister(svc("n2"))  # unknown: no error


async def test_watch_events() -> None:
    reg = MemoryRegistry()
    async with reg.watch("greeter") as watcher:
        await reg.register(svc("o1", name="other"))  # filtered out
        await reg.register(svc("n1"))
        await reg.register(svc("n1", colour="blue"))
        await reg.deregister(svc("n1"))
        with trio.fail_after(1):
            events = [await watcher.__anext__() for _ in range(3)]
    assert [e.action for e in events] == ["create", "update", "delete"]
    assert events[1] == Result("update", svc("n1", colour="blue"))


async def test_watch_all_and_end_of_iteration() -> None:
    reg = MemoryRegistry()
    async with reg.watch() as watcher:
        await reg.register(svc("o1", name="other"))
        with trio.fail_after(1):
            assert (await watcher.__anext__()).service.name == "other"
    # after the block the stream is closed: iteration ends
    assert [e async for e in watcher] == []


async def test_ttl_expiry(autojump_clock: trio.testing.MockClock) -> None:
    reg = MemoryRegistry()
    async with reg.watch() as watcher:
        await reg.register(svc("n1"), ttl=10)
        await reg.register(svc("n2"))  # no ttl: stays
        await trio.sleep(5)
        await reg.register(svc("n1"), ttl=10)  # refreshed at t=5 -> lives until t=15
        await trio.sleep(9)
        assert len((await reg.get_service("greeter"))[0].nodes) == 2
        await trio.sleep(2)
        (left,) = await reg.get_service("greeter")
        assert [n.id for n in left.nodes] == ["n2"]
        actions = [(await watcher.__anext__()).action for _ in range(4)]
    assert actions == ["create", "create", "update", "delete"]


async def test_default_ttl(autojump_clock: trio.testing.MockClock) -> None:
    reg = MemoryRegistry(default_ttl=3)
    await reg.register(svc("n1"))
    await trio.sleep(3)
    assert await reg.get_service("greeter") == []


async def test_slow_watcher_is_closed_not_blocking() -> None:
    reg = MemoryRegistry()
    async with reg.watch() as watcher:
        for i in range(1100):  # more than the watcher's buffer
            await reg.register(svc(f"n{i}"))
        received = [e async for e in watcher]  # the stream ends instead of blocking the registry
    assert 0 < len(received) <= 1000
