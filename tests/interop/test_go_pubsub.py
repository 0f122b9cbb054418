"""Pub/sub between Go Micro v5 and trimicro through the http broker on the shared etcd: both directions,
and one queue group with a Go and a Python member (every message delivered once, to one of them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

import trimicro
from tests.interop._go import GoProcess, go_flags, open_go, py_service, run_go
from tests.protos.greeter_pb2 import Event

pytestmark = pytest.mark.loopback

CODECS = ["application/json", "application/protobuf"]


class Inbox:
    """A trimicro subscriber that records (message, context) pairs and wakes waiters."""

    def __init__(self) -> None:
        self.got: list[tuple[Event, trimicro.Context]] = []
        self._changed = trio.Event()

    async def __call__(self, msg: Event, ctx: trimicro.Context) -> None:
        self.got.append((msg, ctx))
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, n: int, timeout: float = 10.0) -> None:
        with trio.fail_after(timeout):
            while len(self.got) < n:
                await self._changed.wait()


async def wait_broker_nodes(svc: trimicro.Service, topic: str, count: int) -> None:
    """Until ``count`` http-broker subscriber nodes for ``topic`` are in the registry (Go registers its
    subscriptions after printing ``started``)."""
    with trio.fail_after(10):
        while True:
            services = await svc.registry.get_service("micro.http.broker")
            if sum(n.metadata.get("topic") == topic for s in services for n in s.nodes) >= count:
                return
            await trio.sleep(0.02)  # an external process's registration: nothing to wait on but etcd


async def go_messages(go: GoProcess, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    return [await go.expect("message", timeout=timeout) for _ in range(n)]


@pytest.mark.parametrize("content_type", CODECS)
async def test_go_publishes_trimicro_subscribes(
    go_interop: Path, shared_etcd: str, uniq: str, content_type: str
) -> None:
    topic = f"interop.go2py.{uniq}"
    inbox = Inbox()
    svc = py_service(f"py-sub-{uniq}", shared_etcd)
    svc.subscribe(topic, inbox)
    async with trimicro.open_service(service=svc):
        go = await run_go(
            go_interop,
            ["publisher", *go_flags(shared_etcd), "--topic", topic, "--count", "3", "--content_type", content_type,
             "--message", "from go", "--linger", "1s"],
        )  # fmt: skip
        assert go.returncode == 0, go.describe()
        assert go.all("done")[0] == {"event": "done", "published": 3, "failed": 0}
        await inbox.wait_for(3)
    assert sorted((m.id, m.seq, m.message) for m, _ in inbox.got) == [
        (str(i), i, "from go") for i in range(3)
    ]
    for _, ctx in inbox.got:
        assert ctx.content_type == content_type
        assert len(ctx.id) == 36  # Go's Micro-ID header: a fresh UUID per message


@pytest.mark.parametrize("content_type", CODECS)
async def test_trimicro_publishes_go_subscribes(
    go_interop: Path, shared_etcd: str, uniq: str, content_type: str
) -> None:
    topic = f"interop.py2go.{uniq}"
    args = ["server", *go_flags(shared_etcd), "--server_address", "127.0.0.1:0", "--name", f"go-sub-{uniq}"]
    async with (
        trimicro.open_service(service=py_service(f"py-pub-{uniq}", shared_etcd)) as svc,
        open_go(go_interop, [*args, "--topic", topic]) as go,
    ):
        await go.expect("started")
        await wait_broker_nodes(svc, topic, 1)
        for i in range(3):
            await svc.client.publish(
                topic, Event(id=f"py-{i}", seq=i, message="from py"), content_type=content_type,
                metadata={"X-Origin": "trimicro"},
            )  # fmt: skip
        got = await go_messages(go, 3)
    assert sorted(m["payload"]["id"] for m in got) == ["py-0", "py-1", "py-2"]
    for m in got:
        assert m["topic"] == topic
        assert m["content_type"] == content_type
        assert m["payload"]["message"] == "from py"
        assert m["header"]["Micro-Topic"] == topic
        assert m["header"]["X-Origin"] == "trimicro"
        assert {"Content-Type", "Micro-Topic"} <= set(m["header"])


async def test_queue_group_spans_go_and_python(go_interop: Path, shared_etcd: str, uniq: str) -> None:
    """One queue group, one Go and one Python member; messages from both a Go and a trimicro publisher.
    Each message reaches exactly one member; none lost, none duplicated; both members get some."""
    topic, queue, n = f"interop.queue.{uniq}", f"q-{uniq}", 16
    inbox = Inbox()
    svc = py_service(f"py-member-{uniq}", shared_etcd)
    svc.subscribe(topic, inbox, queue=queue)
    args = [
        "server",
        *go_flags(shared_etcd),
        "--server_address",
        "127.0.0.1:0",
        "--name",
        f"go-member-{uniq}",
    ]
    async with (
        trimicro.open_service(service=svc),
        open_go(go_interop, [*args, "--topic", topic, "--queue", queue]) as go_member,
    ):
        await go_member.expect("started")
        await wait_broker_nodes(svc, topic, 2)
        for i in range(n):
            await svc.client.publish(topic, Event(id=f"py-{i}", seq=i, message="py"))
        pub = await run_go(
            go_interop,
            ["publisher", *go_flags(shared_etcd), "--topic", topic, "--count", str(n), "--linger", "1s"],
        )
        assert pub.all("done")[0]["failed"] == 0, pub.describe()
        expected = {f"py-{i}" for i in range(n)} | {str(i) for i in range(n)}
        with trio.fail_after(15):
            while len(inbox.got) + len(go_member.all("message")) < len(expected):
                await trio.sleep(0.02)  # deliveries land in two processes; poll both tallies
        await trio.sleep(0.3)  # room for a duplicate delivery to show up before counting
    py_ids = [m.id for m, _ in inbox.got]
    go_ids = [m["payload"]["id"] for m in go_member.all("message")]
    assert sorted(py_ids + go_ids) == sorted(expected), "a message was lost or delivered twice"
    assert py_ids and go_ids, f"the group did not spread: python {len(py_ids)}, go {len(go_ids)}"
