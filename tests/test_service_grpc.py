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


async def test_a_health_watch_sees_the_drain_and_does_not_hold_it(registry):
    """A watcher gets NOT_SERVING as the drain starts and its stream ends then (UNAVAILABLE), so a
    service with watchers still stops at once rather than after its grace period."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    svc = trimicro.Service("greeter", registry=registry, argv=[], handle_signals=False, server_grace_period=20)
    svc.handle(Greeter(), name="Greeter", grpc_service="greeter.Greeter")
    got_first = trio.Event()
    S = health_pb2.HealthCheckResponse

    def watch() -> tuple[list[int], object]:
        seen = []
        with grpc.insecure_channel(svc.address) as channel:
            updates = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=20)
            try:
                for update in updates:
                    seen.append(update.status)
                    trio.from_thread.run_sync(got_first.set)
            except grpc.RpcError as exc:
                return seen, exc.code()
        return seen, None

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            await nursery.start(svc.run)
            result: list[tuple[list[int], object]] = []

            async def watcher() -> None:
                result.append(await trio.to_thread.run_sync(watch))

            nursery.start_soon(watcher)
            await got_first.wait()
            started = trio.current_time()
            svc.stop()
    assert trio.current_time() - started < 10  # not the 20 s grace period
    assert result == [([S.SERVING, S.NOT_SERVING], grpc.StatusCode.UNAVAILABLE)]
