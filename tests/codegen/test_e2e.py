"""Each generated module, imported and exercised against a running trimicro service on 127.0.0.1.

Handlers implement the generated ``*Handler`` protocols, are registered with the generated
``register_*_handler``, and are called through the generated ``*Client`` (unary and every stream kind).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio

import trimicro
from trimicro import errors
from trimicro.registry.memory import MemoryRegistry

pytestmark = pytest.mark.loopback


@pytest.fixture(scope="module")
def mods(generated: Path) -> Iterator[dict[str, ModuleType]]:
    sys.path.insert(0, str(generated))
    try:
        yield {
            name: importlib.import_module(f"cgtest.{name}")
            for name in (
                "greeter_pb2",
                "greeter_micro",
                "nopkg_pb2",
                "nopkg_micro",
                "wkt_micro",
                "multi_pb2",
                "multi_micro",
                "common.types_pb2",
                "api.order_service_pb2",
                "api.order_service_micro",
            )
        }
    finally:
        sys.path.remove(str(generated))


@asynccontextmanager
async def running(name: str = "cgtest") -> AsyncIterator[trimicro.Service]:
    with trio.fail_after(10):
        async with trimicro.open_service(
            name, registry=MemoryRegistry(), server_address="127.0.0.1:0"
        ) as svc:
            yield svc


def greeter_impl(pb: Any) -> object:
    class Greeter:
        async def Hello(self, req: Any, ctx: trimicro.Context) -> Any:
            if req.name == "fail":
                raise errors.bad_request("cgtest.greeter", "no %s", req.name)
            return pb.HelloResponse(greeting=f"Hello {req.name} from {ctx.metadata.get('X-From', '?')}")

        async def Stream(self, req: Any, stream: trimicro.Stream[Any, Any], ctx: trimicro.Context) -> None:
            for i in range(req.count):
                await stream.send(pb.StreamResponse(count=i, message=f"msg {i}"))

        async def Sum(self, stream: trimicro.Stream[Any, Any], ctx: trimicro.Context) -> None:
            total = pb.Total()
            async for num in stream:
                total.sum += num.value
                total.count += 1
            await stream.send(total)

        async def Echo(self, stream: trimicro.Stream[Any, Any], ctx: trimicro.Context) -> None:
            async for msg in stream:
                await stream.send(msg)

    return Greeter()


async def test_greeter_every_kind(mods: dict[str, ModuleType]) -> None:
    pb, gm = mods["greeter_pb2"], mods["greeter_micro"]
    async with running("greeter") as svc:
        added = gm.register_greeter_handler(svc, greeter_impl(pb))
        assert added == ["Greeter.Hello", "Greeter.Stream", "Greeter.Sum", "Greeter.Echo"]
        greeter = gm.GreeterClient("greeter", svc.client)
        with trio.fail_after(10):
            rsp = await greeter.Hello(pb.HelloRequest(name="John"), timeout=5, metadata={"x-from": "test"})
            assert isinstance(rsp, pb.HelloResponse)
            assert rsp.greeting == "Hello John from test"
            with pytest.raises(trimicro.MicroError) as info:
                await greeter.Hello(pb.HelloRequest(name="fail"), retries=0)
            assert info.value.code == 400

            async with greeter.Stream(pb.StreamRequest(count=3)) as stream:
                got = [(m.count, m.message) async for m in stream]
            assert got == [(0, "msg 0"), (1, "msg 1"), (2, "msg 2")]

            async with greeter.Sum() as sums:
                for v in (1, 2, 3, 4):
                    await sums.send(pb.Num(value=v))
                await sums.close_send()
                total = await sums.receive()
                assert (total.sum, total.count) == (10, 4)
                with pytest.raises(trio.EndOfChannel):
                    await sums.receive()

            async with greeter.Echo() as echo:
                for i in range(3):
                    await echo.send(pb.EchoMessage(text=f"t{i}", seq=i))
                    back = await echo.receive()
                    assert (back.text, back.seq) == (f"t{i}", i)
                await echo.close_send()
                assert [m async for m in echo] == []


async def test_registration_advertises_endpoints(mods: dict[str, ModuleType]) -> None:
    """Registered before start: the registry record lists the endpoints, streams marked ``stream=true``."""
    pb, gm = mods["greeter_pb2"], mods["greeter_micro"]
    service = trimicro.Service(
        "greeter", registry=MemoryRegistry(), address="127.0.0.1:0", handle_signals=False
    )
    gm.register_greeter_handler(service, greeter_impl(pb))
    assert service.router.grpc_paths["/cgtest.greeter.Greeter/Hello"] == "Greeter.Hello"
    assert service.router.grpc_paths["/cgtest.greeter.Greeter/Echo"] == "Greeter.Echo"
    with trio.fail_after(10):
        async with trimicro.open_service(service=service) as svc:
            eps = {e.name: e for e in svc.record().endpoints}
    assert {"Greeter.Hello", "Greeter.Stream", "Greeter.Sum", "Greeter.Echo"} <= set(eps)
    assert eps["Greeter.Hello"].metadata.get("stream") is None
    for name in ("Greeter.Stream", "Greeter.Sum", "Greeter.Echo"):
        assert eps[name].metadata.get("stream") == "true"
    assert eps["Greeter.Hello"].request is not None
    assert eps["Greeter.Hello"].request.name == "HelloRequest"
    assert [s.doc for s in gm.GREETER_METHODS][:3] == [
        "Hello greets one person.",
        "Stream sends `count` greetings back.",
        "Sum adds up the numbers it is sent.",
    ]
    assert gm.GREETER_METHODS[3].doc == "Echo returns what it receives."


async def test_router_registration(mods: dict[str, ModuleType]) -> None:
    pb, gm = mods["greeter_pb2"], mods["greeter_micro"]
    router = trimicro.server.Router()
    assert gm.register_greeter_handler(router, greeter_impl(pb))[0] == "Greeter.Hello"
    assert router.lookup("Greeter.Sum").spec.client_streaming


async def test_no_package(mods: dict[str, ModuleType]) -> None:
    pb, m = mods["nopkg_pb2"], mods["nopkg_micro"]

    class Pinger:
        async def Ping(self, req: Any, ctx: trimicro.Context) -> Any:
            return pb.PingResponse(payload=req.payload[::-1])

    async with running() as svc:
        m.register_pinger_handler(svc, Pinger())
        assert svc.router.grpc_paths["/Pinger/Ping"] == "Pinger.Ping"
        with trio.fail_after(10):
            rsp = await m.PingerClient("cgtest", svc.client).Ping(pb.PingRequest(payload="abc"))
        assert rsp.payload == "cba"


async def test_well_known_types(mods: dict[str, ModuleType]) -> None:
    from google.protobuf import empty_pb2, struct_pb2, timestamp_pb2

    m = mods["wkt_micro"]

    class Clock:
        async def Now(self, req: empty_pb2.Empty, ctx: trimicro.Context) -> timestamp_pb2.Timestamp:
            return timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=5)

        async def Describe(self, req: struct_pb2.Struct, ctx: trimicro.Context) -> struct_pb2.Struct:
            out = struct_pb2.Struct()
            out.update({"keys": sorted(req.keys()), "n": len(req)})
            return out

        async def Ticks(
            self, req: empty_pb2.Empty, stream: trimicro.Stream[Any, Any], ctx: trimicro.Context
        ) -> None:
            for s in range(3):
                await stream.send(timestamp_pb2.Timestamp(seconds=s))

    async with running() as svc:
        m.register_clock_handler(svc, Clock())
        clock = m.ClockClient("cgtest", svc.client)
        with trio.fail_after(10):
            now = await clock.Now(empty_pb2.Empty())
            assert (now.seconds, now.nanos) == (1_700_000_000, 5)
            req = struct_pb2.Struct()
            req.update({"b": 1, "a": "x"})
            desc = await clock.Describe(req)
            assert list(desc["keys"]) == ["a", "b"]
            assert desc["n"] == 2
            async with clock.Ticks(empty_pb2.Empty()) as ticks:
                assert [t.seconds async for t in ticks] == [0, 1, 2]


async def test_keywords_nested_optional_several_services(mods: dict[str, ModuleType]) -> None:
    pb, m = mods["multi_pb2"], mods["multi_micro"]

    def reply(tag: str, req: Any) -> Any:
        return pb.Reply(text=f"{tag}:{req.inner.label}" if req.inner.HasField("label") else f"{tag}:-")

    class Keywords:
        async def def_(self, req: Any, ctx: trimicro.Context) -> Any:
            return reply("def", req)

        async def print_(self, req: Any, ctx: trimicro.Context) -> Any:
            return reply("print", req)

        async def import_(self, req: Any, ctx: trimicro.Context) -> Any:
            return reply("import", req)

        async def str_(self, stream: trimicro.Stream[Any, Any], ctx: trimicro.Context) -> None:
            async for req in stream:
                await stream.send(reply("str", req))

        async def trimicro_(self, req: Any, ctx: trimicro.Context) -> Any:
            return reply("trimicro", req)

        async def match_(self, req: Any, ctx: trimicro.Context) -> Any:
            return reply("match", req)

        async def _client_(self, req: Any, ctx: trimicro.Context) -> Any:
            return reply("_client", req)

        async def Quote(self, req: Any, ctx: trimicro.Context) -> Any:
            return reply("quote", req)

    class Store:
        async def Put(self, req: Any, ctx: trimicro.Context) -> Any:
            return pb.Outer(inner=req, flag=True)

        async def Get(self, req: Any, ctx: trimicro.Context) -> Any:
            return req.inner

    class Gateway:
        async def Forward(self, req: Any, ctx: trimicro.Context) -> Any:
            return pb.Reply() if not req.HasField("text") else req

    async with running() as svc:
        assert m.register_keywords_handler(svc, Keywords())[:3] == [
            "Keywords.def",
            "Keywords.print",
            "Keywords.import",
        ]
        m.register_store_handler(svc, Store())
        m.register_http_gateway_handler(svc, Gateway())
        assert m.register_nothing_handler(svc, object()) == []
        kw = m.KeywordsClient("cgtest", svc.client)
        outer = pb.Outer(inner=pb.Outer.Inner(label="L"))
        with trio.fail_after(10):
            for call, tag in ((kw.def_, "def"), (kw.print_, "print"), (kw.import_, "import"),
                              (kw.trimicro_, "trimicro"), (kw.match_, "match"), (kw._client_, "_client"),
                              (kw.Quote, "quote")):  # fmt: skip
                assert (await call(outer)).text == f"{tag}:L"
            assert (await kw.def_(pb.Outer())).text == "def:-"  # optional field unset stays unset
            async with kw.str_() as stream:
                await stream.send(outer)
                assert (await stream.receive()).text == "str:L"
            store = m.StoreClient("cgtest", svc.client)
            put = await store.Put(pb.Outer.Inner(label="x", count=2))
            assert isinstance(put, pb.Outer)
            assert put.flag and put.inner.count == 2
            got = await store.Get(put)
            assert isinstance(got, pb.Outer.Inner)
            assert got.label == "x"
            gw = m.HTTPGatewayClient("cgtest", svc.client)
            assert not (await gw.Forward(pb.Reply())).HasField("text")
            assert (await gw.Forward(pb.Reply(text=""))).HasField("text")


async def test_imports_across_files(mods: dict[str, ModuleType]) -> None:
    api, types, greeter = mods["api.order_service_pb2"], mods["common.types_pb2"], mods["greeter_pb2"]
    m = mods["api.order_service_micro"]

    class Orders:
        async def Place(self, req: Any, ctx: trimicro.Context) -> Any:
            return types.Ack(ok=req.price.units > 0)

        async def Charge(self, req: Any, ctx: trimicro.Context) -> Any:
            return greeter.Total(sum=req.units, count=1)

        async def Watch(self, req: Any, stream: trimicro.Stream[Any, Any], ctx: trimicro.Context) -> None:
            await stream.send(api.Order(id="o1", price=types.Money(currency="EUR", units=3)))

    async with running() as svc:
        added = m.register_orders_handler(svc, Orders())
        assert added == ["Orders.Place", "Orders.Charge", "Orders.Watch"]
        assert svc.router.grpc_paths["/cgtest.api.v1.Orders/Place"] == "Orders.Place"
        orders = m.OrdersClient("cgtest", svc.client)
        with trio.fail_after(10):
            ack = await orders.Place(api.Order(id="o", price=types.Money(units=5)))
            assert ack.ok
            total = await orders.Charge(types.Money(units=7))
            assert isinstance(total, greeter.Total)
            assert total.sum == 7
            async with orders.Watch(types.Ack()) as watch:
                assert [o.price.currency async for o in watch] == ["EUR"]
