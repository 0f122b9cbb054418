"""Client behaviour across real nodes: load spreading, retries, deadlines, metadata, wrappers."""

from __future__ import annotations

import collections

import pytest
import trio

import trimicro
from tests.conftest import Greeter
from tests.protos.greeter_pb2 import HelloRequest, HelloResponse, SlowRequest, SlowResponse


async def _node(nursery, registry, tag, **kw):
    handler = Greeter(tag)
    svc = trimicro.Service(
        "greeter", registry=registry, handlers=[handler], argv=[], handle_signals=False, **kw
    )
    await nursery.start(svc.run)
    return svc, handler


async def _hello(client, **kw):
    rsp = await client.call(
        "greeter", "Greeter.Hello", HelloRequest(name="x"), response_type=HelloResponse, **kw
    )
    return rsp.greeting.rsplit(" ", 1)[-1]


async def test_load_spreads_across_three_nodes(registry, nursery):
    for tag in "abc":
        await _node(nursery, registry, tag)
    async with trimicro.open_client(registry=registry) as client:
        counts = collections.Counter([await _hello(client) for _ in range(90)])
    assert set(counts) == set("abc")
    assert min(counts.values()) >= 10


async def test_round_robin_rotates(registry, nursery):
    for tag in "abc":
        await _node(nursery, registry, tag)
    async with trimicro.open_client(registry=registry, selector="roundrobin") as client:
        got = [await _hello(client) for _ in range(9)]
    assert collections.Counter(got) == {"a": 3, "b": 3, "c": 3}


async def test_killed_node_mid_run_no_call_fails(registry):
    """Kill one node without deregistering (a crash): calls retry onto the live nodes."""
    async with trio.open_nursery() as nursery:
        nodes = [await _node(nursery, registry, tag) for tag in "abc"]
        async with trimicro.open_client(registry=registry, client_retries=3) as client:
            for _ in range(20):
                await _hello(client)
            # Crash node "a": close its listener; its record stays in the registry.
            victim, _ = nodes[0]
            victim.server._serve_scope.cancel()
            with trio.fail_after(5):
                while victim.server.listener is not None and victim.server.stats.in_flight:
                    await trio.sleep(0.01)
            await trio.sleep(0.05)
            results = collections.Counter([await _hello(client) for _ in range(60)])
            assert "a" not in results and sum(results.values()) == 60
        nursery.cancel_scope.cancel()


async def test_deregistered_node_gets_no_traffic(registry, nursery):
    a, _ = await _node(nursery, registry, "a")
    await _node(nursery, registry, "b")
    async with trimicro.open_client(registry=registry) as client:
        assert {await _hello(client) for _ in range(30)} == {"a", "b"}
        await registry.deregister(a.record())
        await trio.sleep(0.01)  # let the watch deliver the delete to the selector cache
        assert {await _hello(client) for _ in range(30)} == {"b"}


async def test_deadline_gives_408_and_cancels_handler(registry, nursery, socket_clock):
    _, handler = await _node(nursery, registry, "slow")
    async with trimicro.open_client(registry=registry) as client:
        with pytest.raises(trimicro.MicroError) as info:
            await client.call(
                "greeter", "Greeter.Slow", SlowRequest(sleep_ms=60_000), response_type=SlowResponse, timeout=2
            )
        assert info.value.code == 408
        # The server got Timeout=2s and cancels the handler at its deadline.
        with trio.fail_after(10):
            while not handler.cancelled:
                await trio.sleep(0.1)


async def test_nested_calls_inherit_remaining_time(registry, nursery):
    seen = {}

    class Front:
        async def Call(self, req: HelloRequest, ctx: trimicro.Context) -> HelloResponse:
            seen["front"] = ctx.remaining
            return await front.client.call("greeter", "Greeter.Meta", req, response_type=HelloResponse)

    class Back:
        async def Meta(self, req: HelloRequest, ctx: trimicro.Context) -> HelloResponse:
            seen["back"] = ctx.remaining
            return HelloResponse(greeting=ctx.metadata.get("User", ""))

    front = trimicro.Service("front", registry=registry, handlers=[Front()], argv=[], handle_signals=False)
    back = trimicro.Service("greeter", registry=registry, argv=[], handle_signals=False)
    back.handle(Back(), name="Greeter")
    await nursery.start(front.run)
    await nursery.start(back.run)
    async with trimicro.open_client(registry=registry) as client:
        with trimicro.metadata(user="alice"):
            rsp = await client.call(
                "front", "Front.Call", HelloRequest(), response_type=HelloResponse, timeout=3
            )
    assert rsp.greeting == "alice"  # metadata forwarded through the nested call
    assert 0 < seen["back"] <= seen["front"] <= 3


async def test_retry_predicate_and_typed_errors(registry, nursery):
    await _node(nursery, registry, "a")
    async with trimicro.open_client(registry=registry) as client:
        with pytest.raises(trimicro.MicroError) as info:
            await client.call("greeter", "Greeter.Fail", HelloRequest(name="n"), response_type=HelloResponse)
        assert info.value == trimicro.MicroError("greeter", 400, "bad name n", "Bad Request")
        with pytest.raises(trimicro.MicroError) as info:
            await client.call("nobody", "X.Y", HelloRequest())
        assert info.value.code == 404 and info.value.id == "go.micro.client"


async def test_connection_refused_is_retried_then_500(registry):
    dead = trimicro.Node("greeter-dead", "127.0.0.1:1", {"protocol": "mucp"})
    await registry.register(trimicro.registry.Service("greeter", "1", nodes=[dead]))
    async with trimicro.open_client(registry=registry, client_retries=2) as client:
        with pytest.raises(trimicro.MicroError) as info:
            await client.call("greeter", "Greeter.Hello", HelloRequest(), response_type=HelloResponse)
    assert info.value.code == 500 and info.value.id == "go.micro.client"


async def test_client_and_handler_wrappers(registry, nursery):
    order = []

    def client_wrapper(next_call):
        async def call(req):
            order.append(f"client:{req.endpoint}")
            req.metadata["Traced"] = "yes"
            return await next_call(req)

        return call

    svc = trimicro.Service("greeter", registry=registry, handlers=[Greeter()], argv=[], handle_signals=False)

    @svc.wrap_handler
    def log_wrapper(next_handler):
        async def handler(req, ctx):
            order.append(f"handler:{req.endpoint}:{ctx.metadata.get('Traced')}")
            return await next_handler(req, ctx)

        return handler

    await nursery.start(svc.run)
    async with trimicro.open_client(registry=registry, wrappers=[client_wrapper]) as client:
        await client.call("greeter", "Greeter.Hello", HelloRequest(), response_type=HelloResponse)
    assert order == ["client:Greeter.Hello", "handler:Greeter.Hello:yes"]


async def test_node_without_protocol_gets_rpc_envelopes(registry, nursery):
    """Go Micro falls back to json-rpc/proto-rpc for nodes lacking `protocol`; so do we."""
    svc, _ = await _node(nursery, registry, "a")
    legacy = trimicro.Node("greeter-legacy", svc.address, {})
    await registry.deregister(svc.record())
    await registry.register(trimicro.registry.Service("greeter", "1", nodes=[legacy]))
    async with trimicro.open_client(registry=registry) as client:
        assert await _hello(client) == "a"
        rsp = await client.call("greeter", "Greeter.Hello", {"name": "j"}, content_type="application/json")
        assert rsp == {"greeting": "Hello j from a"}
