"""The http broker on loopback: registry records, Go-shaped raw requests, fail-over, bounded retries."""

from __future__ import annotations

import base64
import json
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

import trimicro
from tests.protos.greeter_pb2 import Event
from trimicro.broker import BrokerMessage
from trimicro.broker._http_proto import broker_record
from trimicro.broker._http_server import serve_connection
from trimicro.broker.http import HttpBroker
from trimicro.registry import MemoryRegistry
from trimicro.registry import Service as ServiceRecord

pytestmark = pytest.mark.loopback


class Sink:
    """A broker handler recording deliveries."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.changed = trio.Event()

    async def __call__(self, event: Any) -> None:
        self.events.append(event)
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, n: int) -> None:
        with trio.fail_after(5):
            while len(self.events) < n:
                await self.changed.wait()


@asynccontextmanager
async def open_broker(registry: Any, **kw: Any) -> AsyncIterator[HttpBroker]:
    kw.setdefault("rng", random.Random(1234))
    async with HttpBroker(registry=registry, **kw) as broker:
        yield broker


async def free_port() -> int:
    """A loopback port nobody listens on (bound then closed)."""
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = int(listener.socket.getsockname()[1])
    await listener.aclose()
    return port


async def dead_node(registry: MemoryRegistry, topic: str, queue: str | None) -> ServiceRecord:
    """A registered subscriber whose process is gone: its record outlives it until the TTL."""
    record = broker_record(topic, f"{topic}-dead", f"127.0.0.1:{await free_port()}", queue)
    await registry.register(record, ttl=60)
    return record


class CrashingRegistry:
    """The view of a registry from a process that gets killed: it never deregisters."""

    def __init__(self, inner: MemoryRegistry) -> None:
        self.inner = inner
        self.name = "memory"

    async def __aenter__(self) -> CrashingRegistry:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def register(self, service: ServiceRecord, *, ttl: float | None = None) -> None:
        await self.inner.register(service, ttl=ttl)

    async def deregister(self, service: ServiceRecord) -> None:
        await trio.lowlevel.checkpoint()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_subscription_record_and_deregistration(registry: MemoryRegistry) -> None:
    async with open_broker(registry) as broker:
        sub = await broker.subscribe("events", Sink(), queue="q1")
        [record] = await registry.get_service("micro.http.broker")
        assert record.version == "q1"
        [node] = record.nodes
        assert node.id == sub.id and node.id.startswith("events-")
        assert node.address == broker.address and broker.address.startswith("127.0.0.1:")
        assert dict(node.metadata) == {"broker": "http", "topic": "events", "secure": "false"}
        await sub.unsubscribe()
        assert await registry.get_service("micro.http.broker") == []
        await broker.subscribe("events", Sink())
        [record] = await registry.get_service("micro.http.broker")
        assert record.version == "ff.http.broadcast"
    assert await registry.get_service("micro.http.broker") == []


async def test_publish_delivers_envelope_with_topic_header(registry: MemoryRegistry) -> None:
    sink = Sink()
    async with open_broker(registry) as sub_side, open_broker(registry) as pub_side:
        await sub_side.subscribe("events", sink)
        await pub_side.publish(
            "events", BrokerMessage({"Content-Type": "application/json", "K": "v"}, b'{"id":"1"}\n')
        )
        # publish returns after the subscriber answered, i.e. after its handler ran
        [event] = sink.events
        assert event.topic == "events"
        assert event.message.header == {"Content-Type": "application/json", "K": "v", "Micro-Topic": "events"}
        assert event.message.body == b'{"id":"1"}\n'
        assert pub_side.stats.published == 1 and pub_side.stats.delivered == 1
        assert sub_side.stats.received == 1


async def test_resubscribe_and_re_register_keep_records_alive(
    registry: MemoryRegistry, autojump_clock: Any
) -> None:
    async with open_broker(registry, register_ttl=3, register_interval=1) as broker:
        await broker.subscribe("events", Sink())
        await trio.sleep(10)  # well past the TTL: only re-registration keeps it
        [record] = await registry.get_service("micro.http.broker")
        assert len(record.nodes) == 1


def go_request(address: str, node_id: str, envelope: bytes, *, path: str = "/") -> bytes:
    """The bytes Go Micro v5's http broker sends (captured on loopback, docs/go-micro-facts.md §4)."""
    return (
        f"POST {path}?id={node_id} HTTP/1.1\r\n"
        f"Host: {address}\r\n"
        "User-Agent: Go-http-client/1.1\r\n"
        f"Content-Length: {len(envelope)}\r\n"
        "Content-Type: application/json\r\n"
        "Accept-Encoding: gzip\r\n"
        "\r\n"
    ).encode() + envelope


GO_ENVELOPE = json.dumps(
    {
        "Header": {"Content-Type": "application/json", "Micro-ID": "1", "Micro-Topic": "events"},
        "Body": base64.b64encode(b'{"id":"1"}').decode(),
    },
    separators=(",", ":"),
).encode()


async def raw_exchange(address: str, data: bytes) -> bytes:
    host, port = address.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(data)
        reply = b""
        with trio.fail_after(5):
            while b"\r\n\r\n" not in reply:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                reply += chunk
        return reply


async def test_go_shaped_envelope_reaches_a_trimicro_subscriber(registry: MemoryRegistry) -> None:
    got: list[tuple[Event, trimicro.Context]] = []
    done = trio.Event()

    async def on_event(msg: Event, ctx: trimicro.Context) -> None:
        got.append((msg, ctx))
        done.set()

    svc = trimicro.Service("sub", registry=registry, broker=HttpBroker(), argv=[], handle_signals=False)
    svc.subscribe("events", on_event)
    async with trimicro.open_service(service=svc):
        [record] = await registry.get_service("micro.http.broker")
        [node] = record.nodes
        reply = await raw_exchange(node.address, go_request(node.address, node.id, GO_ENVELOPE))
        with trio.fail_after(5):
            await done.wait()
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert b"content-length: 0\r\n" in reply.lower()
    [(msg, ctx)] = got
    assert msg == Event(id="1")
    assert ctx.id == "1" and ctx.endpoint == "events" and ctx.content_type == "application/json"


async def test_raw_requests_legacy_path_and_bad_input(registry: MemoryRegistry) -> None:
    sink = Sink()
    async with open_broker(registry) as broker:
        sub = await broker.subscribe("events", sink)
        addr = broker.address
        # the older /_sub path
        reply = await raw_exchange(addr, go_request(addr, sub.id, GO_ENVELOPE, path="/_sub"))
        assert reply.startswith(b"HTTP/1.1 200 ")
        assert len(sink.events) == 1
        # someone else's id: answered, not delivered (Go dispatches by id only)
        reply = await raw_exchange(addr, go_request(addr, "events-other", GO_ENVELOPE))
        assert reply.startswith(b"HTTP/1.1 200 ") and len(sink.events) == 1
        # wrong method, bad envelope, no topic, garbage: typed error replies, server keeps serving
        get = f"GET /?id={sub.id} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        assert (await raw_exchange(addr, get)).startswith(b"HTTP/1.1 405 ")
        assert (await raw_exchange(addr, go_request(addr, sub.id, b"{nope"))).startswith(b"HTTP/1.1 500 ")
        no_topic = json.dumps({"Header": {}, "Body": ""}).encode()
        assert (await raw_exchange(addr, go_request(addr, sub.id, no_topic))).startswith(b"HTTP/1.1 500 ")
        assert (await raw_exchange(addr, b"\x00\x01garbage\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
        big = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n"
        assert (await raw_exchange(addr, big)).startswith(b"HTTP/1.1 413 ")
        assert broker.stats.rejected == 5
        reply = await raw_exchange(addr, go_request(addr, sub.id, GO_ENVELOPE))
        assert reply.startswith(b"HTTP/1.1 200 ") and len(sink.events) == 2


async def test_keep_alive_connections_are_reused(registry: MemoryRegistry) -> None:
    sink = Sink()
    async with open_broker(registry) as sub_side, open_broker(registry) as pub_side:
        await sub_side.subscribe("events", sink)
        for i in range(20):
            await pub_side.publish("events", BrokerMessage({"N": str(i)}, b""))
        assert [e.message.header["N"] for e in sink.events] == [str(i) for i in range(20)]
        assert pub_side.stats.delivered == 20 and pub_side.stats.errors == 0


async def test_dead_queue_member_fails_over_to_a_live_one(registry: MemoryRegistry) -> None:
    a, b = Sink(), Sink()
    async with open_broker(registry) as pub_side, open_broker(registry) as side_a:
        await side_a.subscribe("events", a, queue="q")
        async with open_broker(CrashingRegistry(registry)) as side_b:
            await side_b.subscribe("events", b, queue="q")
            for i in range(10):
                await pub_side.publish("events", BrokerMessage({"N": str(i)}, b""))
            assert len(a.events) + len(b.events) == 10 and a.events and b.events
        # side_b's process "died": its listener is gone but its record is still registered
        [record] = await registry.get_service("micro.http.broker")
        assert len(record.nodes) == 2
        for i in range(10, 40):
            await pub_side.publish("events", BrokerMessage({"N": str(i)}, b""))
        received = sorted(int(e.message.header["N"]) for e in a.events + b.events)
        assert received == list(range(40))  # nothing lost, nothing duplicated
        stats = pub_side.stats
        assert stats.failed_over >= 1 and stats.errors == stats.failed_over
        assert stats.dropped == 0 and stats.delivered == 40


async def test_broadcast_to_a_node_that_comes_back_is_retried(registry: MemoryRegistry) -> None:
    port = await free_port()
    record = broker_record("events", "events-late", f"127.0.0.1:{port}", None)
    await registry.register(record, ttl=60)
    seen: list[tuple[str, str]] = []

    async def dispatch(method: str, target: str, body: bytes) -> tuple[int, bytes]:
        seen.append((method, target))
        return 200, b""

    async with open_broker(registry, retry_backoff=0.05) as pub_side:
        await pub_side.publish("events", BrokerMessage({}, b"x"))
        assert pub_side.stats.errors == 1 and pub_side.stats.delivered == 0
        [listener] = await trio.open_tcp_listeners(port, host="127.0.0.1")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, lambda s: serve_connection(s, dispatch), [listener])
            with trio.fail_after(5):
                await pub_side.wait_idle()
            nursery.cancel_scope.cancel()
        assert seen == [("POST", "/?id=events-late")]
        stats = pub_side.stats
        assert (stats.retried, stats.delivered, stats.dropped) == (1, 1, 0)


async def test_bounded_retry_queue_counts_and_logs_drops(
    registry: MemoryRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    await dead_node(registry, "events", None)
    await dead_node(registry, "events", "q")
    caplog.set_level(logging.WARNING, "trimicro.broker")
    async with open_broker(registry, retry_queue_size=2, max_attempts=2, retry_backoff=0.01) as pub_side:
        n = 20
        for i in range(n):
            await pub_side.publish("events", BrokerMessage({"N": str(i)}, b""))
        with trio.fail_after(5):
            await pub_side.wait_idle()
        stats = pub_side.stats
        # two deliveries per message (the broadcast node and the queue), every one of them lost and counted
        assert stats.published == n and stats.delivered == 0
        assert stats.dropped == 2 * n
        assert 1 <= stats.retried < 2 * n  # only what fitted in the queue was retried
    drops = [r.getMessage() for r in caplog.records if "dropped a message" in r.getMessage()]
    assert len(drops) == 2 * n
    assert any("retry queue full" in m for m in drops) and any("attempts failed" in m for m in drops)


async def test_pending_retries_are_counted_as_dropped_on_exit(registry: MemoryRegistry) -> None:
    await dead_node(registry, "events", None)
    async with open_broker(registry, retry_backoff=60) as pub_side:
        await pub_side.publish("events", BrokerMessage({}, b""))
        await pub_side.publish("events", BrokerMessage({}, b""))
    assert pub_side.stats.dropped == 2 and pub_side.stats.delivered == 0


async def test_legacy_service_name_is_published_to(registry: MemoryRegistry) -> None:
    seen: list[str] = []

    async def dispatch(method: str, target: str, body: bytes) -> tuple[int, bytes]:
        seen.append(target)
        return 200, b""

    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    legacy = broker_record("events", "events-old", f"127.0.0.1:{port}", None)
    await registry.register(
        ServiceRecord("go.micro.http.broker", legacy.version, {}, (), legacy.nodes), ttl=60
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, lambda s: serve_connection(s, dispatch), [listener])
        async with open_broker(registry) as pub_side:
            await pub_side.publish("events", BrokerMessage({}, b""))
        nursery.cancel_scope.cancel()
    assert seen == ["/_sub?id=events-old"]


async def test_not_open_is_a_broker_error(registry: MemoryRegistry) -> None:
    broker = HttpBroker(registry=registry)
    with pytest.raises(trimicro.errors.BrokerError):
        await broker.publish("events", BrokerMessage())
    with pytest.raises(trimicro.errors.BrokerError):
        await broker.subscribe("events", Sink())


async def test_from_options_creates_its_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    from trimicro.broker import http
    from trimicro.config import Options

    port = await free_port()
    broker = http.from_options(Options(registry="memory", broker_address=[f"127.0.0.1:{port}"]))
    async with broker:
        assert broker.address == f"127.0.0.1:{port}"
        assert broker.registry is not None and broker.registry.name == "memory"
