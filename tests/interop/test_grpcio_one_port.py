"""One port, two protocols: the HTTP transport sniffs the HTTP/2 preface and hands gRPC connections
to GrpcServer, while mucp/HTTP/1.1 keeps working on the same address. Also: a handler that returns
its client-streaming response, and the ``grpc`` plugin used as the Client's transport."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
import trio

from tests.interop import Greeter
from tests.protos import greeter_pb2 as pb
from tests.protos import greeter_pb2_grpc as pbg
from trimicro.client import Client
from trimicro.server import Router, Server
from trimicro.server._grpc import GrpcServer
from trimicro.stream import Stream
from trimicro.transport.grpc import GrpcTransport
from trimicro.transport.http import HttpTransport

pytestmark = pytest.mark.loopback


class Adder(Greeter):
    async def Sum(self, stream: Stream[pb.Num, pb.Total], ctx: Any) -> pb.Total:  # type: ignore[override]
        values = [n.value async for n in stream]
        return pb.Total(sum=sum(values), count=len(values))


async def test_grpc_and_mucp_share_one_port() -> None:
    router = Router()
    router.handle(Adder(), name="Greeter")
    server = Server("greeter", router, HttpTransport(), "127.0.0.1:0")
    grpc_server = GrpcServer(server)
    server.h2_handler = grpc_server.handle_connection
    async with trio.open_nursery() as nursery:
        address = await nursery.start(server.serve)

        def grpcio_calls() -> Any:
            with grpc.insecure_channel(address) as channel:
                stub = pbg.GreeterStub(channel)
                hello = stub.Hello(pb.HelloRequest(name="h2"), timeout=5).greeting
                total = stub.Sum(iter([pb.Num(value=i) for i in range(4)]), timeout=5)
                return hello, (total.sum, total.count)

        with trio.fail_after(30):
            hello, total = await trio.to_thread.run_sync(grpcio_calls)  # grpcio blocks: thread forced
        assert hello == "Hello h2"
        assert total == (6, 4)

        mucp = Client(None, HttpTransport())
        grpc_client = Client(None, GrpcTransport())
        try:
            for client in (mucp, grpc_client):
                rsp = await client.call(
                    "greeter",
                    "Greeter.Hello",
                    pb.HelloRequest(name="c"),
                    response_type=pb.HelloResponse,
                    address=address,
                )
                assert rsp.greeting == "Hello c"
            async with grpc_client.stream(
                "greeter", "Greeter.Sum", response_type=pb.Total, address=address
            ) as s:
                for i in range(3):
                    await s.send(pb.Num(value=i))
                await s.close_send()
                assert [(t.sum, t.count) async for t in s] == [(3, 3)]
        finally:
            await mucp.aclose()
            await grpc_client.aclose()
        with trio.fail_after(5):
            await grpc_server.wait_idle()
        nursery.cancel_scope.cancel()
