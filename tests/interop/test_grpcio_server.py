"""trimicro's client (GrpcTransport) calls a stock grpcio server.

``grpc.server`` runs handlers in its own thread pool (grpcio forces the threads); we only start and
stop it, from a worker thread because ``stop().wait()`` blocks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
import trio

from tests.protos import greeter_pb2 as pb
from tests.protos import greeter_pb2_grpc as pbg
from trimicro.client import Client
from trimicro.errors import MicroError
from trimicro.transport.grpc import GrpcTransport

pytestmark = pytest.mark.loopback


class StockGreeter(pbg.GreeterServicer):
    def __init__(self) -> None:
        self.metadata: dict[str, str] = {}
        self.cancelled = threading.Event()

    def Hello(self, request: pb.HelloRequest, context: grpc.ServicerContext) -> pb.HelloResponse:
        self.metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        context.send_initial_metadata([("x-from", "grpcio")])
        return pb.HelloResponse(greeting=f"Hi {request.name}")

    def Fail(self, request: pb.HelloRequest, context: grpc.ServicerContext) -> pb.HelloResponse:
        context.abort(grpc.StatusCode.PERMISSION_DENIED, f"no entry for {request.name}")
        raise AssertionError("unreachable")

    def Slow(self, request: pb.SlowRequest, context: grpc.ServicerContext) -> pb.SlowResponse:
        deadline = time.monotonic() + request.sleep_ms / 1000
        while time.monotonic() < deadline and context.is_active():
            time.sleep(0.01)
        if not context.is_active():
            self.cancelled.set()
        return pb.SlowResponse(slept_ms=request.sleep_ms)

    def Stream(self, request: pb.StreamRequest, context: grpc.ServicerContext) -> Iterator[pb.StreamResponse]:
        for i in range(request.count):
            yield pb.StreamResponse(count=i, message="s")

    def Sum(self, request_iterator: Iterator[pb.Num], context: grpc.ServicerContext) -> pb.Total:
        values = [n.value for n in request_iterator]
        return pb.Total(sum=sum(values), count=len(values))

    def Echo(
        self, request_iterator: Iterator[pb.EchoMessage], context: grpc.ServicerContext
    ) -> Iterator[pb.EchoMessage]:
        yield from request_iterator


@asynccontextmanager
async def stock_server(servicer: Any = None, *, workers: int = 16) -> AsyncIterator[tuple[str, Any]]:
    """A grpcio server on loopback with ``servicer`` (a fresh StockGreeter by default)."""
    servicer = servicer if servicer is not None else StockGreeter()
    server = grpc.server(ThreadPoolExecutor(max_workers=workers))
    pbg.add_GreeterServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        with trio.fail_after(10):
            await trio.to_thread.run_sync(lambda: server.stop(grace=None).wait(5))


async def test_four_kinds_against_grpcio() -> None:
    async with stock_server() as (address, servicer):
        transport = GrpcTransport()
        client = Client(None, transport)
        try:
            rsp = await client.call(
                "greeter", "Greeter.Hello", pb.HelloRequest(name="py"), response_type=pb.HelloResponse,
                address=address, metadata={"X-User": "ann"},
            )  # fmt: skip
            assert rsp.greeting == "Hi py"
            assert servicer.metadata["x-user"] == "ann"
            # A full gRPC path works too.
            rsp = await client.call(
                "",
                "/greeter.Greeter/Hello",
                pb.HelloRequest(name="p"),
                response_type=pb.HelloResponse,
                address=address,
            )
            assert rsp.greeting == "Hi p"

            async with client.stream(
                "greeter", "Greeter.Stream", request=pb.StreamRequest(count=4),
                response_type=pb.StreamResponse, address=address,
            ) as s:  # fmt: skip
                await s.close_send()
                assert [m.count async for m in s] == [0, 1, 2, 3]

            async with client.stream("greeter", "Greeter.Sum", response_type=pb.Total, address=address) as s:
                for i in range(5):
                    await s.send(pb.Num(value=i))
                await s.close_send()
                totals = [m async for m in s]
            assert [(t.sum, t.count) for t in totals] == [(10, 5)]

            async with client.stream(
                "greeter", "Greeter.Echo", response_type=pb.EchoMessage, address=address
            ) as s:
                for i in range(3):
                    await s.send(pb.EchoMessage(text="e", seq=i))
                    assert (await s.receive()).seq == i
                await s.close_send()
                assert [m async for m in s] == []
            # Every call shared one HTTP/2 connection.
            assert transport.open_connections == 1
        finally:
            await client.aclose()
        assert transport.open_connections == 0


async def test_errors_against_grpcio() -> None:
    async with stock_server() as (address, servicer):
        client = Client(None, GrpcTransport())
        try:
            with pytest.raises(MicroError) as info:
                await client.call("greeter", "Greeter.Fail", pb.HelloRequest(name="x"), address=address)
            assert info.value.code == 403 and info.value.detail == "no entry for x"
            assert info.value.id == "go.micro.client"

            with pytest.raises(MicroError) as info:
                await client.call("greeter", "Greeter.Nope", pb.HelloRequest(name="x"), address=address)
            assert info.value.code == 501

            with pytest.raises(MicroError) as info:
                await client.call(
                    "greeter",
                    "Greeter.Slow",
                    pb.SlowRequest(sleep_ms=5000),
                    address=address,
                    timeout=0.3,
                    retries=0,
                )
            assert info.value.code == 408
            with trio.fail_after(5):
                await trio.to_thread.run_sync(servicer.cancelled.wait, 5)
            assert servicer.cancelled.is_set()
        finally:
            await client.aclose()


async def test_many_concurrent_calls_one_connection() -> None:
    async with stock_server() as (address, _):
        transport = GrpcTransport()
        client = Client(None, transport)
        results: list[Any] = []
        try:
            async with trio.open_nursery() as nursery:
                for i in range(100):

                    async def one(i: int = i) -> None:
                        rsp = await client.call(
                            "greeter", "Greeter.Hello", pb.HelloRequest(name=str(i)),
                            response_type=pb.HelloResponse, address=address, timeout=10,
                        )  # fmt: skip
                        results.append(rsp.greeting)

                    nursery.start_soon(one)
            assert sorted(results) == sorted(f"Hi {i}" for i in range(100))
            assert transport.open_connections == 1
        finally:
            await client.aclose()
