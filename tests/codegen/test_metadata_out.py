"""Generated clients take ``metadata_out=`` and hand it to the core client: a caller of generated
code can read a gRPC call's response headers and trailers (unary and streams)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
import trio

import trimicro
from tests.codegen.test_e2e import mods
from trimicro.registry.memory import MemoryRegistry

__all__ = ["mods"]  # the fixture

pytestmark = pytest.mark.loopback


def _impl(pb: Any) -> object:
    class Greeter:
        async def Hello(self, req: Any, ctx: trimicro.Context) -> Any:
            ctx.set_header("x-initial", "hello")
            ctx.set_trailer("x-final", req.name)
            return pb.HelloResponse(greeting=req.name)

        async def Stream(self, req: Any, stream: trimicro.Stream[Any, Any], ctx: trimicro.Context) -> None:
            ctx.set_header("x-initial", "stream")
            for i in range(req.count):
                await stream.send(pb.StreamResponse(count=i))
            ctx.set_trailer("x-final", str(req.count))

        async def Sum(self, stream: trimicro.Stream[Any, Any], ctx: trimicro.Context) -> None: ...

        async def Echo(self, stream: trimicro.Stream[Any, Any], ctx: trimicro.Context) -> None: ...

    return Greeter()


async def test_generated_client_fills_metadata_out(mods: dict[str, ModuleType]) -> None:
    pb, gm = mods["greeter_pb2"], mods["greeter_micro"]
    with trio.fail_after(10):
        async with trimicro.open_service(
            "greeter", registry=MemoryRegistry(), server_address="127.0.0.1:0", transport="grpc"
        ) as svc:
            gm.register_greeter_handler(svc, _impl(pb))
            greeter = gm.GreeterClient("greeter", svc.client)
            out = trimicro.ResponseMetadata()
            rsp = await greeter.Hello(pb.HelloRequest(name="ann"), metadata_out=out)
            assert rsp.greeting == "ann"
            assert (out.header, out.trailer) == ({"X-Initial": "hello"}, {"X-Final": "ann"})
            out = trimicro.ResponseMetadata()
            async with greeter.Stream(pb.StreamRequest(count=2), metadata_out=out) as stream:
                assert [m.count async for m in stream] == [0, 1]
            assert (out.header, out.trailer) == ({"X-Initial": "stream"}, {"X-Final": "2"})
