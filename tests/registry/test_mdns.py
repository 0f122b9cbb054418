"""The mdns registry: the sans-IO state machine directly, then real registries over 127.0.0.1 multicast."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from trimicro.config import Options
from trimicro.errors import RegistryError
from trimicro.registry import Endpoint, Node, Result, Service
from trimicro.registry._mdns_proto import MdnsState, decode_txt, encode_txt, instance_name
from trimicro.registry.mdns import MdnsRegistry, from_options


def svc(
    name: str = "greeter", node: str = "greeter-1", port: int = 1234, version: str = "1.0", **meta: str
) -> Service:
    return Service(
        name, version, nodes=[Node(node, f"127.0.0.1:{port}", meta)], endpoints=[Endpoint("Greeter.Hello")]
    )


# -- sans-IO ---------------------------------------------------------------------------------------


def test_txt_round_trip() -> None:
    s = svc(meta="x" * 2000)  # spans several 255-byte strings before compression would shrink it
    assert decode_txt(encode_txt(s)) == s


@pytest.mark.parametrize("rdata", [b"", b"\x05ab", b"\x04tm=1\x03abc", b"\x03foo", b"\x04tm=2\x01a"])
def test_txt_rejects_foreign(rdata: bytes) -> None:
    with pytest.raises(ValueError):
        decode_txt(rdata)


def test_instance_name_hashes_unsafe_ids() -> None:
    assert instance_name(Node("greeter-1", "")) == "greeter-1._micro._tcp.local."
    hashed = instance_name(Node("go.micro.srv.greeter-" + "a" * 80, ""))
    assert "." not in hashed.split("._micro")[0]


def test_publish_learn_goodbye() -> None:
    a, b = MdnsState(), MdnsState()
    s = svc()
    out = a.publish(s, 30, now=0.0)
    assert out.events == (Result("create", s),)
    learned = [e for p in out.packets for e in b.receive(p, now=0.0).events]
    assert learned == [Result("create", s)]
    assert b.services("greeter") == [s]
    # the same announcement again only refreshes
    assert [e for p in out.packets for e in b.receive(p, now=1.0).events] == []
    # changed metadata -> update
    s2 = svc(extra="1")
    out2 = a.publish(s2, 30, now=2.0)
    assert [e for p in out2.packets for e in b.receive(p, now=2.0).events] == [Result("update", s2)]
    bye = a.unpublish(s2)
    assert bye.events == (Result("delete", s2),)
    assert [e for p in bye.packets for e in b.receive(p, now=3.0).events] == [Result("delete", s2)]
    assert b.services() == []


def test_query_is_answered_with_all_nodes() -> None:
    a, b = MdnsState(), MdnsState()
    a.publish(svc(node="n1", port=1), None, now=0.0)
    a.publish(svc(node="n2", port=2), None, now=0.0)
    answers = [p for q in b.query().packets for p in a.receive(q, now=0.0).packets]
    assert answers
    for p in answers:
        b.receive(p, now=0.0)
    (got,) = b.services("greeter")
    assert sorted(n.id for n in got.nodes) == ["n1", "n2"]


def test_ttl_expiry_and_reannounce() -> None:
    a, b = MdnsState(), MdnsState()
    s = svc()
    for p in a.publish(s, 10, now=0.0).packets:
        b.receive(p, now=0.0)
    # a re-announces once, a second later (RFC 6762 s8.3)
    assert a.next_deadline() == 1.0
    assert a.tick(1.0).packets
    assert b.next_deadline() == 10.0
    assert b.tick(9.9).events == ()
    assert b.tick(10.0).events == (Result("delete", s),)
    assert a.tick(10.0).events == (Result("delete", s),)  # its own record lapses too


def test_no_ttl_keeps_announcing() -> None:
    a = MdnsState()
    a.publish(svc(), None, now=0.0)
    assert a.tick(1.0).packets
    deadline = a.next_deadline()
    assert 1.0 < deadline < 1.0 + 120
    assert a.tick(deadline).packets
    assert a.services("greeter")


def test_oversized_record_is_a_typed_error() -> None:
    big = Service("big", nodes=[Node("n", "127.0.0.1:1", {"k": random.randbytes(20000).hex()})])
    with pytest.raises(RegistryError, match="bytes"):
        MdnsState().publish(big, 10, now=0.0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_receive_survives_garbage(data: bytes) -> None:
    state = MdnsState()
    state.publish(svc(), None, now=0.0)
    state.receive(data, now=0.0)  # never raises
    assert state.services("greeter")


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 400), st.binary(min_size=1, max_size=1))
def test_receive_survives_corrupted_announcements(pos: int, byte: bytes) -> None:
    packet = bytearray(MdnsState().publish(svc(), 10, now=0.0).packets[0])
    packet[pos % len(packet)] = byte[0]
    MdnsState().receive(bytes(packet), now=0.0)


# -- real registries on 127.0.0.1 ------------------------------------------------------------------


@pytest.fixture
def port() -> int:
    """A private multicast port per test, so concurrent test runs do not see each other's records."""
    return random.randrange(20000, 60000)


async def wait_for(cond: Callable[[], object], timeout: float = 3.0) -> None:
    with trio.fail_after(timeout):
        while not cond():
            await trio.sleep(0.01)


@pytest.mark.loopback
async def test_register_get_list_watch_deregister(port: int) -> None:
    async with MdnsRegistry(port=port) as a, MdnsRegistry(port=port) as b:
        async with b.watch("greeter") as watcher:
            s = svc()
            with trio.fail_after(3):
                await a.register(s, ttl=30)
                assert await watcher.__anext__() == Result("create", s)
                assert await b.get_service("greeter") == [s]
                assert s in await b.list_services()
                await a.deregister(s)
                assert await watcher.__anext__() == Result("delete", s)
            with trio.fail_after(3):
                assert await b.get_service("greeter") == []  # miss -> bounded query, nobody answers


@pytest.mark.loopback
async def test_late_joiner_finds_existing_nodes(port: int) -> None:
    async with MdnsRegistry(port=port) as a:
        await a.register(svc(node="n1", port=1))
        await a.register(svc(node="n2", port=2))
        async with MdnsRegistry(port=port) as b:
            with trio.fail_after(3):
                assert await b.get_service("greeter")  # cache miss -> query -> both answer
            await wait_for(lambda: len(b._state.services("greeter")[0].nodes) == 2)
            names = {s.name for s in await b.list_services()}
            assert names == {"greeter"}


@pytest.mark.loopback
async def test_watch_all_sees_update_and_versions(port: int) -> None:
    async with MdnsRegistry(port=port) as a, MdnsRegistry(port=port) as b:
        async with b.watch() as watcher:
            with trio.fail_after(3):
                await a.register(svc("one", "one-1"))
                await a.register(svc("two", "two-1", version="2"))
                await a.register(svc("one", "one-1", colour="blue"))
                events = [await watcher.__anext__() for _ in range(3)]
        assert [(e.action, e.service.name) for e in events] == [
            ("create", "one"),
            ("create", "two"),
            ("update", "one"),
        ]
        assert events[2].service.nodes[0].metadata == {"colour": "blue"}


@pytest.mark.loopback
async def test_closing_sends_goodbye(port: int) -> None:
    async with MdnsRegistry(port=port) as b:
        async with b.watch("greeter") as watcher:
            async with MdnsRegistry(port=port) as a:
                await a.register(svc())
                with trio.fail_after(3):
                    assert (await watcher.__anext__()).action == "create"
            with trio.fail_after(3):
                assert (await watcher.__anext__()).action == "delete"


@pytest.mark.loopback
async def test_ttl_expires_on_peer(port: int) -> None:
    async with MdnsRegistry(port=port) as a, MdnsRegistry(port=port) as b:
        await a.register(svc(), ttl=1)
        await wait_for(lambda: b._state.services("greeter"))
        await wait_for(lambda: not b._state.services("greeter"), timeout=4)


@pytest.mark.loopback
async def test_unknown_service_miss_is_bounded(port: int) -> None:
    async with MdnsRegistry(port=port, query_timeout=0.3) as b:
        with trio.fail_after(2):
            assert await b.get_service("nobody") == []


@pytest.mark.loopback
async def test_default_port_from_options() -> None:
    reg = from_options(Options())
    assert reg.interfaces == ["127.0.0.1"] and reg.port == 5353
    name = f"opt-{random.randrange(1 << 30)}"
    async with reg, from_options(Options()) as other:
        await reg.register(svc(name, f"{name}-1"))
        with trio.fail_after(3):
            assert [s.name for s in await other.get_service(name)] == [name]
        await reg.deregister(svc(name, f"{name}-1"))


async def test_rejects_non_ipv4_interfaces_and_use_when_closed() -> None:
    with pytest.raises(RegistryError, match="IPv4"):
        async with MdnsRegistry(interfaces=["::1"]):
            pass
    with pytest.raises(RegistryError, match="IPv4"):
        async with MdnsRegistry(interfaces=["eth0"]):
            pass
    with pytest.raises(RegistryError, match="not open"):
        await MdnsRegistry().get_service("x")


@pytest.mark.loopback
async def test_caching_selector_over_mdns(port: int) -> None:
    from trimicro.selector import CachingSelector

    async with MdnsRegistry(port=port) as server_side, MdnsRegistry(port=port) as client_side:
        await server_side.register(svc(node="n1", port=1))
        async with CachingSelector(client_side) as selector:
            with trio.fail_after(3):
                assert (await selector.select("greeter"))().id == "n1"
            await server_side.register(svc(node="n2", port=2))  # arrives through the watch
            await wait_for(lambda: len((selector.cached("greeter") or [Service("x")])[0].nodes) == 2)
            await server_side.deregister(svc(node="n1", port=1))
            await wait_for(
                lambda: [n.id for s in selector.cached("greeter") or [] for n in s.nodes] == ["n2"]
            )
