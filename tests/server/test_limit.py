"""Overload protection: server_max_concurrent handlers, a bounded queue, a fast 503 with pushback."""

from __future__ import annotations

import functools

import pytest
import trio
import trio.testing

import trimicro
from tests.conftest import Greeter
from tests.protos.greeter_pb2 import HelloRequest, HelloResponse
from trimicro.client._retry import pushback_of
from trimicro.config import load_options
from trimicro.errors import MicroError
from trimicro.server._limit import HandlerLimit, Overloaded


async def test_slots_queue_and_rejection(autojump_clock: trio.testing.MockClock) -> None:
    limit = HandlerLimit(max_concurrent=1, max_queue=1, retry_after=0.25)
    order: list[str] = []
    release = trio.Event()

    async def call(name: str, deadline: float = float("inf")) -> None:
        try:
            async with limit.slot(deadline):
                order.append(f"run {name}")
                await release.wait()
        except Overloaded as exc:
            order.append(f"503 {name} {exc.retry_after}")
        except MicroError as exc:
            order.append(f"{exc.code} {name}")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, "a")
        await trio.sleep(0.1)
        nursery.start_soon(call, "b")  # queued
        await trio.sleep(0.1)
        nursery.start_soon(call, "c")  # queue full: rejected at once
        await trio.sleep(0.1)
        assert order == ["run a", "503 c 0.25"]
        assert limit.stats() == {
            "max_concurrent": 1,
            "running": 1,
            "queued": 1,
            "rejected": 1,
            "queued_timeouts": 0,
        }
        release.set()
    assert order == ["run a", "503 c 0.25", "run b"]
    release = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, "d")
        await trio.sleep(0.1)
        nursery.start_soon(call, "e", trio.current_time() + 1)  # its deadline passes in the queue
        await trio.sleep(2)
        assert order[-1] == "408 e"
        release.set()
    assert HandlerLimit().stats() == {"max_concurrent": 0}


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="server_max_concurrent"):
        load_options(env={"MICRO_SERVER_MAX_CONCURRENT": "-1"})
    assert load_options(env={"MICRO_SERVER_MAX_CONCURRENT": "8"}).server_max_concurrent == 8


async def _node(nursery, registry, tag, **kw):
    greeter = Greeter(tag)
    svc = trimicro.Service(
        "greeter", registry=registry, handlers=[greeter], argv=[], handle_signals=False, **kw
    )
    await nursery.start(svc.run)
    return svc, greeter


async def test_full_node_answers_503_with_pushback_and_the_client_goes_elsewhere(registry, nursery):
    busy, gate = await _node(nursery, registry, "busy", server_max_concurrent=1, server_max_queue=0)
    async with trimicro.open_client(registry=registry) as client:
        nursery.start_soon(
            functools.partial(
                client.call,
                "greeter",
                "Greeter.Gate",
                HelloRequest(name="x"),
                address=busy.address,
                timeout=30,
            )
        )
        with trio.fail_after(5):
            await gate.started.wait()
        with pytest.raises(MicroError) as info:  # straight to the full node: fast 503 with pushback
            await client.call(
                "greeter",
                "Greeter.Hello",
                HelloRequest(),
                response_type=HelloResponse,
                address=busy.address,
                retries=0,
            )
        assert info.value.code == 503 and "overloaded" in info.value.detail
        assert pushback_of(info.value) == 0.05
        await _node(nursery, registry, "free")
        for _ in range(30):  # through the selector: a 503 is retried on the other node
            rsp = await client.call("greeter", "Greeter.Hello", HelloRequest(), response_type=HelloResponse)
            assert rsp.greeting.endswith("free")
        assert busy.server.limit.stats()["rejected"] >= 1
        stats = await client.call(
            "greeter", "Debug.Stats", {}, content_type="application/json", address=busy.address
        )
        gate.release.set()
    assert stats["server_limit"]["running"] == 1


async def test_grpc_clients_get_the_pushback_too(registry, nursery):
    """Over gRPC the 503 is UNAVAILABLE with ``grpc-retry-pushback-ms`` in the trailers (gRFC A6)."""
    busy, gate = await _node(nursery, registry, "busy", server_max_concurrent=1, server_max_queue=0)
    async with trimicro.open_client(registry=registry, transport="grpc") as client:
        nursery.start_soon(
            functools.partial(
                client.call,
                "greeter",
                "Greeter.Gate",
                HelloRequest(name="x"),
                address=busy.address,
                timeout=30,
            )
        )
        with trio.fail_after(5):
            await gate.started.wait()
        with pytest.raises(MicroError) as info:
            await client.call(
                "greeter", "Greeter.Hello", HelloRequest(), response_type=HelloResponse,
                address=busy.address, retries=0,
            )  # fmt: skip
        gate.release.set()
    assert info.value.code == 503
    assert pushback_of(info.value) == 0.05
