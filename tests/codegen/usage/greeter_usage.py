"""Typed use of generated code; tests/codegen/test_lint.py runs ``mypy --strict`` over it.

Not a test module: it is copied next to the generated modules and only type-checked.
"""

from __future__ import annotations

import trio
from cgtest import greeter_pb2 as pb
from cgtest.api import order_service_micro
from cgtest.greeter_micro import GREETER_METHODS, GreeterClient, GreeterHandler, register_greeter_handler
from cgtest.multi_micro import KeywordsHandler
from cgtest.wkt_micro import ClockClient
from google.protobuf import empty_pb2, timestamp_pb2

import trimicro


class Greeter:
    async def Hello(self, req: pb.HelloRequest, ctx: trimicro.Context) -> pb.HelloResponse:
        return pb.HelloResponse(greeting="Hello " + req.name)

    async def Stream(
        self,
        req: pb.StreamRequest,
        stream: trimicro.Stream[pb.StreamRequest, pb.StreamResponse],
        ctx: trimicro.Context,
    ) -> None:
        for i in range(req.count):
            await stream.send(pb.StreamResponse(count=i))

    async def Sum(self, stream: trimicro.Stream[pb.Num, pb.Total], ctx: trimicro.Context) -> None:
        total = pb.Total()
        async for num in stream:
            total.sum += num.value
        await stream.send(total)

    async def Echo(
        self, stream: trimicro.Stream[pb.EchoMessage, pb.EchoMessage], ctx: trimicro.Context
    ) -> None:
        async for msg in stream:
            await stream.send(msg)


async def use(service: trimicro.Service, client: trimicro.Client) -> None:
    impl: GreeterHandler = Greeter()
    endpoints: list[str] = register_greeter_handler(service, impl)
    assert endpoints and GREETER_METHODS
    greeter = GreeterClient("greeter", client)
    rsp: pb.HelloResponse = await greeter.Hello(pb.HelloRequest(name="x"), timeout=1.0, metadata={"a": "b"})
    print(rsp.greeting)
    async with greeter.Stream(pb.StreamRequest(count=2)) as stream:
        async for item in stream:
            count: int = item.count
            print(count)
    async with greeter.Sum() as sums:
        await sums.send(pb.Num(value=1))
        await sums.close_send()
        total: pb.Total = await sums.receive()
        print(total.sum)
    async with greeter.Echo() as echo:
        await echo.send(pb.EchoMessage(text="x"))
        back: pb.EchoMessage = await echo.receive()
        print(back.text)
    clock = ClockClient("clock", client)
    now: timestamp_pb2.Timestamp = await clock.Now(empty_pb2.Empty())
    print(now.seconds)
    orders = order_service_micro.OrdersClient("orders", client)
    print(orders)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(greeter.Hello, pb.HelloRequest())


def keywords(impl: KeywordsHandler) -> None:
    print(impl.def_, impl.print_, impl.import_, impl.str_, impl.trimicro_, impl.match_)
