"""A whole Service speaks gRPC on its one port: grpcio calls it, and trimicro calls it over HTTP/2
through discovery (MICRO_TRANSPORT=grpc)."""

from __future__ import annotations

import grpc
import pytest
import trio

import trimicro
from tests.conftest import Greeter
from tests.protos import greeter_pb2 as pb
from tests.protos import greeter_pb2_grpc as pbg

pytestmark = pytest.mark.loopback


async def test_grpcio_calls_a_service_and_trimicro_calls_it_over_grpc(registry, nursery):
    svc = trimicro.Service("greeter", registry=registry, argv=[], handle_signals=False)
    svc.handle(Greeter(), name="Greeter", grpc_service="greeter.Greeter")
    await nursery.start(svc.run)

    def grpcio_call() -> str:
        with grpc.insecure_channel(svc.address) as channel:
            return pbg.GreeterStub(channel).Hello(pb.HelloRequest(name="grpcio"), timeout=5).greeting

    with trio.fail_after(30):
        assert await trio.to_thread.run_sync(grpcio_call) == "Hello grpcio"

    async with trimicro.open_client(registry=registry, transport="grpc") as client:
        rsp = await client.call(
            "greeter", "Greeter.Hello", pb.HelloRequest(name="h2"), response_type=pb.HelloResponse
        )
        assert rsp.greeting == "Hello h2"
        with pytest.raises(trimicro.MicroError) as info:
            await client.call(
                "greeter", "Greeter.Fail", pb.HelloRequest(name="x"), response_type=pb.HelloResponse
            )
        assert info.value == trimicro.MicroError("greeter", 400, "bad name x", "Bad Request")
    assert svc.server.stats.requests >= 3
