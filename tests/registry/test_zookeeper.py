"""ZooKeeper registry: Go Micro's layout against a real ZooKeeper, sessions, outages; the jute codec sans-IO."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import Greeter
from tests.protos.greeter_pb2 import HelloRequest, HelloResponse
from trimicro import Service as MicroService
from trimicro import load_options, open_client
from trimicro._plugins import create
from trimicro.errors import RegistryError
from trimicro.registry import Endpoint, Node, Result, Service, Value
from trimicro.registry import _zk_proto as p
from trimicro.registry._zk_client import WatchQueue, ZkClient, _Conn, _Pending, parse_hosts
from trimicro.registry.zookeeper import PREFIX, ZookeeperRegistry, from_options, node_path, service_path
from trimicro.testing._process import free_port
from trimicro.testing.zookeeper import (
    ZookeeperNotFound,
    ZookeeperProcess,
    find_zookeeper,
    open_ensemble,
    open_zookeeper,
)

loopback = pytest.mark.loopback
ROOT = Path(__file__).resolve().parents[2]

GO_RECORD = (
    '{"name":"go.micro.srv.greeter","version":"latest","metadata":null,"endpoints":[{"name":"Greeter.Hello",'
    '"request":{"name":"Request","type":"Request","values":[{"name":"name","type":"string","values":null}]},'
    '"response":{"name":"Response","type":"Response","values":[{"name":"msg","type":"string","values":null}]},'
    '"metadata":{}}],"nodes":[{"id":"go.micro.srv.greeter-1b8f","address":"127.0.0.1:54321","metadata":'
    '{"broker":"http","protocol":"mucp","registry":"zookeeper","server":"mucp","transport":"http"}}]}'
)


def make_service(node_id: str = "greeter-1", *, version: str = "1.0.0", **meta: str) -> Service:
    return Service(
        name="greeter",
        version=version,
        metadata={"team": "a"},
        endpoints=(
            Endpoint(
                "Greeter.Hello",
                request=Value("HelloRequest", "HelloRequest", (Value("name", "string"),)),
                response=Value("HelloResponse", "HelloResponse", (Value("msg", "string"),)),
            ),
        ),
        nodes=(Node(node_id, "127.0.0.1:40001", {"protocol": "mucp", "registry": "zookeeper", **meta}),),
    )


@pytest.fixture
async def registry(zookeeper: ZookeeperProcess) -> AsyncIterator[ZookeeperRegistry]:
    async with ZookeeperRegistry([zookeeper.endpoint], timeout=2.0) as reg:
        yield reg


async def next_result(watcher: AsyncIterator[Result], seconds: float = 5.0) -> Result:
    with trio.fail_after(seconds):
        return await watcher.__anext__()


def ids(services: list[Service]) -> list[str]:
    return sorted(n.id for s in services for n in s.nodes)


# ---- against a real ZooKeeper -----------------------------------------------------------------------


@loopback
async def test_register_get_list_deregister(registry: ZookeeperRegistry) -> None:
    assert await registry.get_service("greeter") == []
    a, b = make_service("greeter-a"), make_service("greeter-b")
    old = make_service("greeter-old", version="0.9")
    for s in (a, b, old):
        await registry.register(s, ttl=30)

    found = {s.version: s for s in await registry.get_service("greeter")}
    assert set(found) == {"1.0.0", "0.9"}
    assert sorted(n.id for n in found["1.0.0"].nodes) == ["greeter-a", "greeter-b"]
    assert found["1.0.0"].endpoints == a.endpoints
    assert found["0.9"].nodes == old.nodes

    await registry.register(Service("other", "latest", nodes=(Node("other-1", "127.0.0.1:1"),)))
    assert sorted((s.name, s.version) for s in await registry.list_services()) == [
        ("greeter", "0.9"),
        ("greeter", "1.0.0"),
        ("other", "latest"),
    ]

    await registry.deregister(a)
    await registry.deregister(old)
    assert ids(await registry.get_service("greeter")) == ["greeter-b"]
    await registry.deregister(b)
    await registry.deregister(b)  # already gone: fine
    assert await registry.get_service("greeter") == []
    assert [s.name for s in await registry.list_services()] == ["other"]  # empty service znodes skipped

    with pytest.raises(RegistryError, match="at least one node"):
        await registry.register(Service("empty"))


@loopback
async def test_record_layout_is_go_micros(registry: ZookeeperRegistry) -> None:
    service = attrs.evolve(make_service("greeter/1"), endpoints=(), metadata={})
    await registry.register(service)
    client = registry.client
    assert "micro-registry" in (await client.get_children("/"))[0]
    [child], _ = await client.get_children(PREFIX)
    assert child == "greeter"
    [node], _ = await client.get_children("/micro-registry/greeter")
    assert node == "greeter-1"  # "/" in a node id becomes "-"
    assert node_path("a/b", "c/d") == "/micro-registry/a-b/c-d"
    assert service_path("a/b") == "/micro-registry/a-b"

    data, stat = await client.get_data("/micro-registry/greeter/greeter-1")
    assert data == service.to_json().encode()  # byte for byte: compact Go JSON, one node
    record = json.loads(data)
    assert list(record) == ["name", "version", "metadata", "endpoints", "nodes"]
    assert record["endpoints"] is None  # Go's nil slice
    assert record["nodes"] == [
        {"id": "greeter/1", "address": "127.0.0.1:40001", "metadata": dict(service.nodes[0].metadata)}
    ]
    assert stat.ephemeral_owner == client.session_id != 0  # ephemeral: lives with our session
    parent = await client.exists("/micro-registry/greeter")
    assert parent is not None and parent.ephemeral_owner == 0  # parents are persistent

    # Registering the same record again (the registrar's refresh) does not rewrite it: no watch fires.
    await registry.register(service)
    _, again = await client.get_data("/micro-registry/greeter/greeter-1")
    assert again.mzxid == stat.mzxid and again.version == stat.version
    # A changed record is rewritten in place.
    await registry.register(attrs.evolve(service, version="2"))
    data, changed = await client.get_data("/micro-registry/greeter/greeter-1")
    assert changed.version == stat.version + 1 and json.loads(data)["version"] == "2"


@loopback
async def test_go_micro_record_is_discovered(
    registry: ZookeeperRegistry, zookeeper: ZookeeperProcess
) -> None:
    async with registry.watch() as watcher, ZkClient([zookeeper.endpoint], timeout=2.0) as go:
        # Go's plugin writes persistent node znodes (flags 0) under persistent parents.
        await go.ensure_path("/micro-registry/go.micro.srv.greeter")
        await go.create("/micro-registry/go.micro.srv.greeter/go.micro.srv.greeter-1b8f", GO_RECORD.encode())
        await go.ensure_path("/micro-registry/broken")
        await go.create("/micro-registry/broken/x", b"\xff not json")  # skipped, not fatal
        event = await next_result(watcher)
        assert (event.action, event.service.nodes[0].id) == ("create", "go.micro.srv.greeter-1b8f")

        [service] = await registry.get_service("go.micro.srv.greeter")
        assert service.version == "latest"
        assert [e.name for e in service.endpoints] == ["Greeter.Hello"]
        assert service.nodes[0].address == "127.0.0.1:54321"
        assert service.nodes[0].metadata["registry"] == "zookeeper"
        assert [s.name for s in await registry.list_services()] == ["go.micro.srv.greeter"]

        await go.delete("/micro-registry/go.micro.srv.greeter/go.micro.srv.greeter-1b8f")  # Go's deregister
        event = await next_result(watcher)
        assert (event.action, event.service.nodes[0].id) == ("delete", "go.micro.srv.greeter-1b8f")


@loopback
async def test_watch_create_update_delete(registry: ZookeeperRegistry) -> None:
    async with registry.watch("greeter") as watcher, registry.watch() as everything:

        async def both() -> list[tuple[str, str, str]]:
            seen = [await next_result(watcher), await next_result(everything)]
            return [(r.action, r.service.name, r.service.nodes[0].id) for r in seen]

        await registry.register(make_service("g-1"))
        assert await both() == [("create", "greeter", "g-1")] * 2
        await registry.register(Service("other", nodes=(Node("o-1", "127.0.0.1:2"),)))
        event = await next_result(everything)  # a service znode that did not exist yet
        assert (event.action, event.service.name) == ("create", "other")
        await registry.register(make_service("g-1", weight="2"))
        assert await both() == [("update", "greeter", "g-1")] * 2
        await registry.deregister(make_service("g-1"))
        delete = await next_result(watcher)
        assert (delete.action, delete.service.nodes[0].id) == ("delete", "g-1")
        assert delete.service.nodes[0].address == "127.0.0.1:40001"  # the record as last seen
        assert (await next_result(everything)).action == "delete"
        await registry.deregister(Service("other", nodes=(Node("o-1", "127.0.0.1:2"),)))
        assert (await next_result(everything)).service.name == "other"
        with trio.move_on_after(0.3):  # nothing else is reported (no duplicates)
            event = await everything.__anext__()
            pytest.fail(f"unexpected {event}")


@loopback
async def test_watch_of_a_service_that_does_not_exist_yet(zookeeper: ZookeeperProcess) -> None:
    async with ZookeeperRegistry([zookeeper.endpoint], timeout=2.0) as registry:
        async with registry.watch("later") as watcher:
            await registry.register(Service("later", nodes=(Node("l-1", "127.0.0.1:3"),)))
            assert (await next_result(watcher)).action == "create"


@loopback
async def test_closing_the_registry_removes_its_nodes_at_once(zookeeper: ZookeeperProcess) -> None:
    async with ZookeeperRegistry([zookeeper.endpoint], timeout=2.0) as observer:
        async with observer.watch("greeter") as watcher:
            async with ZookeeperRegistry([zookeeper.endpoint], timeout=2.0, session_timeout=10.0) as owner:
                await owner.register(make_service("g-close"))
                assert (await next_result(watcher)).action == "create"
            # closeSession: no waiting for the 10 s session timeout.
            event = await next_result(watcher, 2.0)
            assert (event.action, event.service.nodes[0].id) == ("delete", "g-close")
        assert await observer.get_service("greeter") == []


@loopback
async def test_a_client_that_dies_loses_its_nodes_when_its_session_expires(
    zookeeper: ZookeeperProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    victims: set[int] = set()
    close = ZkClient._close_session

    async def die_silently(self: ZkClient) -> None:
        if id(self) not in victims:
            await close(self)

    monkeypatch.setattr(ZkClient, "_close_session", die_silently)
    async with ZookeeperRegistry([zookeeper.endpoint], timeout=2.0) as observer:
        async with observer.watch("greeter") as watcher:
            async with ZookeeperRegistry([zookeeper.endpoint], timeout=2.0, session_timeout=0.6) as owner:
                await owner.register(make_service("g-dead"))
                assert (await next_result(watcher)).action == "create"
                victims.add(id(owner.client))
            # The socket is gone without a closeSession (as with a crash): ZooKeeper expires the session.
            event = await next_result(watcher, 5.0)
            assert (event.action, event.service.nodes[0].id) == ("delete", "g-dead")


CHILD = """
import sys, trio
from trimicro.registry import Node, Service
from trimicro.registry.zookeeper import ZookeeperRegistry

async def main():
    async with ZookeeperRegistry([sys.argv[1]], timeout=5.0, session_timeout=1.0) as registry:
        await registry.register(Service("greeter", nodes=(Node("g-killed", "127.0.0.1:1"),)))
        print("registered", flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


@loopback
async def test_a_killed_process_loses_its_nodes_when_its_session_expires(zookeeper: ZookeeperProcess) -> None:
    async with (
        ZookeeperRegistry([zookeeper.endpoint], timeout=2.0) as observer,
        observer.watch("greeter") as watcher,
    ):
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-c", CHILD, zookeeper.endpoint], stdout=subprocess.PIPE, cwd=str(ROOT)
        )
        try:
            assert (await next_result(watcher, 20.0)).action == "create"
            proc.kill()  # SIGKILL: no closeSession, no deregister
            await proc.wait()
            killed = trio.current_time()
            event = await next_result(watcher, 5.0)
            assert (event.action, event.service.nodes[0].id) == ("delete", "g-killed")
            assert trio.current_time() - killed < 3.0  # about the 1 s session timeout, not much more
        finally:
            proc.kill()
            await proc.wait()
            assert proc.stdout is not None
            await proc.stdout.aclose()


@loopback
async def test_pings_keep_an_idle_session_alive(zookeeper: ZookeeperProcess) -> None:
    async with ZookeeperRegistry([zookeeper.endpoint], timeout=2.0, session_timeout=0.6) as registry:
        await registry.register(make_service("g-idle"))
        assert registry.client.negotiated_timeout == pytest.approx(0.6)
        session = registry.client.session_id
        await trio.sleep(2.0)  # idle for three session timeouts: the subject of the test
        assert registry.client.session_id == session
        assert registry.client.connections == 1
        assert ids(await registry.get_service("greeter")) == ["g-idle"]


async def expire(zookeeper: ZookeeperProcess, client: ZkClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Expire ``client``'s session from outside (the usual trick): resume it elsewhere and close it.

    The client's own reconnection is held back meanwhile, or it would take the session back first.
    """
    gate = trio.Event()
    reopen = ZkClient._open

    async def held(self: ZkClient, host: tuple[str, int]) -> Any:
        if self is client:
            await gate.wait()
        return await reopen(self, host)

    monkeypatch.setattr(ZkClient, "_open", held)

    async def exchange(stream: trio.SocketStream, data: bytes) -> bytes:
        await stream.send_all(data)
        frames = p.FrameBuffer()
        while (packet := frames.next()) is None:
            frames.feed(await stream.receive_some(4096))
        return packet

    async with await trio.open_tcp_stream("127.0.0.1", zookeeper.port) as stream:
        request = p.ConnectRequest(timeout_ms=2000, session_id=client.session_id, password=client.password)
        assert (
            p.ConnectResponse.decode(await exchange(stream, request.encode())).session_id == client.session_id
        )
        assert p.parse_reply(await exchange(stream, p.close_session(1)))[0].err == p.OK
    gate.set()


@loopback
async def test_session_expiry_recreates_the_nodes(
    zookeeper: ZookeeperProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with ZookeeperRegistry([zookeeper.endpoint], timeout=2.0) as observer, observer.watch() as watcher:
        async with ZookeeperRegistry([zookeeper.endpoint], timeout=2.0) as owner:
            await owner.register(make_service("g-exp"))
            assert (await next_result(watcher)).action == "create"
            old = owner.client.session_id
            with trio.fail_after(5):
                await expire(zookeeper, owner.client, monkeypatch)
                assert (await next_result(watcher)).action == "delete"  # the server dropped the session
                # Nobody calls register again: the client opens a new session and re-creates the node.
                event = await next_result(watcher)
            assert (event.action, event.service.nodes[0].id) == ("create", "g-exp")
            assert owner.client.session_id != old and owner.client.sessions == 2
            _, stat = await owner.client.get_data(node_path("greeter", "g-exp"))
            assert stat.ephemeral_owner == owner.client.session_id


@loopback
async def test_a_watch_keeps_reporting_after_its_own_session_expired(
    zookeeper: ZookeeperProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        ZookeeperRegistry([zookeeper.endpoint], timeout=2.0) as owner,
        owner.watch("greeter") as watcher,
    ):
        await owner.register(make_service("g-1"))
        assert (await next_result(watcher)).action == "create"
        with trio.fail_after(10):
            await expire(zookeeper, owner.client, monkeypatch)
            while owner.client.sessions < 2 or not owner.client.connected:
                await trio.sleep(0.05)  # polling the client's reconnect loop from outside
            await owner.register(make_service("g-2"))  # needs the watches re-armed in the new session
            seen = []
            while ("create", "g-2") not in seen:
                event = await watcher.__anext__()
                seen.append((event.action, event.service.nodes[0].id))
        assert set(seen) <= {("delete", "g-1"), ("create", "g-1"), ("create", "g-2")}


@loopback
async def test_server_restart_is_survived(zookeeper: ZookeeperProcess) -> None:
    async with (
        ZookeeperRegistry([zookeeper.endpoint], timeout=1.0, session_timeout=6.0) as registry,
        registry.watch("greeter") as watcher,
    ):
        await registry.register(make_service("g-restart"))
        assert (await next_result(watcher)).action == "create"
        session = registry.client.session_id
        await zookeeper.stop()

        # While ZooKeeper is down every call fails promptly with RegistryError.
        for call in (
            lambda: registry.get_service("greeter"),
            lambda: registry.list_services(),
            lambda: registry.register(make_service("g-other")),
            lambda: registry.deregister(make_service("g-other")),
        ):
            with trio.fail_after(1.5), pytest.raises(RegistryError, match="no answer within 1s"):
                await call()

        await zookeeper.start()  # same port, same data dir: the session is in its transaction log
        with trio.fail_after(10):
            while not registry.client.connected:
                await trio.sleep(0.05)  # polling the client's reconnect loop from outside
        assert ids(await registry.get_service("greeter")) == ["g-restart"]
        assert registry.client.session_id == session  # resumed, not re-created
        # The watch survived too: it re-armed after the reconnection and sees new changes.
        await registry.register(make_service("g-after"))
        event = await next_result(watcher)
        assert (event.action, event.service.nodes[0].id) == ("create", "g-after")


@loopback
async def test_a_call_made_during_an_outage_waits_for_the_reconnection(zookeeper: ZookeeperProcess) -> None:
    async with ZookeeperRegistry([zookeeper.endpoint], timeout=20.0) as registry:
        await registry.register(make_service("g-wait"))
        await zookeeper.stop()
        found: list[list[Service]] = []

        async def lookup() -> None:
            found.append(await registry.get_service("greeter"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(lookup)  # blocked: no connection
            await trio.testing.wait_all_tasks_blocked()
            assert not found
            await zookeeper.start()
        assert ids(found[0]) == ["g-wait"]


@loopback
async def test_cancelled_calls_leave_the_session_usable(zookeeper: ZookeeperProcess) -> None:
    async with ZookeeperRegistry([zookeeper.endpoint], timeout=5.0) as registry:
        await registry.register(make_service("g-c"))
        for _ in range(20):  # cancelled at every stage: before sending, waiting for the answer, ...
            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(registry.get_service, "greeter")
                await trio.sleep(0)
                nursery.cancel_scope.cancel()
        assert ids(await registry.get_service("greeter")) == ["g-c"]
        assert registry.client.connections == 1
        await zookeeper.stop()
        with trio.move_on_after(0.2) as scope:  # waiting for a connection is cancellable too
            await registry.get_service("greeter")
        assert scope.cancelled_caught
        await zookeeper.start()
        assert ids(await registry.get_service("greeter")) == ["g-c"]


@loopback
async def test_failover_to_another_server_of_the_list(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two independent standalone servers (not an ensemble): the second does not know the session, so
    # moving to it is a session expiry, and the client re-creates its nodes there.
    async with open_zookeeper() as first, open_zookeeper() as second:
        async with ZookeeperRegistry([first.endpoint, second.endpoint], timeout=2.0) as registry:
            await registry.register(make_service("g-move"))
            await first.stop()
            async with ZkClient([second.endpoint], timeout=2.0) as other:
                with trio.fail_after(10):
                    while not await other.exists("/micro-registry/greeter/g-move"):
                        await trio.sleep(0.05)  # polling: the registry moves over in its own time
                [node], _ = await other.get_children("/micro-registry/greeter")
                data, stat = await other.get_data(f"/micro-registry/greeter/{node}")
            assert node == "g-move" and stat.ephemeral_owner == registry.client.session_id
            assert json.loads(data) == json.loads(make_service("g-move").to_json())
            assert ids(await registry.get_service("greeter")) == ["g-move"]


@loopback
@pytest.mark.timeout(90)
async def test_the_session_moves_to_another_server_of_an_ensemble() -> None:
    try:
        find_zookeeper()
    except ZookeeperNotFound as exc:
        pytest.skip(str(exc))
    async with open_ensemble(3) as servers:
        addresses = [s.endpoint for s in servers]
        async with ZookeeperRegistry(addresses, timeout=5.0, session_timeout=4.0) as registry:
            await registry.register(make_service("g-ens"))
            session = registry.client.session_id
            host, port = registry.client._conn.host  # type: ignore[union-attr]
            [first] = [s for s in servers if s.port == port]
            await first.stop()  # the server we talk to goes; the other two keep the quorum
            assert ids(await registry.get_service("greeter")) == ["g-ens"]
            assert registry.client.session_id == session and registry.client.sessions == 1
            assert registry.client._conn.host != (host, port)  # type: ignore[union-attr]
            async with ZkClient([s.endpoint for s in servers if s is not first], timeout=5.0) as other:
                _, stat = await other.get_data(node_path("greeter", "g-ens"))
            assert stat.ephemeral_owner == session


async def serve_garbage(listener: trio.SocketListener, junk: bytes) -> None:
    """A fake server: answers the handshake properly, then sends ``junk`` on every connection."""

    async def one(stream: trio.SocketStream) -> None:
        async with stream:
            frames = p.FrameBuffer()
            while frames.next() is None:
                frames.feed(await stream.receive_some(4096))
            await stream.send_all(p.ConnectResponse(4000, 0x1234, b"\x01" * 16).encode() + junk)
            await trio.sleep_forever()

    await trio.serve_listeners(one, [listener])


@loopback
@pytest.mark.parametrize(
    "junk",
    [
        b"\xff\xff\xff\xff",
        p.frame(b"\x00\x00"),
        p.frame(p.ReplyHeader(-1, 0, 0).write(p.Writer()).getvalue()),
    ],
    ids=["bad-length", "short-header", "truncated-event"],
)
async def test_garbage_from_the_server_drops_the_connection_not_the_client(junk: bytes) -> None:
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_garbage, listener, junk)
        async with ZkClient([f"127.0.0.1:{port}"], timeout=0.5) as client:
            with trio.fail_after(2), pytest.raises(RegistryError, match="no answer within"):
                await client.get_children("/")
            assert client.connections >= 2  # it dropped the bad connection and reconnected
        nursery.cancel_scope.cancel()


@loopback
async def test_nodes_come_back_when_the_outage_outlasts_the_session(zookeeper: ZookeeperProcess) -> None:
    async with ZookeeperRegistry([zookeeper.endpoint], timeout=1.0, session_timeout=0.6) as registry:
        await registry.register(make_service("g-long"))
        await zookeeper.stop()
        zookeeper.wipe()  # a brand-new ensemble: the session and every node are gone for good
        await zookeeper.start()
        async with ZookeeperRegistry([zookeeper.endpoint], timeout=2.0) as observer:
            with trio.fail_after(10):
                while not ids(await observer.get_service("greeter")):
                    await trio.sleep(0.05)  # polling: the owner re-creates it in its own time
        assert ids(await registry.get_service("greeter")) == ["g-long"]
        assert registry.client.sessions == 2


@loopback
async def test_server_down_at_start_is_a_clear_error() -> None:
    dead = f"127.0.0.1:{free_port()}"
    start = trio.current_time()
    with (
        trio.fail_after(3),
        pytest.raises(RegistryError, match=rf"zookeeper unreachable at {dead} after \d+ attempts"),
    ):
        async with ZookeeperRegistry([dead], timeout=1.0):
            pytest.fail("entered without a server")
    assert trio.current_time() - start >= 0.9  # it retried for the whole bound, not just once


@loopback
async def test_a_server_that_never_answers_is_a_clear_error() -> None:
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")  # accepts in the kernel, never answers
    async with listener:
        port = listener.socket.getsockname()[1]
        with (
            trio.fail_after(3),
            pytest.raises(
                RegistryError, match=r"unreachable at .* after 1 attempts in 0.5s: .*: no answer within 0.5s"
            ),
        ):
            async with ZookeeperRegistry([f"127.0.0.1:{port}"], timeout=0.5):
                pass


@loopback
async def test_failover_skips_a_dead_server(zookeeper: ZookeeperProcess) -> None:
    dead = f"127.0.0.1:{free_port()}"
    async with ZookeeperRegistry([dead, zookeeper.endpoint], timeout=2.0) as registry:
        await registry.register(make_service("g-fo"))
        assert ids(await registry.get_service("greeter")) == ["g-fo"]


@loopback
async def test_errors_in_the_block_propagate_unwrapped(zookeeper: ZookeeperProcess) -> None:
    with pytest.raises(KeyError):
        async with ZookeeperRegistry([zookeeper.endpoint], timeout=2.0):
            raise KeyError("mine")


@loopback
async def test_service_found_and_called_through_zookeeper(
    zookeeper: ZookeeperProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in {
        "MICRO_REGISTRY": "zookeeper",
        "MICRO_REGISTRY_ADDRESS": zookeeper.endpoint,
        "MICRO_REGISTRY_TIMEOUT": "2s",
        "MICRO_SERVER_ADDRESS": "127.0.0.1:0",
    }.items():
        monkeypatch.setenv(key, value)
    service = MicroService("zk.greeter", handlers=[Greeter("zk")], argv=[], handle_signals=False)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            await nursery.start(service.run)
        async with ZkClient([zookeeper.endpoint], timeout=2.0) as raw:
            [node], _ = await raw.get_children("/micro-registry/zk.greeter")
            data, _ = await raw.get_data(f"/micro-registry/zk.greeter/{node}")
            assert json.loads(data)["nodes"][0]["address"] == service.address
        async with open_client(argv=[]) as client:
            rsp = await client.call(
                "zk.greeter", "Greeter.Hello", HelloRequest(name="zk"), response_type=HelloResponse
            )
            assert rsp.greeting == "Hello zk from zk"
        service.stop()


async def test_from_options_and_plugin() -> None:
    options = load_options(
        {"registry": "zookeeper", "registry_address": "10.0.0.1:2181,10.0.0.2", "registry_timeout": "3s"},
        env={},
    )
    registry = from_options(options)
    assert isinstance(registry, ZookeeperRegistry)
    assert list(registry.addresses) == ["10.0.0.1:2181", "10.0.0.2"]
    assert registry.timeout == 3.0
    default = create("registry", "zookeeper", load_options(env={}))
    assert isinstance(default, ZookeeperRegistry) and list(default.addresses) == ["127.0.0.1:2181"]
    env = load_options(env={"MICRO_REGISTRY": "zookeeper", "MICRO_REGISTRY_ADDRESS": "a:1,b:2"})
    assert env.registry == "zookeeper" and env.registry_address == ["a:1", "b:2"]


def test_parse_hosts() -> None:
    assert parse_hosts("a:1, b ,[::1]:3") == [("a", 1), ("b", 2181), ("::1", 3)]
    assert parse_hosts(["x:5,y:6"]) == [("x", 5), ("y", 6)]
    for bad in ("", ":1", "h:x"):
        with pytest.raises(ValueError):
            parse_hosts(bad)


# ---- sans-IO: jute -------------------------------------------------------------------------------

i32 = st.integers(-(2**31), 2**31 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
stats = st.builds(p.Stat, i64, i64, i64, i64, i32, i32, i32, i64, i32, i32, i64)


def test_request_bytes() -> None:
    # Hand-assembled from the jute definitions (zookeeper.jute): length, header(xid, type), body.
    ping = bytes.fromhex("00000008fffffffe0000000b")
    assert p.ping() == ping
    create_req = p.create(7, "/a", b"x", ephemeral=True)
    assert create_req == (
        bytes.fromhex("00000032" "00000007" "00000001")  # 50 bytes; xid 7; create
        + bytes.fromhex("00000002") + b"/a" + bytes.fromhex("00000001") + b"x"
        + bytes.fromhex("00000001" "0000001f") + bytes.fromhex("00000005") + b"world"
        + bytes.fromhex("00000006") + b"anyone" + bytes.fromhex("00000001")  # flags: EPHEMERAL
    )  # fmt: skip
    assert (
        p.get_children2(3, "/m", watch=True) == bytes.fromhex("0000000f000000030000000c00000002") + b"/m\x01"
    )
    connect = p.ConnectRequest(timeout_ms=5000).encode()
    assert len(connect) == 4 + 4 + 8 + 4 + 8 + 4 + 16 + 1 and connect[:4] == b"\x00\x00\x00\x2d"


@given(
    st.builds(p.ConnectRequest, i32, i64, st.binary(max_size=32), i64, st.booleans(), i32),
    st.builds(p.ConnectResponse, i32, i64, st.binary(max_size=32), st.booleans(), i32),
)
def test_connect_round_trip(request: p.ConnectRequest, response: p.ConnectResponse) -> None:
    assert p.ConnectRequest.decode(request.encode()[4:]) == request
    assert p.ConnectResponse.decode(response.encode()[4:]) == response
    assert response.expired == (response.timeout_ms <= 0)


def test_connect_response_of_an_old_server_has_no_read_only_flag() -> None:
    body = p.Writer().i32(0).i32(4000).i64(42).buffer(b"pw").getvalue()
    assert p.ConnectResponse.decode(body) == p.ConnectResponse(4000, 42, b"pw")


@given(stats, st.lists(st.text(max_size=20), max_size=10), st.binary(max_size=100), i32, i64)
def test_replies_round_trip(stat: p.Stat, children: list[str], data: bytes, xid: int, zxid: int) -> None:
    header = p.ReplyHeader(xid, zxid, 0)
    packet = stat.write(p.Writer().strings(children)).getvalue()
    assert p.decode_children(p.Reader(packet)) == (children, stat)
    assert p.decode_data(p.Reader(stat.write(p.Writer().buffer(data)).getvalue())) == (data, stat)
    assert p.decode_stat(p.Reader(stat.write(p.Writer()).getvalue())) == stat
    assert len(stat.write(p.Writer()).getvalue()) == p.Stat.SIZE
    got, body = p.parse_reply(header.write(p.Writer()).getvalue() + b"rest")
    assert got == header and body.remaining == 4


@given(st.builds(p.WatcherEvent, i32, i32, st.text(max_size=50)))
def test_watcher_event_round_trip(event: p.WatcherEvent) -> None:
    assert p.WatcherEvent.read(p.Reader(event.write(p.Writer()).getvalue())) == event


@given(st.binary(max_size=200))
def test_decoders_reject_garbage_with_a_typed_error(junk: bytes) -> None:
    decoders: list[Any] = [
        lambda: p.ConnectResponse.decode(junk),
        lambda: p.decode_children(p.Reader(junk)),
        lambda: p.decode_data(p.Reader(junk)),
        lambda: p.decode_stat(p.Reader(junk)),
        lambda: p.decode_create(p.Reader(junk)),
        lambda: p.WatcherEvent.read(p.parse_reply(junk)[1]),
    ]
    for decode in decoders:
        try:
            decode()
        except p.ZkProtocolError:
            pass


@given(st.lists(st.binary(max_size=50), max_size=6), st.data())
def test_frames_any_split(packets: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(p.frame(x) for x in packets)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    frames, out, last = p.FrameBuffer(), [], 0
    for cut in [*cuts, len(stream)]:
        frames.feed(stream[last:cut])
        while (packet := frames.next()) is not None:
            out.append(packet)
        last = cut
    assert out == packets and frames.pending == 0


def test_frames_refuse_absurd_lengths() -> None:
    frames = p.FrameBuffer(max_packet=10)
    frames.feed(b"\x00\x00\x00\x0b")
    with pytest.raises(p.ZkProtocolError, match="out of range"):
        frames.next()
    frames = p.FrameBuffer()
    frames.feed(b"\xff\xff\xff\xff")
    with pytest.raises(p.ZkProtocolError):
        frames.next()


def test_errors_are_named() -> None:
    assert str(p.error_for(p.NO_NODE, "/x")) == "zookeeper: no node (/x)"
    assert isinstance(p.error_for(-999), RegistryError) and "error -999" in str(p.error_for(-999))


@given(st.integers(-3, 3), st.binary(max_size=120))
def test_client_dispatch_survives_any_packet(xid: int, body: bytes) -> None:
    """Whatever a server sends after the handshake: a typed protocol error at worst, never a crash."""
    client = ZkClient(["127.0.0.1:1"])
    conn = _Conn(("127.0.0.1", 1), cast(trio.SocketStream, None), 1.0)
    queue = WatchQueue.new()
    conn.pending[1] = _Pending(p.OP_EXISTS, "/x", queue)
    conn.pending[2] = _Pending(p.OP_GET_CHILDREN2, "/y", queue)
    client._watches[("child", "/y")] = {queue}
    try:
        client._dispatch(conn, p.Writer().i32(xid).getvalue() + body)
    except p.ZkProtocolError:
        pass
