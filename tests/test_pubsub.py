"""Pub/sub through services: service.subscribe + client.publish over the memory and http brokers."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import attrs
import pytest
import trio

import trimicro
from tests.conftest import Greeter
from tests.protos.greeter_pb2 import Event, HelloRequest, HelloResponse
from trimicro.broker.http import HttpBroker
from trimicro.broker.memory import MemoryBroker
from trimicro.broker.nats import NatsBroker
from trimicro.codec import Frame
from trimicro.registry import MemoryRegistry
from trimicro.server._subscriber import SubscriberMessage, subscriber_stats
from trimicro.testing.nats import NatsServerNotFound, open_nats_server

pytestmark = pytest.mark.loopback

BrokerFactory = Callable[[], Any]


@pytest.fixture(params=["memory", "http", "nats"])
async def make_broker(request: pytest.FixtureRequest) -> AsyncIterator[BrokerFactory]:
    """A factory of brokers that can reach each other: one shared MemoryBroker, a new HttpBroker per
    service (each with its own listener; they meet through the service's registry), or a NatsBroker
    per service on one real nats-server."""
    if request.param == "memory":
        shared = MemoryBroker()
        yield lambda: shared
    elif request.param == "http":
        yield lambda: HttpBroker()
    else:
        try:
            async with open_nats_server() as server:
                yield lambda: NatsBroker([server.address])
        except NatsServerNotFound as exc:
            pytest.skip(str(exc))


class Inbox:
    """Collects deliveries; ``wait_for(n)`` returns once ``n`` arrived in total (bounded by the test)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, Event, trimicro.Context]] = []
        self._changed = trio.Event()

    def handler(self, tag: str) -> Callable[..., Any]:
        async def on_event(msg: Event, ctx: trimicro.Context) -> None:
            self.got.append((tag, msg, ctx))
            self._changed.set()

        return on_event

    async def wait_for(self, n: int) -> None:
        with trio.fail_after(10):
            while len(self.got) < n:
                self._changed = trio.Event()
                await self._changed.wait()

    def counts(self) -> Counter[str]:
        return Counter(tag for tag, _, _ in self.got)


@asynccontextmanager
async def services(*svcs: trimicro.Service) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        for svc in svcs:
            await stack.enter_async_context(trimicro.open_service(service=svc))
        yield


def subscriber(name: str, registry: MemoryRegistry, broker: Any, **kw: Any) -> trimicro.Service:
    return trimicro.Service(name, registry=registry, broker=broker, argv=[], handle_signals=False, **kw)


async def test_broadcast_and_queue_group_delivery_counts(
    registry: MemoryRegistry, make_broker: BrokerFactory
) -> None:
    inbox = Inbox()
    subs = []
    for tag, queue in (("a", "q1"), ("b", "q1"), ("c", None)):
        svc = subscriber(f"sub-{tag}", registry, make_broker())
        svc.subscribe("events", inbox.handler(tag), queue=queue)
        subs.append(svc)
    publisher = subscriber("pub", registry, make_broker())
    n = 30
    async with services(*subs, publisher):
        for i in range(n):
            await publisher.client.publish("events", Event(id=str(i), seq=i))
        await inbox.wait_for(2 * n)  # n for the broadcast subscriber + n for the queue group
        await trio.testing.wait_all_tasks_blocked()
    counts = inbox.counts()
    assert counts["c"] == n
    assert counts["a"] + counts["b"] == n
    assert counts["a"] > 0 and counts["b"] > 0  # random member per message; 2**-29 chance to fail
    assert sorted(int(m.id) for tag, m, _ in inbox.got if tag == "c") == list(range(n))


async def test_context_and_metadata_reach_the_subscriber(
    registry: MemoryRegistry, make_broker: BrokerFactory
) -> None:
    inbox = Inbox()
    sub = subscriber("sub", registry, make_broker())
    sub.subscribe("events", inbox.handler("s"))
    pub = subscriber("pub", registry, make_broker())
    async with services(sub, pub):
        with trimicro.metadata(user="alice"):
            await pub.client.publish("events", Event(id="7", message="hi"), metadata={"trace": "t1"})
        await pub.client.publish("events", Event(id="8"), content_type="application/protobuf")
        await inbox.wait_for(2)
    (_, first, ctx), (_, second, ctx2) = inbox.got
    assert first == Event(id="7", message="hi") and second == Event(id="8")
    assert ctx.endpoint == "events" and ctx.service == "sub"
    assert ctx.content_type == "application/json" and ctx2.content_type == "application/protobuf"
    assert ctx.metadata == {"User": "alice", "Trace": "t1"}
    assert len(ctx.id) == 36 and ctx.id != ctx2.id  # a UUID per message


async def test_raising_subscriber_is_counted_and_the_service_keeps_serving(
    registry: MemoryRegistry, make_broker: BrokerFactory, greeter: Greeter, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = Inbox()
    ok = inbox.handler("ok")

    async def on_event(msg: Event, ctx: trimicro.Context) -> None:
        if msg.id == "bad":
            raise RuntimeError("subscriber exploded")
        await ok(msg, ctx)

    sub = subscriber("sub", registry, make_broker(), handlers=[greeter])
    sub.subscribe("events", on_event)
    pub = subscriber("pub", registry, make_broker())
    async with services(sub, pub):
        await pub.client.publish("events", Event(id="bad"))
        await pub.client.publish("events", Event(id="good"))
        await inbox.wait_for(1)
        rsp = await pub.client.call(
            "sub", "Greeter.Hello", HelloRequest(name="x"), response_type=HelloResponse
        )
        assert rsp.greeting == "Hello x"
    assert [m.id for _, m, _ in inbox.got] == ["good"]
    stats = subscriber_stats(sub)
    assert (stats.received, stats.handled, stats.errors) == (2, 1, 1)
    assert any(
        r.name == "trimicro.subscriber" and r.exc_info and "exploded" in str(r.exc_info[1])
        for r in caplog.records
    )


async def test_undecodable_payload_is_reported_and_skipped(
    registry: MemoryRegistry, make_broker: BrokerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = Inbox()
    sub = subscriber("sub", registry, make_broker())
    sub.subscribe("events", inbox.handler("s"))
    pub = subscriber("pub", registry, make_broker())
    async with services(sub, pub):
        await pub.client.publish("events", Frame(b"{not json"), content_type="application/json")
        await pub.client.publish("events", Frame(b"\xff\xff\xff"), content_type="application/protobuf")
        await pub.client.publish("events", Frame(b"x"), content_type="text/xml")
        await pub.client.publish("events", Event(id="after"))
        await inbox.wait_for(1)
    assert [m.id for _, m, _ in inbox.got] == ["after"]
    stats = subscriber_stats(sub)
    assert stats.undecodable == 3 and stats.handled == 1 and stats.errors == 0
    warnings = [r for r in caplog.records if r.name == "trimicro.subscriber" and r.levelno == logging.WARNING]
    assert len(warnings) == 3 and "undecodable" in warnings[0].getMessage()


class Audit:
    async def OnEvent(self, msg: Event, ctx: trimicro.Context) -> None:
        pass


async def test_subscriber_endpoints_are_advertised(registry: MemoryRegistry) -> None:
    async def on_event(msg: Event, ctx: trimicro.Context) -> None:
        pass

    svc = subscriber("sub", registry, MemoryBroker(), handlers=[Greeter()])
    svc.subscribe("events", on_event, queue="q1")
    svc.subscribe("audit", Audit().OnEvent)
    async with services(svc):
        [record] = await registry.get_service("sub")
    endpoints = {e.name: e for e in record.endpoints}
    func = endpoints["Func"]
    assert dict(func.metadata) == {"topic": "events", "subscriber": "true"}
    assert func.response is None
    assert func.request is not None and func.request.name == "Event"
    assert [v.name for v in func.request.values] == ["id", "seq", "message"]
    assert dict(endpoints["Audit.OnEvent"].metadata) == {"topic": "audit", "subscriber": "true"}
    assert "Greeter.Hello" in endpoints


async def test_subscriber_wrappers(registry: MemoryRegistry, make_broker: BrokerFactory) -> None:
    calls: list[str] = []
    inbox = Inbox()

    def outer(next_call: Any) -> Any:
        async def call(msg: SubscriberMessage, ctx: trimicro.Context) -> None:
            calls.append(f"outer:{msg.topic}:{msg.content_type}:{msg.header['Micro-Topic']}")
            await next_call(msg, ctx)

        return call

    def rename(next_call: Any) -> Any:
        async def call(msg: SubscriberMessage, ctx: trimicro.Context) -> None:
            calls.append("rename")
            await next_call(attrs.evolve(msg, payload=Event(id=msg.payload.id, message="wrapped")), ctx)

        return call

    def veto(next_call: Any) -> Any:
        async def call(msg: SubscriberMessage, ctx: trimicro.Context) -> None:
            if msg.payload.id == "drop":
                calls.append("vetoed")
                return
            await next_call(msg, ctx)

        return call

    sub = subscriber("sub", registry, make_broker())
    assert sub.wrap_subscriber(outer) is outer
    sub.subscribe("events", inbox.handler("s"), wrappers=[veto, rename])
    pub = subscriber("pub", registry, make_broker())
    async with services(sub, pub):
        await pub.client.publish("events", Event(id="drop"))
        await pub.client.publish("events", Event(id="1"))
        await inbox.wait_for(1)
    assert calls == [
        "outer:events:application/json:events",
        "vetoed",
        "outer:events:application/json:events",
        "rename",
    ]
    assert inbox.got[0][1] == Event(id="1", message="wrapped")


async def test_unknown_subscribe_option_fails_the_start(registry: MemoryRegistry) -> None:
    svc = subscriber("sub", registry, MemoryBroker())
    svc.subscribe("events", Inbox().handler("s"), qeueu="typo")
    with pytest.raises(TypeError, match="qeueu"):
        async with services(svc):
            pass


async def test_http_subscriptions_live_and_die_with_the_service(registry: MemoryRegistry) -> None:
    svc = subscriber("sub", registry, HttpBroker())
    svc.subscribe("events", Inbox().handler("s"), queue="workers")
    svc.subscribe("events", Inbox().handler("t"))
    async with services(svc):
        records = await registry.get_service("micro.http.broker")
        versions = sorted(r.version for r in records)
        assert versions == ["ff.http.broadcast", "workers"]
        for record in records:
            [node] = record.nodes
            assert node.id.startswith("events-")
            assert dict(node.metadata) == {"broker": "http", "topic": "events", "secure": "false"}
    assert await registry.get_service("micro.http.broker") == []


async def test_publish_without_subscribers_is_fine(
    registry: MemoryRegistry, make_broker: BrokerFactory
) -> None:
    pub = subscriber("pub", registry, make_broker())
    async with services(pub):
        await pub.client.publish("nobody-listens", Event(id="1"))


async def test_publish_errors_are_typed(registry: MemoryRegistry) -> None:
    async with trimicro.open_client(registry=registry) as client:
        with pytest.raises(trimicro.errors.BrokerError, match="no broker"):
            await client.publish("events", Event(id="1"))
    pub = subscriber("pub", registry, MemoryBroker())
    async with services(pub):
        with pytest.raises(trimicro.errors.CodecError):
            await pub.client.publish("events", object())
        with pytest.raises(trimicro.errors.BrokerError, match="empty topic"):
            await pub.client.publish("", Event(id="1"))
