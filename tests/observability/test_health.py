"""Health probes (/health, /health/live, /health/ready) and grpc.health.v1 from one readiness state."""

from __future__ import annotations

import json

import pytest
import trio

import trimicro
from tests.conftest import Greeter
from tests.observability.conftest import http_get
from tests.protos.greeter_pb2 import HelloRequest
from trimicro.codec import Frame
from trimicro.debug._grpc_health import NOT_SERVING, SERVING
from trimicro.observability import Readiness
from trimicro.registry import MemoryRegistry
from trimicro.transport.grpc import GrpcTransport

pytestmark = pytest.mark.loopback


async def grpc_health(address: str, service: str = "") -> int:
    body = (b"\x0a" + bytes([len(service)]) + service.encode()) if service else b""
    client = trimicro.Client(None, GrpcTransport())
    try:
        rsp = await client.call(
            "", "/grpc.health.v1.Health/Check", Frame(body), response_type=Frame, address=address,
            content_type="application/grpc+proto", retries=0,
        )  # fmt: skip
    finally:
        await client.aclose()
    data = rsp.data if isinstance(rsp, Frame) else bytes(rsp)
    return data[1] if data else 0


def test_readiness_reasons_and_listeners() -> None:
    seen: list[bool] = []
    r = Readiness()
    r.on_change(seen.append)
    assert r.reasons() == ["not listening", "not registered"]
    r.set(listening=True, registered=True)
    assert r.ready and seen == [False, True]
    r.set(draining=True)
    ok, body = r.report()
    assert not ok and body["status"] == "down" and body["reason"] == "draining"
    assert seen == [False, True, False]
    with pytest.raises(TypeError):
        r.set(bogus=True)


async def test_probes_and_grpc_health_follow_readiness_through_a_drain() -> None:
    greeter = Greeter()
    svc = trimicro.Service(
        "g", registry=MemoryRegistry(), handlers=[greeter], metrics_address="127.0.0.1:0",
        server_grace_period=10, argv=[],
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.run)
        assert svc.observability is not None and svc.observability.listener is not None
        probes = svc.observability.listener.bound
        assert await http_get(probes, "/health/live") == (200, b'{"status":"up"}')
        status, body = await http_get(probes, "/health/ready")
        assert status == 200 and json.loads(body)["status"] == "up"
        status, body = await http_get(probes, "/health")
        assert status == 200 and json.loads(body)["info"]["id"] == svc.id
        assert await grpc_health(svc.address) == SERVING
        assert await grpc_health(svc.address, "g") == SERVING

        # An in-flight call keeps the drain going while we look.
        nursery.start_soon(svc.client.call, "g", "Greeter.Gate", HelloRequest(name="x"))
        with trio.fail_after(5):
            await greeter.started.wait()
        svc.stop()
        with trio.fail_after(5):
            while (await http_get(probes, "/health/ready"))[0] != 503:
                await trio.sleep(0.01)
        status, body = await http_get(probes, "/health/ready")
        answer = json.loads(body)
        assert status == 503 and answer["status"] == "down" and "draining" in answer["reason"]
        assert (await http_get(probes, "/health"))[0] == 503
        assert (await http_get(probes, "/health/live"))[0] == 200  # still alive, just not ready
        assert svc.readiness.reasons()[0] == "draining"
        # New gRPC streams get GOAWAY while draining, so read the health map the Check answers from.
        health = svc.server.h2_handler.__self__.health  # type: ignore[union-attr]
        assert health.statuses[""] == health.statuses["g"] == NOT_SERVING
        greeter.release.set()
