"""etcd registry: Go Micro's layout against a real etcd, outages, failover; the gateway codec sans-IO."""

from __future__ import annotations

import json
import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from trimicro import load_options
from trimicro._plugins import create
from trimicro.errors import RegistryError
from trimicro.registry import Endpoint, Node, Result, Service, Value
from trimicro.registry._etcd_client import Endpoint as EtcdEndpoint
from trimicro.registry._etcd_client import EtcdClient
from trimicro.registry._etcd_proto import (
    EtcdError,
    JsonLines,
    b64,
    error_from_body,
    parse_watch_message,
    prefix_end,
)
from trimicro.registry.etcd import EtcdRegistry, from_options, node_path, service_path
from trimicro.testing.etcd import EtcdProcess, free_port, open_etcd, run_etcd

loopback = pytest.mark.loopback

GO_RECORD = (
    '{"name":"go.micro.srv.greeter","version":"latest","metadata":null,"endpoints":[{"name":"Greeter.Hello",'
    '"request":{"name":"Request","type":"Request","values":[{"name":"name","type":"string","values":null}]},'
    '"response":{"name":"Response","type":"Response","values":[{"name":"msg","type":"string","values":null}]},'
    '"metadata":{}}],"nodes":[{"id":"go.micro.srv.greeter-1b8f...","address":"127.0.0.1:54321","metadata":'
    '{"broker":"http","protocol":"mucp","registry":"etcd","server":"mucp","transport":"http"}}]}'
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
        nodes=(Node(node_id, "127.0.0.1:40001", {"protocol": "mucp", "registry": "etcd", **meta}),),
    )


@pytest.fixture
async def registry(etcd: EtcdProcess) -> AsyncIterator[EtcdRegistry]:
    async with EtcdRegistry([etcd.endpoint], timeout=2.0) as reg:
        yield reg


async def next_result(watcher: AsyncIterator[Result], seconds: float = 5.0) -> Result:
    with trio.fail_after(seconds):
        return await watcher.__anext__()


# ---- against a real etcd ----------------------------------------------------------------------------


@loopback
async def test_register_get_list_deregister(registry: EtcdRegistry) -> None:
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

    await registry.register(Service("other", "latest", nodes=(Node("other-1", "127.0.0.1:1"),)), ttl=30)
    assert [(s.name, s.version) for s in await registry.list_services()] == [
        ("greeter", "1.0.0"),
        ("greeter", "0.9"),
        ("other", "latest"),
    ]

    await registry.deregister(a)
    await registry.deregister(old)
    [left] = await registry.get_service("greeter")
    assert [n.id for n in left.nodes] == ["greeter-b"]
    await registry.deregister(b)
    assert await registry.get_service("greeter") == []

    with pytest.raises(RegistryError, match="at least one node"):
        await registry.register(Service("empty"))


@loopback
async def test_record_layout_is_go_micros(registry: EtcdRegistry) -> None:
    service = attrs.evolve(make_service("greeter/1"), endpoints=(), metadata={})
    await registry.register(service, ttl=10)
    client = registry.client
    [kv] = (await client.range("/micro/registry/", prefix=True)).kvs
    assert kv.key == b"/micro/registry/greeter/greeter-1"  # "/" in a node id becomes "-"
    assert node_path("a/b", "c/d") == "/micro/registry/a-b/c-d"
    assert service_path("a/b") == "/micro/registry/a-b"
    record = json.loads(kv.value)
    assert record == json.loads(service.to_json())
    assert list(record) == ["name", "version", "metadata", "endpoints", "nodes"]
    assert record["endpoints"] is None  # Go's nil slice
    assert record["nodes"] == [
        {"id": "greeter/1", "address": "127.0.0.1:40001", "metadata": dict(service.nodes[0].metadata)}
    ]
    assert kv.lease != 0
    left = await client.lease_keepalive_once(kv.lease)
    assert 0 < left <= 10

    # Registering the same record again only refreshes the lease: no new revision.
    await registry.register(service, ttl=10)
    [again] = (await client.range(kv.key)).kvs
    assert again.mod_revision == kv.mod_revision and again.lease == kv.lease


@loopback
async def test_go_micro_record_is_discovered(registry: EtcdRegistry) -> None:
    async with registry.watch() as watcher:
        key = node_path("go.micro.srv.greeter", "go.micro.srv.greeter-1b8f...")
        await registry.client.put(key, GO_RECORD)
        await registry.client.put("/micro/registry/broken/x", b"\xff not json")  # skipped, not fatal
        event = await next_result(watcher)
    assert event.action == "create"
    assert event.service.nodes[0].id == "go.micro.srv.greeter-1b8f..."

    [service] = await registry.get_service("go.micro.srv.greeter")
    assert service.version == "latest"
    assert service.metadata == {}
    assert [e.name for e in service.endpoints] == ["Greeter.Hello"]
    request = service.endpoints[0].request
    assert request is not None and request.values == (Value("name", "string"),)
    assert service.nodes == (
        Node(
            "go.micro.srv.greeter-1b8f...",
            "127.0.0.1:54321",
            {"broker": "http", "protocol": "mucp", "registry": "etcd", "server": "mucp", "transport": "http"},
        ),
    )
    assert [s.name for s in await registry.list_services()] == ["go.micro.srv.greeter"]


@loopback
async def test_watch_create_update_delete(registry: EtcdRegistry) -> None:
    async with registry.watch("greeter") as watcher, registry.watch() as everything:
        await registry.register(make_service("g-1"), ttl=30)
        await registry.register(Service("other", nodes=(Node("o-1", "127.0.0.1:2"),)), ttl=30)
        await registry.register(make_service("g-1", weight="2"), ttl=30)
        await registry.deregister(make_service("g-1"))

        seen = [await next_result(watcher) for _ in range(3)]
        assert [(r.action, r.service.name, r.service.nodes[0].id) for r in seen] == [
            ("create", "greeter", "g-1"),
            ("update", "greeter", "g-1"),
            ("delete", "greeter", "g-1"),
        ]
        assert seen[1].service.nodes[0].metadata["weight"] == "2"
        assert seen[2].service.nodes[0].address == "127.0.0.1:40001"  # from prev_kv

        names = [(await next_result(everything)).service.name for _ in range(4)]
        assert names == ["greeter", "other", "greeter", "greeter"]


@loopback
async def test_ttl_kept_alive_then_expires_with_a_delete_event(etcd: EtcdProcess) -> None:
    async with EtcdRegistry([etcd.endpoint], timeout=2.0) as observer, observer.watch("greeter") as watcher:
        async with EtcdRegistry([etcd.endpoint], timeout=2.0) as owner:
            await owner.register(make_service("g-ttl"), ttl=1)
            assert (await next_result(watcher)).action == "create"
            # Real time is the subject here: the keep-alive task must hold the 1 s lease beyond its TTL.
            with trio.move_on_after(2.5):
                event = await watcher.__anext__()
                pytest.fail(f"record changed while kept alive: {event}")
            assert [n.id for s in await observer.get_service("greeter") for n in s.nodes] == ["g-ttl"]
        # The owner is gone without deregistering: the lease runs out and etcd deletes the record.
        with trio.fail_after(4):
            event = await watcher.__anext__()
        assert (event.action, event.service.nodes[0].id) == ("delete", "g-ttl")
        assert await observer.get_service("greeter") == []


@loopback
async def test_registration_survives_etcd_restart(etcd: EtcdProcess) -> None:
    async with EtcdRegistry([etcd.endpoint], timeout=1.0) as registry:
        await registry.register(make_service("g-restart"), ttl=1)
        await etcd.stop()

        # While etcd is down every call fails promptly with RegistryError.
        for call in (
            lambda: registry.get_service("greeter"),
            lambda: registry.list_services(),
            lambda: registry.register(make_service("g-other"), ttl=1),
            lambda: registry.deregister(make_service("g-other")),
        ):
            with trio.fail_after(1.5), pytest.raises(RegistryError, match="unreachable"):
                await call()
        with trio.fail_after(1.5), pytest.raises(RegistryError):
            async with registry.watch():
                pass
        await trio.sleep(1.2)  # the outage outlasts the 1 s lease (the subject of the test)

        await etcd.start()
        [service] = await registry.get_service("greeter")
        assert [n.id for n in service.nodes] == ["g-restart"]
        await trio.sleep(2.0)  # beyond the TTL again: alive only if the keep-alive task resumed
        [service] = await registry.get_service("greeter")
        assert [n.id for n in service.nodes] == ["g-restart"]


@loopback
async def test_registration_comes_back_after_etcd_lost_its_data(etcd: EtcdProcess) -> None:
    async with EtcdRegistry([etcd.endpoint], timeout=1.0) as registry:
        service = make_service("g-wiped")
        await registry.register(service, ttl=1)
        await etcd.stop()
        etcd.wipe()
        await etcd.start()
        # A brand-new cluster starts at revision 1, so watching from there sees the re-put whenever
        # it happened; nobody calls register again.
        async with registry.client.watch("/micro/registry/", prefix=True, start_revision=1) as watch:
            with trio.fail_after(5):
                event = await watch.__anext__()
        assert event.type == "put"
        assert json.loads(event.kv.value) == json.loads(service.to_json())
        assert event.kv.lease != 0


@loopback
async def test_watch_ends_when_etcd_goes_away(etcd: EtcdProcess) -> None:
    async with EtcdRegistry([etcd.endpoint], timeout=1.0) as registry, registry.watch() as watcher:
        await etcd.stop()
        with trio.fail_after(3):
            async for event in watcher:
                pytest.fail(f"unexpected {event}")


async def break_stream(watcher: object) -> int:
    """Cut the watcher's HTTP stream under it (as a network fault would); returns its last revision."""
    watch = watcher._watch  # type: ignore[attr-defined]
    await trio.aclose_forcefully(watch._conn.stream)
    return int(watch.revision)


@loopback
async def test_watch_resumes_after_a_broken_stream_without_losing_events(registry: EtcdRegistry) -> None:
    async with registry.watch("greeter") as watcher:
        await registry.register(make_service("g-1"), ttl=30)
        assert (await next_result(watcher)).service.nodes[0].id == "g-1"
        await break_stream(watcher)
        await registry.register(make_service("g-2"), ttl=30)  # happens while the stream is down
        await registry.deregister(make_service("g-1"))
        seen = [await next_result(watcher) for _ in range(2)]
        assert [(r.action, r.service.nodes[0].id) for r in seen] == [("create", "g-2"), ("delete", "g-1")]


@loopback
async def test_watch_ends_when_its_history_was_compacted(registry: EtcdRegistry) -> None:
    async with registry.watch("greeter") as watcher:
        await registry.register(make_service("g-1"), ttl=30)
        await next_result(watcher)
        await break_stream(watcher)
        await registry.deregister(make_service("g-1"))
        revision = await registry.client.put("/unrelated", "x")
        await registry.client.call("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        # Resuming would need compacted history: the iterator ends so the caller re-lists and re-watches.
        with trio.fail_after(3):
            async for event in watcher:
                pytest.fail(f"unexpected {event}")


@loopback
async def test_failover_skips_a_dead_endpoint(etcd: EtcdProcess) -> None:
    dead = f"127.0.0.1:{free_port()}"
    async with EtcdRegistry([dead, etcd.endpoint], timeout=2.0) as registry:
        await registry.register(make_service("g-fo"), ttl=30)
        async with registry.watch("greeter") as watcher:
            await registry.deregister(make_service("g-fo"))
            assert (await next_result(watcher)).action == "delete"
    async with EtcdRegistry([dead], timeout=2.0) as registry:
        with trio.fail_after(1), pytest.raises(RegistryError, match=f"unreachable: {dead}"):
            await registry.get_service("greeter")


@loopback
async def test_unanswered_request_times_out() -> None:
    # A listener that never accepts: connect succeeds (kernel backlog), the request is never answered.
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listener:
        port = listener.socket.getsockname()[1]
        async with EtcdRegistry([f"127.0.0.1:{port}"], timeout=0.3) as registry:
            with trio.fail_after(2), pytest.raises(RegistryError, match=r"no answer within 0\.3s"):
                await registry.get_service("greeter")


@loopback
async def test_auth_and_token_renewal(etcd: EtcdProcess) -> None:
    async with EtcdClient([etcd.endpoint], timeout=2.0) as admin:
        await admin.call("/v3/auth/user/add", {"name": "root", "password": "rootpw"})
        await admin.call("/v3/auth/role/add", {"name": "root"})
        await admin.call("/v3/auth/user/grant", {"user": "root", "role": "root"})
        await admin.call("/v3/auth/enable", {})
        with pytest.raises(EtcdError, match="user name is empty"):
            await admin.range("/micro/registry/", prefix=True)

    async with EtcdRegistry([etcd.endpoint], timeout=2.0, username="root", password="rootpw") as registry:
        await registry.register(make_service("g-auth"), ttl=30)
        async with registry.watch("greeter") as watcher:
            registry.client._token = "bogus.1"  # as if the token expired: re-authenticate once
            await registry.deregister(make_service("g-auth"))
            assert (await next_result(watcher)).action == "delete"

    async with EtcdRegistry([etcd.endpoint], timeout=2.0, username="root", password="nope") as registry:
        with pytest.raises(RegistryError, match="authentication failed"):
            await registry.get_service("greeter")


@loopback
async def test_tls(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    await trio.run_process(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        capture_stdout=True, capture_stderr=True,
    )  # fmt: skip
    ctx = ssl.create_default_context(cafile=str(cert))
    async with open_etcd(cert_file=str(cert), key_file=str(key)) as etcd:
        assert etcd.url.startswith("https://")
        async with EtcdRegistry([etcd.url], timeout=2.0, ssl_context=ctx) as registry:
            await registry.register(make_service("g-tls"), ttl=30)
            async with registry.watch("greeter") as watcher:
                await registry.deregister(make_service("g-tls"))
                assert (await next_result(watcher)).action == "delete"
        # Without trusting the certificate the handshake fails: a clear RegistryError, no hang.
        async with EtcdRegistry([etcd.url], timeout=2.0) as untrusting:
            with pytest.raises(RegistryError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusting.get_service("greeter")


async def test_from_options_and_plugin() -> None:
    options = load_options(
        {"registry": "etcd", "registry_address": "10.0.0.1:2379,https://h:1", "registry_timeout": "3s"},
        env={},
    )
    registry = from_options(options)
    assert isinstance(registry, EtcdRegistry)
    assert list(registry.addresses) == ["10.0.0.1:2379", "https://h:1"]
    assert registry.timeout == 3.0
    assert isinstance(create("registry", "etcd", load_options(env={})), EtcdRegistry)
    assert list(create("registry", "etcd", load_options(env={})).addresses) == ["127.0.0.1:2379"]


# ---- sans-IO: the gateway's JSON ------------------------------------------------------------------


def test_prefix_end() -> None:
    assert prefix_end(b"/micro/registry/") == b"/micro/registry0"
    assert prefix_end(b"a\xff\xff") == b"b"
    assert prefix_end(b"\xff") == b"\x00"


def test_endpoint_parsing() -> None:
    assert EtcdEndpoint.parse("127.0.0.1:2379") == EtcdEndpoint("127.0.0.1", 2379)
    assert EtcdEndpoint.parse("https://etcd") == EtcdEndpoint("etcd", 2379, "https")
    assert EtcdEndpoint.parse("[::1]:23") == EtcdEndpoint("::1", 23)
    assert str(EtcdEndpoint.parse("http://[::1]:23/")) == "http://[::1]:23"
    for bad in ("ftp://x:1", "x:y", ":1"):
        with pytest.raises(ValueError):
            EtcdEndpoint.parse(bad)


def test_watch_messages() -> None:
    kv = {"key": b64("/k"), "create_revision": "4", "mod_revision": "5", "version": "2", "value": b64("v")}
    put = parse_watch_message({"result": {"header": {"revision": "5"}, "events": [{"kv": kv}]}})
    assert put.revision == 5 and put.events[0].type == "put" and not put.events[0].is_create
    assert put.events[0].kv.value == b"v"
    delete = parse_watch_message(
        {"result": {"events": [{"type": "DELETE", "kv": {"key": b64("/k")}, "prev_kv": kv}]}}
    )
    assert delete.events[0].type == "delete" and delete.events[0].prev_kv is not None
    compacted = parse_watch_message({"result": {"canceled": True, "compact_revision": "5"}})
    assert compacted.canceled and compacted.compact_revision == 5
    with pytest.raises(EtcdError, match="boom") as info:
        parse_watch_message({"error": {"grpc_code": 14, "http_code": 503, "message": "boom"}})
    assert info.value.code == 14
    for bad in (
        {"result": {"events": [{"type": "NOPE", "kv": kv}]}},
        {"result": {"events": [{"kv": {"key": "!!"}}]}},
    ):
        with pytest.raises(RegistryError):
            parse_watch_message(bad)


def test_error_bodies() -> None:
    err = error_from_body(404, b'{"error":"lease not found","message":"lease not found","code":5}', "revoke")
    assert (err.code, err.status, str(err)) == (5, 404, "etcd revoke: lease not found")
    assert "HTTP 502" in str(error_from_body(502, b"<html>bad gateway", "range"))


@given(st.lists(st.dictionaries(st.text(), st.integers()), max_size=5), st.data())
def test_json_lines_any_split(objects: list[dict[str, int]], data: st.DataObject) -> None:
    stream = b"".join(json.dumps(o).encode() + b"\n" for o in objects)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    decoder, out, last = JsonLines(), [], 0
    for cut in [*cuts, len(stream)]:
        out += decoder.feed(stream[last:cut])
        last = cut
    assert out + decoder.close() == objects


def test_json_lines_rejects_junk_and_oversize() -> None:
    with pytest.raises(RegistryError, match="invalid JSON"):
        JsonLines().feed(b"{nope\n")
    with pytest.raises(RegistryError, match="expected an object"):
        JsonLines().feed(b"[1]\n")
    with pytest.raises(RegistryError, match="exceeds"):
        JsonLines(max_line=10).feed(b"x" * 11)
    assert JsonLines().close() == []


@loopback
async def test_errors_in_the_block_propagate_unwrapped(etcd: EtcdProcess) -> None:
    with pytest.raises(KeyError):
        async with EtcdRegistry([etcd.endpoint], timeout=2.0):
            raise KeyError("mine")


@loopback
async def test_run_etcd_form() -> None:
    async with trio.open_nursery() as nursery:
        etcd = await nursery.start(run_etcd)
        async with EtcdClient([etcd.endpoint], timeout=2.0) as client:
            await client.put("k", "v")
            assert [kv.value for kv in (await client.range("k")).kvs] == [b"v"]
        nursery.cancel_scope.cancel()
    assert not etcd.running
    assert not etcd.data_dir.exists()
