"""Handler-set response metadata over gRPC: ``ctx.set_header`` goes with the first response,
``ctx.set_trailer`` with the status, for unary and streaming calls, also on errors; a stock grpcio
client and trimicro's client (``metadata_out=``) both read them."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
import trio

import trimicro.errors as errors
from tests.interop import serve_grpc
from tests.protos import greeter_pb2 as pb
from tests.protos import greeter_pb2_grpc as pbg
from trimicro.client import Client
from trimicro.context import Context, ResponseMetadata
from trimicro.server import response_metadata
from trimicro.stream import Stream
from trimicro.transport.grpc import GrpcTransport
from trimicro.transport.http import HttpTransport

pytestmark = pytest.mark.loopback


class Greeter:
    async def Hello(self, req: pb.HelloRequest, ctx: Context) -> pb.HelloResponse:
        ctx.set_header("X-Initial", "i-" + req.name)
        ctx.set_trailer("x-final", "f-" + req.name)
        ctx.set_trailer("x-blob-bin", "q6ur")
        return pb.HelloResponse(greeting=req.name)

    async def Fail(self, req: pb.HelloRequest, ctx: Context) -> pb.HelloResponse:
        ctx.set_trailer("x-why", "because")
        raise errors.forbidden("greeter", "no %s", req.name)

    async def Stream(
        self, req: pb.StreamRequest, stream: Stream[pb.StreamRequest, pb.StreamResponse], ctx: Context
    ) -> None:
        ctx.set_header("x-initial", "stream")
        response_metadata()["x-legacy"] = "still-works"
        for i in range(req.count):
            await stream.send(pb.StreamResponse(count=i))
        ctx.set_trailer("x-sent", str(req.count))


async def _grpcio(address: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    def run() -> list[tuple[dict[str, Any], dict[str, Any]]]:
        out = []
        with grpc.insecure_channel(address) as channel:
            stub = pbg.GreeterStub(channel)
            _, call = stub.Hello.with_call(pb.HelloRequest(name="ann"), timeout=5)
            out.append((dict(call.initial_metadata()), dict(call.trailing_metadata())))
            it = stub.Stream(pb.StreamRequest(count=2), timeout=5)
            assert [m.count for m in it] == [0, 1]
            out.append((dict(it.initial_metadata()), dict(it.trailing_metadata())))
            try:
                stub.Fail(pb.HelloRequest(name="bob"), timeout=5)
            except grpc.RpcError as exc:
                out.append(({}, dict(exc.trailing_metadata())))  # type: ignore[attr-defined]
        return out

    with trio.fail_after(30):
        return await trio.to_thread.run_sync(run)  # grpcio blocks: a thread is forced


async def test_stock_client_sees_headers_and_trailers() -> None:
    async with serve_grpc(Greeter()) as (address, _server, _):
        (h1, t1), (h2, t2), (_, t3) = await _grpcio(address)
    assert h1["x-initial"] == "i-ann" and "x-final" not in h1
    assert t1["x-final"] == "f-ann" and t1["x-blob-bin"] == b"\xab\xab\xab"
    assert h2["x-initial"] == "stream" and h2["x-legacy"] == "still-works"
    assert t2["x-sent"] == "2"
    assert t3["x-why"] == "because"


async def test_trimicro_client_reads_them_with_metadata_out() -> None:
    async with serve_grpc(Greeter()) as (address, _server, _):
        client = Client(None, GrpcTransport())
        try:
            out = ResponseMetadata()
            rsp = await client.call(
                "greeter", "Greeter.Hello", pb.HelloRequest(name="ann"),
                response_type=pb.HelloResponse, address=address, metadata_out=out,
            )  # fmt: skip
            assert rsp.greeting == "ann"
            assert out.header["X-Initial"] == "i-ann" and "X-Final" not in out.header
            assert out.trailer == {"X-Final": "f-ann", "X-Blob-Bin": "q6ur"}

            # the pooled socket no longer records into the previous call's object
            await client.call(
                "greeter", "Greeter.Hello", pb.HelloRequest(name="zed"),
                response_type=pb.HelloResponse, address=address,
            )  # fmt: skip
            assert out.trailer["X-Final"] == "f-ann"

            out = ResponseMetadata()
            with pytest.raises(errors.MicroError) as info:
                await client.call(
                    "greeter", "Greeter.Fail", pb.HelloRequest(name="bob"),
                    response_type=pb.HelloResponse, address=address, metadata_out=out,
                )  # fmt: skip
            assert info.value.code == 403
            assert out.trailer == {"X-Why": "because"} and out.header == {}

            out = ResponseMetadata()
            async with client.stream(
                "greeter", "Greeter.Stream", request=pb.StreamRequest(count=3),
                response_type=pb.StreamResponse, address=address, metadata_out=out,
            ) as s:  # fmt: skip
                first = await s.receive()
                assert first.count == 0
                assert out.header == {"X-Initial": "stream", "X-Legacy": "still-works"}
                assert [m.count async for m in s] == [1, 2]
            assert out.trailer == {"X-Sent": "3"}
        finally:
            await client.aclose()


async def test_mucp_call_fills_header_only() -> None:
    from trimicro.server import Router, Server

    router = Router()
    router.handle(Greeter())
    server = Server("greeter", router, HttpTransport(), "127.0.0.1:0")
    async with trio.open_nursery() as nursery:
        address = await nursery.start(server.serve)
        client = Client(None, HttpTransport())
        try:
            out = ResponseMetadata()
            rsp = await client.call(
                "greeter", "Greeter.Hello", pb.HelloRequest(name="m"),
                response_type=pb.HelloResponse, address=address, metadata_out=out,
            )  # fmt: skip
            assert rsp.greeting == "m"
            assert out.trailer == {} and "Micro-Id" not in out.header
        finally:
            await client.aclose()
            nursery.cancel_scope.cancel()
