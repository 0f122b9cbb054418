"""What the gateway exposes, attacked on loopback: Debug/grpc internals, the allow-list, the authorize
hook, sprays of unknown service names (negative cache), oversized headers and malformed paths.

Every attack is bounded in count (a few thousand requests at most) and in time (pytest-timeout, and
``trio.fail_after`` where the clock runs)."""

from __future__ import annotations

import json
import math
import random
from contextlib import asynccontextmanager

import h11
import pytest
import trio
import trio.testing
import trio_websocket
from hypothesis import given
from hypothesis import strategies as st

import trimicro
from trimicro.api import Access, AllowList, Gateway, MissCache, is_internal
from trimicro.api._policy import well_formed
from trimicro.registry import MemoryRegistry
from trimicro.selector import RegistrySelector

from .test_gateway import Greeter, _response, fuzz, http, post, ws_url

pytestmark = pytest.mark.loopback


class CountingRegistry(MemoryRegistry):
    """A real memory registry that counts lookups (what an etcd/mdns round trip would cost)."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0
        self.names: set[str] = set()

    async def get_service(self, name: str) -> list[trimicro.registry.Service]:
        self.lookups += 1
        self.names.add(name)
        return await super().get_service(name)


@asynccontextmanager
async def stack(*, registry=None, selector=None, **gateway_kw):
    """greeter + a gateway on 127.0.0.1:0; yields (port, service, gateway, registry)."""
    registry = registry or CountingRegistry()
    async with trimicro.open_service("greeter", registry=registry, handlers=[Greeter()]) as service:
        sel = selector(registry) if selector is not None else None
        async with trimicro.open_client(registry=registry, selector=sel, client_retries=0) as client:
            gateway = Gateway(client, **gateway_kw)
            async with trio.open_nursery() as nursery:
                address = await nursery.start(gateway.serve, "127.0.0.1:0")
                yield int(address.rpartition(":")[2]), service, gateway, registry
                gateway.stop()


async def posts_on_one_connection(port, paths, body=b"{}"):
    """Keep-alive: every path POSTed in turn on one connection; returns [(status, body)]."""
    out = []
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        conn = h11.Connection(h11.CLIENT)
        for path in paths:
            hdrs = [("host", "x"), ("content-length", str(len(body)))]
            data = conn.send(h11.Request(method="POST", target=path, headers=hdrs))
            data += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
            await stream.send_all(data)
            status, _, reply = await _response(conn, stream)
            out.append((status, reply))
            conn.start_next_cycle()
    return out


# -- the rules, without sockets --


@pytest.mark.parametrize(
    ("endpoint", "internal"),
    [
        ("Debug.Stats", True),
        ("Debug.Health", True),
        ("Debug.Log", True),
        ("Debug.Trace", True),
        ("debug.stats", True),
        ("DEBUG.STATS", True),
        ("dEbUg.Health", True),
        (" Debug.Stats", True),
        ("Debug..Stats", True),
        ("Debug.Stats.", True),
        ("Debug", True),
        ("Grpc.Health.V1.Health.Check", True),
        ("grpc.reflection.v1alpha.ServerReflection.ServerReflectionInfo", True),
        ("/grpc.health.v1.Health/Check", True),
        ("/greeter.Debug/Stats", True),
        ("/Debug/Stats", True),
        ("Greeter.Hello", False),
        ("Greeter.Debug", False),
        ("Debugger.Attach", False),
        ("/greeter.Greeter/Hello", False),
        ("", False),
    ],
)
def test_internal_endpoints(endpoint, internal):
    assert is_internal(endpoint) is internal


@pytest.mark.parametrize(
    ("endpoint", "ok"),
    [
        ("Greeter.Hello", True),
        ("/greeter.Greeter/Hello", True),
        ("Greeter.Hello.X", False),
        ("Greeter.", False),
        (".Hello", False),
        ("Greeter", False),
        ("Greeter. Hello", False),
        ("/greeter.Greeter/", False),
        ("/a/b/c", False),
        ("Greeter.He/llo", False),
    ],
)
def test_well_formed_endpoints(endpoint, ok):
    assert well_formed(endpoint) is ok


def test_allow_list_patterns():
    allow = AllowList.parse(["greeter", "billing:Invoices.*,*:Public.Ping", "v1.*:Shop.List"])
    assert allow.patterns == ("greeter", "billing:Invoices.*", "*:Public.Ping", "v1.*:Shop.List")
    assert allow.allows("greeter", "Greeter.Hello") and allow.allows("greeter", "Anything.Else")
    assert not allow.allows("greeter2", "Greeter.Hello")  # a name is matched whole
    assert allow.allows("billing", "Invoices.List") and not allow.allows("billing", "Admin.Drop")
    assert allow.allows("whatever", "Public.Ping") and not allow.allows("whatever", "Public.Pong")
    assert allow.allows("v1.shop", "Shop.List") and not allow.allows("v2.shop", "Shop.List")
    assert not allow.allows("billing", "invoices.List")  # case-sensitive, as the server routes
    assert not AllowList.parse([]).allows("greeter", "Greeter.Hello")


@pytest.mark.parametrize(
    "bad", ["greeter:", ":Greeter.Hello", "a:b:c", "gree ter", "greeter:Greeter.[H]ello"]
)
def test_allow_list_rejects_bad_patterns(bad):
    with pytest.raises(ValueError, match="allow pattern"):
        AllowList.parse([bad])


@fuzz
@given(st.text(max_size=40), st.text(max_size=40))
def test_allow_list_takes_any_names(service, endpoint):
    allow = AllowList.parse(["*:Greeter.*", "a*b"])
    assert allow.allows(service, endpoint) in (True, False)
    assert is_internal(endpoint) in (True, False) and well_formed(endpoint) in (True, False)


def test_miss_cache_expires_and_is_bounded():
    cache = MissCache(ttl=5, size=3)
    for i, name in enumerate("abcd"):
        cache.add(name, now=i)
    assert len(cache) == 3 and not cache.missing("a", 3)  # evicted: least recently used
    assert cache.missing("b", 5.9) and not cache.missing("b", 6.0)  # added at 1, ttl 5
    assert cache.missing("c", 3)
    cache.forget("c")
    assert not cache.missing("c", 3)
    off = MissCache(ttl=0, size=10)
    off.add("x", 0)
    assert len(off) == 0


def test_gateway_options_are_checked():
    client = trimicro.Client(None, None)  # never used: construction only
    with pytest.raises(ValueError, match="allow pattern"):
        Gateway(client, allow=["a:b:c"])
    with pytest.raises(ValueError, match="miss_ttl"):
        Gateway(client, miss_ttl=math.nan)
    with pytest.raises(ValueError, match="max_header"):
        Gateway(client, max_header=-1)
    assert Gateway(client, allow="a, b:C.*").allow.patterns == ("a", "b:C.*")


# -- Debug and internals, attacked --

#: every way a path can spell a Debug (or grpc) call through the rpc resolver
DEBUG_PATHS = [
    "/greeter/Debug/Stats",
    "/greeter/Debug/Health",
    "/greeter/Debug/Log",
    "/greeter/Debug/Trace",
    "/greeter/debug/stats",
    "/greeter/DEBUG/STATS",
    "/greeter/dEbUg/hEaLtH",
    "/greeter/Debug/Stats/",
    "//greeter//Debug//Stats",
    "/greeter/./Debug/x/../Stats",
    "/greeter/Debug%2FStats",
    "/greeter%2FDebug%2FStats",
    "/greeter/Debug%2fHealth",
    "/greeter/%44ebug/Stats",
    "/greeter/Debug./Stats",
    "/greeter/Debug/Stats.",
    "/greeter/Debug%2eStats",
    "/greeter/%20Debug/Stats",
    "/greeter/Debug/Stats?x=1",
    "/greeter/Debug/Stats%00",
    "/greeter/Grpc.Health.V1.Health/Check",
    "/greeter/grpc.health.v1.Health/Check",
    "/greeter/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "/Debug/Stats",
    "/debug",
]


@pytest.mark.timeout(60)
async def test_debug_paths_never_reach_the_service():
    async with stack() as (port, service, _gw, registry):
        with trio.fail_after(30):
            before = service.server.stats.requests
            results = await posts_on_one_connection(port, DEBUG_PATHS)
            for path, (status, body) in zip(DEBUG_PATHS, results, strict=True):
                err = json.loads(body)
                assert status in (400, 403) and err["id"] == "go.micro.api", (path, status, body)
            assert service.server.stats.requests == before  # the service never saw one of them
            assert registry.lookups == 0  # refused before any registry lookup
            # a double-encoded slash is one path part: Greeter.Debug%2FStats, not the Debug handler
            status, body = (await posts_on_one_connection(port, ["/greeter/Debug%252FStats"]))[0]
            assert status == 404 and json.loads(body)["id"] == "go.micro.server"
            before = service.server.stats.requests
            # every request and header style: GET, a namespace, a websocket
            status, _, _ = await http(port, "GET", "/greeter/Debug/Stats")
            assert status == 405
            with pytest.raises(trio_websocket.ConnectionRejected) as info:
                async with trio_websocket.open_websocket_url(ws_url(port, "/greeter/debug/stats")):
                    pass
            assert info.value.status_code == 403
            assert json.loads(info.value.body)["detail"].startswith("endpoint Debug.Stats is internal")
            assert service.server.stats.requests == before


async def test_debug_refused_under_a_namespace_too():
    registry = CountingRegistry()
    async with trimicro.open_service("go.micro.api.greeter", registry=registry, handlers=[Greeter()]):
        async with trimicro.open_client(registry=registry, client_retries=0) as client:
            gateway = Gateway(client, namespace="go.micro.api")
            async with trio.open_nursery() as nursery:
                port = int((await nursery.start(gateway.serve, "127.0.0.1:0")).rpartition(":")[2])
                with trio.fail_after(10):
                    assert (await post(port, "/greeter/Debug/Stats", {}))[0] == 403
                    assert (await post(port, "/greeter/hello", {"name": "ns"}))[0] == 200
                gateway.stop()


async def test_expose_debug_lets_debug_through_but_the_allow_list_still_applies():
    async with stack(expose_debug=True) as (port, _svc, _gw, _reg):
        status, _, body = await post(port, "/greeter/Debug/Health", {})
        assert (status, json.loads(body)) == (200, {"status": "ok"})
    async with stack(expose_debug=True, allow=["greeter:Greeter.*"]) as (port, _svc, _gw, _reg):
        status, _, body = await post(port, "/greeter/Debug/Health", {})
        assert status == 403 and "allow-list" in json.loads(body)["detail"]


# -- the allow-list and the authorize hook --


async def test_allow_list_refuses_before_any_lookup():
    async with stack(allow=["greeter:Greeter.Hello"]) as (port, service, _gw, registry):
        with trio.fail_after(10):
            status, _, body = await post(port, "/greeter/hello", {"name": "a"})
            assert (status, json.loads(body)) == (200, {"greeting": "Hello a"})
            lookups, requests = registry.lookups, service.server.stats.requests
            for path in ("/greeter/Greeter/Meta", "/greeter/greeter/fail", "/billing/Invoices/List", "/"):
                status, _, body = await post(port, path, {})
                assert status == 403, path
                assert json.loads(body) == {
                    "id": "go.micro.api",
                    "code": 403,
                    "detail": json.loads(body)["detail"],
                    "status": "Forbidden",
                }
            # unknown or not, a refused name looks the same and costs no registry round trip
            assert registry.lookups == lookups and service.server.stats.requests == requests
            with pytest.raises(trio_websocket.ConnectionRejected) as info:
                async with trio_websocket.open_websocket_url(ws_url(port, "/greeter/Greeter/Echo")):
                    pass
            assert info.value.status_code == 403


async def test_authorize_hook_sees_the_request_and_decides():
    seen: list[Access] = []

    async def authorize(access: Access) -> bool:
        seen.append(access)
        token = access.headers.get("Authorization")
        if token is None:
            raise trimicro.errors.unauthorized("go.micro.api", "token required")
        if token == "Bearer crash":
            raise RuntimeError("hook bug")
        await trio.lowlevel.checkpoint()
        return token == "Bearer good" and access.endpoint == "Greeter.Hello"

    async with stack(authorize=authorize) as (port, service, _gw, _reg):
        with trio.fail_after(10):
            status, _, body = await post(
                port, "/greeter/hello", {"name": "b"}, [("authorization", "Bearer good")]
            )
            assert status == 200
            access = seen[-1]
            assert (access.service, access.endpoint, access.method, access.path) == (
                "greeter", "Greeter.Hello", "POST", "/greeter/hello",
            )  # fmt: skip
            assert access.peer is not None and access.peer[0] == "127.0.0.1" and not access.websocket
            assert access.headers["Host"] == f"127.0.0.1:{port}"
            requests = service.server.stats.requests
            status, _, body = await post(
                port, "/greeter/Greeter/Meta", {}, [("authorization", "Bearer good")]
            )
            assert status == 403 and json.loads(body)["detail"] == "greeter Greeter.Meta: access denied"
            status, _, body = await post(port, "/greeter/hello", {})
            assert status == 401 and json.loads(body)["detail"] == "token required"
            status, _, body = await post(port, "/greeter/hello", {}, [("authorization", "Bearer crash")])
            assert status == 500 and json.loads(body)["detail"] == "authorization failed"  # fail closed
            assert service.server.stats.requests == requests
            # internals are refused before the hook is even asked
            count = len(seen)
            assert (await post(port, "/greeter/Debug/Stats", {}, [("authorization", "Bearer good")]))[
                0
            ] == 403
            assert len(seen) == count
            # websockets ask too, before the handshake completes
            with pytest.raises(trio_websocket.ConnectionRejected) as info:
                async with trio_websocket.open_websocket_url(ws_url(port, "/greeter/Greeter/Echo")):
                    pass
            assert info.value.status_code == 401 and seen[-1].websocket and seen[-1].method == "GET"


# -- unknown names: the negative cache --


@pytest.mark.timeout(90)
async def test_spray_of_unknown_names_costs_one_lookup_each_and_bounded_memory(mock_clock):
    """2000 requests for 500 random unknown names over 4 keep-alive connections at once; the
    selector does not cache (RegistrySelector), so only the gateway stands between the spray and
    the registry. The clock stands still (mock_clock, rate 0): the whole spray is within one TTL."""
    rng = random.Random(20)
    names = [f"/nobody-{i:03d}-{rng.getrandbits(64):016x}/x" for i in range(500)]

    async def spray(port):
        replies = []

        async def one_connection():
            replies.extend(await posts_on_one_connection(port, names))

        async with trio.open_nursery() as nursery:
            for _ in range(4):  # the same order on every connection: concurrent asks share one lookup
                nursery.start_soon(one_connection)
        assert len(replies) == 2000
        assert {(status, json.loads(body)["detail"]) for status, body in replies} == {
            (500, "service not found")
        }

    async with stack(selector=RegistrySelector, miss_cache_size=1000) as (port, _svc, gateway, registry):
        registry.lookups = 0
        await spray(port)
        assert registry.lookups == 500  # one per name: cached, and concurrent asks shared
        assert len(gateway._misses) == 500
    # a smaller cache: memory bounded by its size, whatever the spray
    async with stack(selector=RegistrySelector, miss_cache_size=100) as (port, _svc, gateway, registry):
        await spray(port)
        assert len(gateway._misses) == 100
    # no cache at all: concurrent asks for one name still share a lookup, and every answer is typed
    async with stack(selector=RegistrySelector, miss_cache_size=0) as (port, _svc, gateway, registry):
        registry.lookups = 0
        await spray(port)
        assert len(gateway._misses) == 0 and registry.lookups <= 2000


async def test_concurrent_requests_for_a_known_service_share_its_lookup():
    async with stack(selector=RegistrySelector) as (port, _svc, _gw, registry):
        registry.lookups = 0
        statuses = []

        async def one():
            statuses.append((await post(port, "/greeter/hello", {"name": "c"}))[0])

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(one)
        assert statuses == [200] * 20
        assert registry.lookups <= 40  # the gateway's check (shared) plus the client's own select


@pytest.fixture
def running_clock():
    """Real time that a test can also jump forward (trio's MockClock at rate 1)."""
    return trio.testing.MockClock(rate=1)


async def test_a_service_registering_after_a_miss_is_reachable_within_the_ttl(running_clock):
    registry = CountingRegistry()
    async with stack(registry=registry, miss_ttl=5.0) as (port, _svc, _gw, _reg):
        with trio.fail_after(20):
            status, _, body = await post(port, "/late/Greeter/Hello", {"name": "x"})
            assert status == 500 and json.loads(body)["detail"] == "service not found"
            lookups = registry.lookups
            for _ in range(20):
                assert (await post(port, "/late/Greeter/Hello", {"name": "x"}))[0] == 500
            assert registry.lookups == lookups  # cached: no registry round trip
            async with trimicro.open_service("late", registry=registry, handlers=[Greeter()]):
                running_clock.jump(5.0)  # the miss expires; the selector's watch saw the service
                status, _, body = await post(port, "/late/Greeter/Hello", {"name": "x"})
                assert (status, json.loads(body)) == (200, {"greeting": "Hello x"})


async def test_registry_failure_is_not_cached_as_a_miss():
    class Down(CountingRegistry):
        down = True

        async def get_service(self, name):
            if self.down and name != "greeter":
                self.lookups += 1
                raise trimicro.errors.RegistryError("registry is down")
            return await super().get_service(name)

    async with stack(registry=Down(), selector=RegistrySelector) as (port, _svc, gateway, registry):
        for _ in range(3):
            status, _, body = await post(port, "/other/x", {})
            assert status == 500 and "registry is down" in json.loads(body)["detail"]
        assert registry.lookups == 3 and len(gateway._misses) == 0


# -- headers and malformed input --


async def test_oversized_headers_are_refused_and_the_gateway_keeps_serving():
    """A header block over ``max_header`` is refused whether it arrives whole (431, checked by the
    gateway) or in pieces (hypercorn's h11 buffer limit: an empty 4xx); the service never sees it."""
    async with stack(max_header=4096) as (port, service, _gw, _reg):
        with trio.fail_after(10):
            requests = service.server.stats.requests
            many = [(f"x-h{i}", "v" * 40) for i in range(200)]
            for path, headers in (
                ("/greeter/hello", [("x-big", "a" * 8192)]),
                ("/greeter/hello", many),
                ("/greeter/" + "a" * 8192, []),
            ):
                status, _, body = await post(port, path, {"name": "x"}, headers)
                assert status == 431 and json.loads(body)["code"] == 431
            # trickled in pieces, past the limit: h11 refuses before the block is complete
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(b"POST /greeter/hello HTTP/1.1\r\nhost: x\r\n")
                try:
                    for _ in range(8):
                        await stream.send_all(b"x-pad: " + b"p" * 1000 + b"\r\n")
                        await trio.testing.wait_all_tasks_blocked(0.01)
                except trio.BrokenResourceError:
                    pass  # refused and closed while we were still sending
                reply = b""
                with trio.move_on_after(5):
                    while chunk := await stream.receive_some(65536):
                        reply += chunk
                assert reply.startswith(b"HTTP/1.1 4"), reply[:40]
            assert service.server.stats.requests == requests
            status, _, _ = await post(port, "/greeter/hello", {"name": "x"}, [("x-ok", "a" * 1024)])
            assert status == 200


MALFORMED_PATHS = [
    "/greeter/%ff%fe/x",
    "/greeter/%zz/hello",
    "/%/%/%",
    "/greeter/a.b.c/d.e",
    "/greeter/" + "x/" * 300,
]


async def test_malformed_paths_and_bodies_get_typed_errors():
    async with stack() as (port, _svc, _gw, _reg):
        with trio.fail_after(10):
            for path, (status, body) in zip(
                MALFORMED_PATHS, await posts_on_one_connection(port, MALFORMED_PATHS), strict=True
            ):
                err = json.loads(body)
                assert 400 <= status < 600 and set(err) == {"id", "code", "detail", "status"}, (path, body)
            for raw in (b"[", b"{,}", b'{"a":1}x', b"\xff", b"nan", b"{" * 10000):
                status, _, body = await http(port, "POST", "/greeter/hello", raw)
                assert status == 400 and json.loads(body)["id"] == "go.micro.api", raw[:20]
