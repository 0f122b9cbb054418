"""The nats registry against a real nats-server on 127.0.0.1: Go Micro's survey protocol, watches,
no-TTL liveness, startup with NATS down, and a nats-server restart mid-run."""

from __future__ import annotations

import json

import pytest
import trio

from trimicro import _plugins
from trimicro._nats.client import NatsClient
from trimicro.config import Options
from trimicro.errors import RegistryError
from trimicro.registry import Endpoint, Node, Result, Service, Value
from trimicro.registry.nats import QUERY_TOPIC, WATCH_TOPIC, NatsRegistry, decode_result, encode_result
from trimicro.testing._process import free_port
from trimicro.testing.nats import NatsServerProcess

pytestmark = pytest.mark.loopback


def svc(name: str = "greeter", node: str = "n1", version: str = "1.0", address: str = "_INBOX.x") -> Service:
    return Service(
        name=name,
        version=version,
        metadata={"k": "v"},
        endpoints=(
            Endpoint("Greeter.Hello", Value("HelloRequest", "HelloRequest"), None, {"stream": "false"}),
        ),
        nodes=(Node(f"{name}-{node}", address, {"protocol": "mucp"}),),
    )


async def next_result(watcher: object, timeout: float = 5.0) -> Result:
    with trio.fail_after(timeout):
        return await watcher.__anext__()  # type: ignore[attr-defined, no-any-return]


def test_result_codec_is_gos_registry_result() -> None:
    data = encode_result("create", svc())
    obj = json.loads(data)
    assert set(obj) == {"Service", "Action"} and obj["Action"] == "create"
    assert obj["Service"]["nodes"][0] == {
        "id": "greeter-n1",
        "address": "_INBOX.x",
        "metadata": {"protocol": "mucp"},
    }
    assert json.loads(encode_result("list", None)) == {"Service": None, "Action": "list"}
    # Go's encoding/json matches keys case-insensitively
    action, service = decode_result(b'{"action":"delete","service":{"name":"a","nodes":[{"id":"a-1"}]}}')
    assert action == "delete" and service is not None and service.nodes[0].id == "a-1"
    with pytest.raises(ValueError):
        decode_result(b"[]")


async def test_register_get_list_deregister_across_processes(nats_server: NatsServerProcess) -> None:
    async with NatsRegistry([nats_server.address]) as a, NatsRegistry([nats_server.address]) as b:
        assert await b.get_service("greeter") == []
        await a.register(svc(node="n1"))
        await b.register(svc(node="n2"))
        await a.register(svc(name="other", node="o1", version=""))
        [found] = await b.get_service("greeter")
        assert found.version == "1.0" and found.metadata == {"k": "v"}
        assert sorted(n.id for n in found.nodes) == ["greeter-n1", "greeter-n2"]
        assert found.endpoints[0].name == "Greeter.Hello"
        listed = await a.list_services()
        assert [(s.name, s.version) for s in listed] == [("greeter", "1.0"), ("other", "")]
        # re-registering a node replaces it rather than adding a second one
        await a.register(svc(node="n1", address="_INBOX.moved"))
        [found] = await b.get_service("greeter")
        assert {n.id: n.address for n in found.nodes}["greeter-n1"] == "_INBOX.moved"
        assert len(found.nodes) == 2
        await a.deregister(svc(node="n1"))
        [found] = await b.get_service("greeter")
        assert [n.id for n in found.nodes] == ["greeter-n2"]
        await b.deregister(svc(node="n2"))
        assert await a.get_service("greeter") == []


async def test_versions_are_separate_services(nats_server: NatsServerProcess) -> None:
    async with NatsRegistry([nats_server.address]) as reg:
        await reg.register(svc(version="1", node="a"))
        await reg.register(svc(version="2", node="b"))
        found = sorted(await reg.get_service("greeter"), key=lambda s: s.version)
        assert [(s.version, [n.id for n in s.nodes]) for s in found] == [
            ("1", ["greeter-a"]),
            ("2", ["greeter-b"]),
        ]


async def test_a_closed_registry_is_gone_at_once_no_ttl(nats_server: NatsServerProcess) -> None:
    async with NatsRegistry([nats_server.address]) as observer:
        async with NatsRegistry([nats_server.address]) as owner:
            await owner.register(svc(), ttl=0.01)  # ttl means nothing here: liveness is the connection
            await trio.sleep(0.05)
            assert len(await observer.get_service("greeter")) == 1
        assert await observer.get_service("greeter") == []


async def test_answers_go_shaped_queries_on_the_wire(nats_server: NatsServerProcess) -> None:
    """A raw NATS client speaks Go Micro's registry protocol at us: the query subject, the Result
    JSON with a reply inbox, one Service JSON per version in answer."""
    async with NatsRegistry([nats_server.address]) as reg, NatsClient([nats_server.address]) as raw:
        await reg.register(svc())
        inbox = await raw.subscribe("_INBOX.gotest")
        go_query = b'{"Service":{"name":"greeter","version":"","metadata":null,"endpoints":null,"nodes":null},"Action":"get"}'
        await raw.publish(QUERY_TOPIC, go_query, reply="_INBOX.gotest")
        with trio.fail_after(5):
            answer = await inbox.next()
        got = json.loads(answer.payload)
        assert got["name"] == "greeter" and got["nodes"][0]["id"] == "greeter-n1"
        await raw.publish(QUERY_TOPIC, b'{"Service":null,"Action":"list"}', reply="_INBOX.gotest")
        with trio.fail_after(5):
            assert json.loads((await inbox.next()).payload)["name"] == "greeter"
        # a query for another name, and garbage, get no answer
        await raw.publish(QUERY_TOPIC, b'{"Service":{"name":"nope"},"Action":"get"}', reply="_INBOX.gotest")
        await raw.publish(QUERY_TOPIC, b"not json", reply="_INBOX.gotest")
        await raw.flush()
        with trio.move_on_after(0.3):
            await inbox.next()
            pytest.fail("answered a query it should not have")
        # still answering after the garbage
        assert len(await reg.get_service("greeter")) == 1


async def test_finds_a_go_shaped_responder(nats_server: NatsServerProcess) -> None:
    async with NatsRegistry([nats_server.address]) as reg, NatsClient([nats_server.address]) as raw:
        queries = await raw.subscribe(QUERY_TOPIC)
        await raw.flush()
        async with trio.open_nursery() as nursery:

            async def answer() -> None:
                async for msg in queries:
                    action, asked = decode_result(msg.payload)
                    if action == "list" or (asked is not None and asked.name == "go-svc"):
                        assert msg.reply
                        await raw.publish(
                            msg.reply,
                            b'{"name":"go-svc","version":"latest","nodes":[{"id":"go-svc-1","address":"_INBOX.go","metadata":{"protocol":"mucp"}}]}',
                        )

            nursery.start_soon(answer)
            [found] = await reg.get_service("go-svc")
            assert found.nodes == (Node("go-svc-1", "_INBOX.go", {"protocol": "mucp"}),)
            assert [s.name for s in await reg.list_services()] == ["go-svc"]
            nursery.cancel_scope.cancel()


async def test_watch_sees_create_and_delete_in_gos_json(nats_server: NatsServerProcess) -> None:
    async with NatsRegistry([nats_server.address]) as a, NatsRegistry([nats_server.address]) as b:
        async with NatsClient([nats_server.address]) as raw:
            wire = await raw.subscribe(WATCH_TOPIC)
            await raw.flush()
            async with b.watch() as every, b.watch("greeter") as only:
                await a.register(svc(name="other", node="o"))
                await a.register(svc())
                await a.deregister(svc())
                r = await next_result(every)
                assert (r.action, r.service.name) == ("create", "other")
                r = await next_result(only)
                assert (r.action, r.service.name, r.service.nodes[0].id) == (
                    "create",
                    "greeter",
                    "greeter-n1",
                )
                r = await next_result(only)
                assert (r.action, r.service.nodes[0].id) == ("delete", "greeter-n1")
                # Go-shaped events (and garbage, and Go's other register actions) from elsewhere
                await raw.publish(WATCH_TOPIC, b"garbage")
                await raw.publish(
                    WATCH_TOPIC, b'{"Service":{"name":"greeter","nodes":[{"id":"g"}]},"Action":"put"}'
                )
                await raw.publish(
                    WATCH_TOPIC, b'{"Service":{"name":"greeter","nodes":[{"id":"g"}]},"Action":"update"}'
                )
                r = await next_result(only)
                assert (r.action, r.service.nodes[0].id) == ("update", "g")
            with trio.fail_after(5):
                first = json.loads((await wire.next()).payload)
            assert first["Action"] == "create" and first["Service"]["name"] == "other"


async def test_quorum_ends_the_survey_early(nats_server: NatsServerProcess) -> None:
    async with NatsRegistry([nats_server.address], query_timeout=60.0, quorum=1) as reg:
        await reg.register(svc())
        with trio.fail_after(10):  # a bound, far below query_timeout
            assert len(await reg.get_service("greeter")) == 1


async def test_nats_down_at_start_is_a_clear_error_after_bounded_retries() -> None:
    port = free_port()  # nothing listens here
    reg = NatsRegistry([f"127.0.0.1:{port}"], connect_attempts=3, client_options={"connect_timeout": 1.0})
    with (
        trio.fail_after(10),
        pytest.raises(RegistryError, match=rf"cannot connect to NATS at 127.0.0.1:{port} after 3 attempts"),
    ):
        async with reg:
            pass


async def test_outside_async_with_is_a_registry_error() -> None:
    with pytest.raises(RegistryError, match="outside"):
        await NatsRegistry(["127.0.0.1:1"]).get_service("x")


async def test_survives_a_nats_server_restart(nats_server: NatsServerProcess) -> None:
    async with NatsRegistry([nats_server.address]) as owner, NatsRegistry([nats_server.address]) as observer:
        await owner.register(svc())
        async with observer.watch("greeter") as watcher:
            await nats_server.stop()
            await nats_server.start()
            with trio.fail_after(10):
                while not (owner.client.connected and observer.client.connected):
                    await trio.sleep(0.02)  # polling the clients' reconnect: no event to wait on
                await owner.client.flush()
                await observer.client.flush()
            # the owner's query subscription came back: it is still found
            assert [n.id for s in await observer.get_service("greeter") for n in s.nodes] == ["greeter-n1"]
            # and the watch subscription came back too
            await owner.register(svc(node="n2"))
            # the owner may re-announce n1 after its reconnect (a heartbeat): those events come first
            r = await next_result(watcher)
            while r.service.nodes[0].id == "greeter-n1":
                r = await next_result(watcher)
            assert (r.action, r.service.nodes[0].id) == ("create", "greeter-n2")


async def test_lookup_while_disconnected_is_a_registry_error(nats_server: NatsServerProcess) -> None:
    async with NatsRegistry([nats_server.address], client_options={"reconnect_wait": 5.0}) as reg:
        await nats_server.stop()
        with trio.fail_after(5):
            while reg.client.connected:
                await trio.sleep(0.02)  # the client notices the closed socket
        with pytest.raises(RegistryError, match="not connected"):
            await reg.get_service("greeter")


async def test_plugin_from_options(nats_server: NatsServerProcess) -> None:
    reg = _plugins.create("registry", "nats", Options(registry_address=[nats_server.address]))
    assert isinstance(reg, NatsRegistry) and reg.name == "nats"
    assert list(reg.servers) == [nats_server.address]
    async with reg:
        await reg.register(svc())
        assert len(await reg.get_service("greeter")) == 1
    assert list(NatsRegistry().servers) == ["127.0.0.1:4222"]
