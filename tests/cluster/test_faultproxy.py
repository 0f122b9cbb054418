"""The fault proxy on loopback: each mode against an echo server, switched mid-test; then a trimicro
node behind it blackholed while registered (zero failed calls, the node ejected)."""

from __future__ import annotations

import functools

import pytest
import trio

import trimicro
from tests.cluster.faultproxy import FaultProxy
from tests.conftest import Greeter
from tests.protos.greeter_pb2 import HelloRequest, HelloResponse
from trimicro.registry import Node, Service

pytestmark = pytest.mark.loopback


async def echo(stream: trio.SocketStream) -> None:
    async with stream:
        try:
            while data := await stream.receive_some(4096):
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass


async def start(nursery: trio.Nursery) -> tuple[FaultProxy, tuple[str, int]]:
    listeners = await nursery.start(functools.partial(trio.serve_tcp, echo, 0, host="127.0.0.1"))
    proxy = FaultProxy(("127.0.0.1", listeners[0].socket.getsockname()[1]))
    address = await nursery.start(proxy.serve)
    host, _, port = address.rpartition(":")
    return proxy, (host, int(port))


async def roundtrip(stream: trio.SocketStream, data: bytes = b"ping", timeout: float = 1.0) -> bytes | None:
    """The echo of ``data``; None if nothing came back in ``timeout``; b"" if the connection closed."""
    await stream.send_all(data)
    got = b""
    with trio.move_on_after(timeout):
        while len(got) < len(data):
            chunk = await stream.receive_some(4096)
            if not chunk:
                return b""
            got += chunk
        return got
    return None


async def test_modes_switched_mid_test(nursery: trio.Nursery, socket_clock: trio.testing.MockClock) -> None:
    proxy, addr = await start(nursery)
    conn = await trio.open_tcp_stream(*addr)
    assert await roundtrip(conn) == b"ping"
    proxy.set("latency", latency=0.3)
    start_at = trio.current_time()
    assert await roundtrip(conn) == b"ping"
    assert trio.current_time() - start_at >= 0.6  # held each way
    proxy.set("blackhole")
    assert await roundtrip(conn) is None  # open, silent
    fresh = await trio.open_tcp_stream(*addr)
    assert await roundtrip(fresh) is None
    proxy.set("pass")
    again = await trio.open_tcp_stream(*addr)
    assert await roundtrip(again) == b"ping"
    proxy.set("drop")  # open connections are closed too (FIN: end of stream)
    with trio.fail_after(1):
        assert await again.receive_some(10) == b""
    dropped = await trio.open_tcp_stream(*addr)
    with trio.fail_after(1):
        assert await dropped.receive_some(10) == b""
    proxy.set("reset")
    reset = await trio.open_tcp_stream(*addr)
    with pytest.raises(trio.BrokenResourceError):
        for _ in range(3):  # the RST surfaces on the next read or write
            assert await roundtrip(reset) == b""
    for s in (conn, fresh, again, dropped, reset):
        await s.aclose()


async def test_blackholed_node_behind_the_proxy_costs_no_call(registry, nursery, socket_clock):
    nodes = []
    for tag in "ab":
        svc = trimicro.Service(
            "greeter", registry=registry, handlers=[Greeter(tag)], argv=[], handle_signals=False
        )
        await nursery.start(svc.run)
        nodes.append(svc)
    backend = trimicro.Service(
        "greeter-c", registry=registry, handlers=[Greeter("c")], argv=[], handle_signals=False
    )
    await nursery.start(backend.run)
    host, _, port = backend.address.rpartition(":")
    proxy = FaultProxy((host, int(port)))
    via = await nursery.start(proxy.serve)
    await registry.register(Service("greeter", "latest", nodes=[Node("c", via, {"protocol": "mucp"})]))
    async with trimicro.open_client(registry=registry) as client:

        async def hello() -> str:
            rsp = await client.call(
                "greeter", "Greeter.Hello", HelloRequest(), response_type=HelloResponse, timeout=1
            )
            return str(rsp.greeting.rpartition(" ")[2])

        assert {await hello() for _ in range(60)} == {"a", "b", "c"}
        proxy.set("blackhole")
        got = [await hello() for _ in range(100)]  # every call answered
        assert "c" not in got[-50:]
        assert client.selector.stats()["ejected"] == {"greeter": ["c"]}
        assert 1 <= client.stats()["attempt_timeouts"] <= 5
