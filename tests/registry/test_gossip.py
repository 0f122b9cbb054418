"""The gossip registry over real UDP/TCP sockets on loopback: five members on 127.0.0.1-5."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from trimicro._plugins import create
from trimicro.config import load_options
from trimicro.errors import RegistryError
from trimicro.registry import Node, Result, Service
from trimicro.registry.gossip import GossipRegistry, SwimConfig, _member_services

FAST = SwimConfig(
    probe_interval=0.1, probe_timeout=0.05, gossip_interval=0.05, push_pull_interval=1.0,
    reconnect_interval=0.3, join_backoff_min=0.05, join_backoff_max=0.5,
)  # fmt: skip
BOUND = FAST.detection_bound(5)


def svc(name: str, node: str, port: int) -> Service:
    return Service(name=name, version="1", nodes=[Node(id=node, address=f"127.0.0.1:{port}")])


async def eventually(check: Callable[[], bool], timeout: float) -> None:
    """Poll ``check`` (cheap, in-memory) until true; fail after ``timeout`` seconds."""
    with trio.fail_after(timeout):
        while not check():
            await trio.sleep(0.02)


def node_ids(reg: GossipRegistry, name: str) -> set[str]:
    return {n.id for s in reg._services() if s.name == name for n in s.nodes}


def host(addr: str) -> str:
    return addr.rpartition(":")[0]


@asynccontextmanager
async def cluster(n: int) -> AsyncIterator[list[GossipRegistry]]:
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(GossipRegistry(address="127.0.0.1:0", config=FAST))
        regs = [first]
        for i in range(2, n + 1):
            reg = GossipRegistry(address=f"127.0.0.{i}:0", seeds=[first.bound_address], config=FAST)
            regs.append(await stack.enter_async_context(reg))
        yield regs


async def test_join_register_discover_watch() -> None:
    async with cluster(5) as regs:
        await eventually(lambda: all(len(r._view) == 4 for r in regs), 10)
        async with regs[4].watch("greeter") as watcher:
            await regs[1].register(svc("greeter", "g-1", 9001))
            await regs[2].register(svc("greeter", "g-2", 9002))
            await eventually(lambda: all(node_ids(r, "greeter") == {"g-1", "g-2"} for r in regs), 5)
            found = await regs[3].get_service("greeter")
            assert [s.version for s in found] == ["1"]
            assert {n.address for n in found[0].nodes} == {"127.0.0.1:9001", "127.0.0.1:9002"}
            assert {s.name for s in await regs[0].list_services()} == {"greeter"}
            await regs[1].deregister(svc("greeter", "g-1", 9001))
            await eventually(lambda: all(node_ids(r, "greeter") == {"g-2"} for r in regs), 5)
            events: list[Result] = []
            with trio.fail_after(5):
                async for ev in watcher:
                    events.append(ev)
                    if ev.action == "delete":
                        break
            seen = [(e.action, e.service.nodes[0].id) for e in events]
            assert sorted(seen[:2]) == [("create", "g-1"), ("create", "g-2")]
            assert seen[2:] == [("delete", "g-1")]


async def test_crashed_member_services_gone_within_bound() -> None:
    async with cluster(4) as regs, trio.open_nursery() as nursery:
        victim = GossipRegistry(address="127.0.0.9:0", seeds=[regs[0].bound_address], config=FAST)
        opened = trio.Event()

        async def run_victim(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
            with trio.CancelScope() as scope:
                task_status.started(scope)
                async with victim:
                    await victim.register(svc("doomed", "d-1", 9100))
                    opened.set()
                    await trio.sleep_forever()

        scope = await nursery.start(run_victim)
        await opened.wait()
        await eventually(lambda: all(node_ids(r, "doomed") == {"d-1"} for r in regs), 5)
        # abrupt: its goodbye never leaves (all its traffic is dropped), then it is cancelled
        victim.drop = lambda a, b: True
        scope.cancel()
        t0 = trio.current_time()
        await eventually(lambda: all(node_ids(r, "doomed") == set() for r in regs), BOUND + 2)
        took = trio.current_time() - t0
        print(f"crash detected by all in {took:.2f}s (bound {BOUND:.2f}s)")
        assert took <= BOUND + 0.5  # scheduling slack on a loaded 2-core machine


async def test_partition_heals() -> None:
    async with cluster(5) as regs:
        await eventually(lambda: all(len(r._view) == 4 for r in regs), 10)
        for i, r in enumerate(regs):
            await r.register(svc("part", f"p-{i}", 9200 + i))
        await eventually(lambda: all(len(node_ids(r, "part")) == 5 for r in regs), 5)
        side_a = {host(r.bound_address) for r in regs[:2]}

        def split(a: str, b: str) -> bool:
            return (host(a) in side_a) != (host(b) in side_a)

        for r in regs:
            r.drop = split
        await eventually(
            lambda: all(len(node_ids(r, "part")) == (2 if host(r.bound_address) in side_a else 3) for r in regs),
            2 * BOUND,
        )
        for r in regs:
            r.drop = None
        await eventually(lambda: all(len(node_ids(r, "part")) == 5 for r in regs), 10)


async def test_lone_node_and_unreachable_seed() -> None:
    reg = GossipRegistry(address="127.0.0.1:0", seeds=["127.0.0.1:1"], config=FAST)
    async with reg:
        await reg.register(svc("solo", "s-1", 9300))
        assert node_ids(reg, "solo") == {"s-1"}
        with trio.fail_after(3):
            assert [s.name for s in await reg.get_service("solo")] == ["solo"]
        # past the start-up join wait, a lone node answers at once although its seed never answers
        await trio.sleep(1.0)
        with trio.fail_after(0.1):
            assert await reg.get_service("nothing") == []


async def test_plugin_and_options() -> None:
    options = load_options(env={"MICRO_REGISTRY": "gossip", "MICRO_GOSSIP_ADDRESS": "127.0.0.3:0",
                                "MICRO_REGISTRY_ADDRESS": "127.0.0.1:7946"})  # fmt: skip
    reg = create("registry", options.registry, options)
    assert isinstance(reg, GossipRegistry)
    assert reg.address == "127.0.0.3:0" and reg.seeds == ["127.0.0.1:7946"]
    async with reg:
        assert reg.bound_address.startswith("127.0.0.3:")


@pytest.mark.parametrize("address", ["0.0.0.0:0", "nohost", "example.com:1"])
async def test_bad_address(address: str) -> None:
    with pytest.raises(RegistryError):
        async with GossipRegistry(address=address):
            pass


async def test_garbage_datagram_is_ignored() -> None:
    async with cluster(2) as regs:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        with sock:
            await sock.bind(("127.0.0.1", 0))
            host_, port = regs[0].bound_address.split(":")
            for junk in (b"\xff\x00", b"[]", b'[{"t":"ping","q":1}]'):
                await sock.sendto(junk, (host_, int(port)))
        await regs[1].register(svc("after", "a-1", 9400))
        await eventually(lambda: node_ids(regs[0], "after") == {"a-1"}, 5)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["name", "version", "nodes", "endpoints", "metadata", "id"]), inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_peer_metadata_garbage_never_raises(meta: object) -> None:
    for service in _member_services(meta):
        assert isinstance(service, Service)
