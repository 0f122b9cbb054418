"""Go Micro v5's http broker (the interop binary) and trimicro services on one etcd, both directions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
import trio

import trimicro
from tests.interop._go import GoProcess, open_go
from tests.protos.greeter_pb2 import Event
from trimicro.testing.etcd import EtcdNotFound, EtcdProcess, open_etcd

pytestmark = pytest.mark.loopback

INTEROP = Path(__file__).resolve().parents[1] / "interop" / "go" / "bin" / "interop"


@pytest.fixture
async def etcd() -> AsyncIterator[EtcdProcess]:
    if not INTEROP.exists():
        pytest.skip("Go interop binary not built (tests/interop/go/build.sh)")
    try:
        async with open_etcd() as proc:
            yield proc
    except EtcdNotFound as exc:
        pytest.skip(str(exc))


def go_flags(etcd: EtcdProcess) -> list[str]:
    return ["--registry", "etcd", "--registry_address", etcd.endpoint, "--broker_address", "127.0.0.1:0"]


def go_process(args: list[str]) -> AbstractAsyncContextManager[GoProcess]:
    """Run the interop binary; iterate the result for its JSON stdout lines; stopped on exit."""
    return open_go(INTEROP, args)


def service(name: str, etcd: EtcdProcess) -> trimicro.Service:
    return trimicro.Service(
        name,
        registry="etcd",
        registry_address=[etcd.endpoint],
        broker="http",
        argv=[],
        handle_signals=False,
    )


async def test_go_publisher_to_trimicro_subscriber(etcd: EtcdProcess) -> None:
    got: list[tuple[Event, trimicro.Context]] = []
    done = trio.Event()

    async def on_event(msg: Event, ctx: trimicro.Context) -> None:
        got.append((msg, ctx))
        if len(got) == 4:
            done.set()

    svc = service("py-sub", etcd)
    svc.subscribe("interop.events", on_event)
    async with trimicro.open_service(service=svc):
        for ct in ("application/json", "application/protobuf"):
            args = ["publisher", *go_flags(etcd), "--topic", "interop.events", "--count", "2"]
            async with go_process(
                [*args, "--content_type", ct, "--message", "from go", "--linger", "1s"]
            ) as lines:
                with trio.fail_after(20):
                    async for line in lines:
                        if line["event"] == "done":
                            assert line["failed"] == 0
                            break
        with trio.fail_after(10):
            await done.wait()
    # Go's Publish is fire-and-forget (one goroutine per message), so arrival order within a run is free.
    received = sorted((c.content_type, m.seq, m.id, m.message) for m, c in got)
    assert received == [
        (ct, seq, str(seq), "from go")
        for ct in ("application/json", "application/protobuf")
        for seq in (0, 1)
    ]
    assert all(len(c.id) == 36 for _, c in got)  # Go's Micro-ID: a UUID


async def wait_for_go_subscriber(registry: Any, topic: str, count: int) -> None:
    """Poll the registry until the Go process's broker nodes for ``topic`` are registered."""
    with trio.fail_after(20):
        while True:
            services = await registry.get_service("micro.http.broker")
            nodes = [n for s in services for n in s.nodes if n.metadata.get("topic") == topic]
            if len(nodes) >= count:
                return
            await trio.sleep(0.05)  # an external process's readiness: nothing to wait on but the registry


async def test_trimicro_publisher_to_go_subscribers(etcd: EtcdProcess) -> None:
    base = ["server", *go_flags(etcd), "--server_address", "127.0.0.1:0", "--topic", "interop.in"]
    pub = service("py-pub", etcd)
    async with (
        trimicro.open_service(service=pub),
        go_process([*base, "--name", "go-a", "--queue", "q1"]) as a,
        go_process([*base, "--name", "go-b", "--queue", "q1"]) as b,
        go_process([*base, "--name", "go-c"]) as c,
    ):
        await wait_for_go_subscriber(pub.registry, "interop.in", 3)
        n = 6
        for i in range(n):
            ct = "application/json" if i % 2 else "application/protobuf"
            await pub.client.publish(
                "interop.in", Event(id=str(i), seq=i, message="from py"), content_type=ct
            )

        seen: dict[str, list[dict[str, Any]]] = {"a": [], "b": [], "c": []}
        complete = trio.Event()

        async def collect(lines: GoProcess, out: list[dict[str, Any]]) -> None:
            async for line in lines:
                if line["event"] == "message":
                    out.append(line)
                    if len(seen["a"]) + len(seen["b"]) >= n and len(seen["c"]) >= n:
                        complete.set()

        with trio.move_on_after(10):  # bounded: the counts are checked below
            async with trio.open_nursery() as nursery:
                for key, lines in (("a", a), ("b", b), ("c", c)):
                    nursery.start_soon(collect, lines, seen[key])
                await complete.wait()
                await trio.sleep(0.2)  # room for an unwanted extra delivery to show up
                nursery.cancel_scope.cancel()
    assert len(seen["c"]) == n
    assert len(seen["a"]) + len(seen["b"]) == n
    for line in seen["c"]:
        assert line["topic"] == "interop.in"
        assert line["payload"]["message"] == "from py"
        assert set(line["header"]) >= {"Content-Type", "Micro-Topic", "Micro-ID"}
    assert sorted(int(line["payload"].get("seq", 0)) for line in seen["c"]) == list(range(n))
