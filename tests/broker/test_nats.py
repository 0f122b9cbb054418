"""NatsClient and NatsBroker against a real nats-server on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from trimicro._nats.client import NatsClient, NoResponders, RequestTimeout
from trimicro.broker import BrokerMessage, Event
from trimicro.broker import nats as nats_broker
from trimicro.broker.nats import NatsBroker
from trimicro.config import Options
from trimicro.errors import BrokerError
from trimicro.testing.nats import NatsServerProcess

pytestmark = pytest.mark.loopback


class Tally:
    """Counts deliveries per subscriber; ``await tally.reached(n)`` waits until the total is n."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.messages: list[BrokerMessage] = []
        self._changed = trio.Event()

    def handler(self, name: str) -> Callable[[Event], Awaitable[None]]:
        async def handle(event: Event) -> None:
            self.counts[name] += 1
            self.messages.append(event.message)
            self._changed.set()
            self._changed = trio.Event()

        return handle

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    async def reached(self, n: int, timeout: float = 5.0) -> None:
        with trio.fail_after(timeout):
            while self.total < n:
                await self._changed.wait()


async def settle(broker: NatsBroker) -> None:
    """Everything published so far has reached our connection's subscriptions and been handled:
    the server answers PING after delivering earlier messages to the same connection."""
    await broker.client.flush()
    await trio.testing.wait_all_tasks_blocked()


# ------------------------------------------------------------------ client


async def test_client_headers_round_trip(nats_server: NatsServerProcess) -> None:
    async with NatsClient([nats_server.address]) as nc:
        sub = await nc.subscribe("h.t")
        await nc.flush()
        headers = {"Content-Type": "application/json", "Micro-Id": "1", "X-Ünïcode": "välue"}
        await nc.publish("h.t", b"payload", headers=headers)
        await nc.publish("h.t", b"", headers={})
        await nc.publish("h.t", b"plain")
        with trio.fail_after(5):
            first, second, third = await sub.next(), await sub.next(), await sub.next()
    assert first.header_dict() == headers and first.payload == b"payload"
    assert second.headers == () and second.payload == b""
    assert third.headers is None and third.payload == b"plain"


async def test_client_request_reply(nats_server: NatsServerProcess) -> None:
    async with NatsClient([nats_server.address]) as nc, trio.open_nursery() as nursery:
        svc = await nc.subscribe("svc.echo", queue="echo")
        await nc.flush()

        async def responder() -> None:
            async for msg in svc:
                assert msg.reply is not None
                await nc.publish(msg.reply, b"re:" + msg.payload, headers=msg.header_dict())

        nursery.start_soon(responder)
        replies = [
            await nc.request("svc.echo", b"%d" % i, timeout=5, headers={"I": str(i)}) for i in range(5)
        ]
        assert [r.payload for r in replies] == [b"re:%d" % i for i in range(5)]
        assert [r.header_dict()["I"] for r in replies] == [str(i) for i in range(5)]
        with pytest.raises(NoResponders):
            await nc.request("svc.nobody", b"", timeout=5)
        silent = await nc.subscribe("svc.silent")
        with pytest.raises(RequestTimeout):
            await nc.request("svc.silent", b"", timeout=0.2)
        assert silent.received == 1
        nursery.cancel_scope.cancel()


async def test_client_rejects_bad_input_and_keeps_working(nats_server: NatsServerProcess) -> None:
    async with NatsClient([nats_server.address]) as nc:
        with pytest.raises(ValueError):
            await nc.publish("bad subject", b"")
        with pytest.raises(ValueError):
            await nc.publish("s", b"", headers={"k": "a\r\nb"})
        with pytest.raises(BrokerError, match="max_payload"):
            await nc.publish("s", b"x" * (nc.max_payload + 1))
        sub = await nc.subscribe("s")
        await nc.publish("s", b"ok")
        with trio.fail_after(5):
            assert (await sub.next()).payload == b"ok"


async def test_servers_are_tried_in_order(nats_server: NatsServerProcess) -> None:
    dead = "127.0.0.1:1"  # nothing listens on port 1
    async with NatsClient([dead, nats_server.address]) as nc:
        assert nc.server == nats_server.address
    with pytest.raises(BrokerError, match="cannot connect"):
        async with NatsClient([dead]):
            pass  # pragma: no cover


async def test_slow_consumer_drops_newest_and_stays_bounded(
    nats_server: NatsServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    release = trio.Event()
    tally = Tally()
    slow_handler = tally.handler("slow")

    async def slow(event: Event) -> None:
        await release.wait()
        await slow_handler(event)

    options = {"pending_msgs_limit": 10}
    async with NatsBroker([nats_server.address], client_options=options) as broker:
        sub = await broker.subscribe("slow", slow)
        with caplog.at_level(logging.WARNING, logger="trimicro.broker"):
            for i in range(100):
                await broker.publish("slow", BrokerMessage(body=b"%d" % i))
            await settle(broker)
        assert sub.pending <= 10
        assert broker.stats.dropped >= 89 and sub.dropped == broker.stats.dropped
        assert sum("slow consumer" in r.getMessage() for r in caplog.records) == 1  # once per episode
        release.set()
        await tally.reached(100 - broker.stats.dropped)
        # the oldest messages were kept, the newest dropped
        assert tally.messages[0].body == b"0"
        await broker.publish("slow", BrokerMessage(body=b"after"))
        await tally.reached(101 - broker.stats.dropped)


# ------------------------------------------------------------------ broker


async def test_broadcast_and_queue_group_counts(nats_server: NatsServerProcess) -> None:
    n = 30
    plain, grouped = Tally(), Tally()
    async with NatsBroker([nats_server.address]) as broker:
        for name in "abc":
            await broker.subscribe("bcast", plain.handler(name))
            await broker.subscribe("queued", grouped.handler(name), queue="workers")
        for i in range(n):
            await broker.publish("bcast", BrokerMessage({"i": str(i)}, b"x"))
            await broker.publish("queued", BrokerMessage({"i": str(i)}, b"x"))
        await settle(broker)
    assert plain.counts == {"a": n, "b": n, "c": n}
    assert grouped.total == n and len(grouped.counts) >= 2
    assert broker.stats.published == 2 * n and broker.stats.delivered == 4 * n


async def test_raising_handler_does_not_stop_delivery(
    nats_server: NatsServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[bytes] = []

    async def flaky(event: Event) -> None:
        seen.append(event.message.body)
        if event.message.body.startswith(b"bad"):
            raise RuntimeError("handler failed")

    async with NatsBroker([nats_server.address]) as broker:
        await broker.subscribe("flaky", flaky)
        with caplog.at_level(logging.ERROR, logger="trimicro.broker"):
            for body in (b"1", b"bad1", b"2", b"bad2", b"3"):
                await broker.publish("flaky", BrokerMessage(body=body))
            await settle(broker)
    assert seen == [b"1", b"bad1", b"2", b"bad2", b"3"]
    assert broker.stats.errors == 2 and broker.stats.delivered == 3
    assert sum("raised" in r.getMessage() for r in caplog.records) == 2


async def test_undecodable_payload_is_reported_and_skipped(
    nats_server: NatsServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    tally = Tally()
    async with NatsBroker([nats_server.address]) as broker:
        await broker.subscribe("mixed", tally.handler("s"))
        with caplog.at_level(logging.ERROR, logger="trimicro.broker"):
            for junk in (b"not json", b"[1,2]", b'{"Header":{"a":1}}', b'{"Body":"***"}'):
                await broker.client.publish("mixed", junk)
            await broker.publish("mixed", BrokerMessage(body=b"good"))
            await settle(broker)
    assert [m.body for m in tally.messages] == [b"good"]
    assert broker.stats.undecodable == 4
    assert sum("undecodable" in r.getMessage() for r in caplog.records) == 4


async def test_go_micro_wire_form(nats_server: NatsServerProcess) -> None:
    """Default publishes are Go Micro's JSON-encoded broker.Message; both forms decode on receive."""
    tally = Tally()
    async with NatsBroker([nats_server.address]) as broker, NatsClient([nats_server.address]) as raw:
        raw_sub = await raw.subscribe("gm")
        await raw.flush()
        await broker.subscribe("gm", tally.handler("s"))
        await broker.publish("gm", BrokerMessage({"Content-Type": "application/json"}, b'{"x":1}'))
        with trio.fail_after(5):
            wire = await raw_sub.next()
        assert wire.headers is None
        assert json.loads(wire.payload) == {
            "Header": {"Content-Type": "application/json"},
            "Body": base64.b64encode(b'{"x":1}').decode(),
        }
        # What Go's encoding/json also accepts: null header, lower-case keys, empty body.
        await raw.publish("gm", b'{"Header":null,"Body":null}')
        await raw.publish("gm", b'{"header":{"k":"v"},"body":"aGk=","Extra":1}')
        # The headers form, as NatsBroker(wire="headers") or any NATS tool would send it.
        await raw.publish("gm", b"raw body", headers={"Micro-Topic": "gm"})
        await tally.reached(4)
    assert [(m.header, m.body) for m in tally.messages] == [
        ({"Content-Type": "application/json"}, b'{"x":1}'),
        ({}, b""),
        ({"k": "v"}, b"hi"),
        ({"Micro-Topic": "gm"}, b"raw body"),
    ]


async def test_headers_wire_round_trip(nats_server: NatsServerProcess) -> None:
    tally = Tally()
    header = {"Content-Type": "application/protobuf", "Micro-Topic": "hdr", "Micro-Id": "abc"}
    async with (
        NatsBroker([nats_server.address], wire="headers") as broker,
        NatsClient([nats_server.address]) as raw,
    ):
        raw_sub = await raw.subscribe("hdr")
        await raw.flush()
        await broker.subscribe("hdr", tally.handler("s"))
        await broker.publish("hdr", BrokerMessage(header, b"\x00\x01binary"))
        await tally.reached(1)
        with trio.fail_after(5):
            wire = await raw_sub.next()
    assert wire.header_dict() == header and wire.payload == b"\x00\x01binary"
    assert tally.messages[0].header == header and tally.messages[0].body == b"\x00\x01binary"


async def test_server_restart_reconnects_resubscribes_and_delivers_all(
    nats_server: NatsServerProcess,
) -> None:
    n = 50
    plain, grouped = Tally(), Tally()
    async with NatsBroker([nats_server.address]) as broker:
        await broker.subscribe("restart", plain.handler("p"))
        await broker.subscribe("restart", grouped.handler("q"), queue="g")
        for i in range(n):
            await broker.publish("restart", BrokerMessage(body=b"before-%d" % i))
        await plain.reached(n)
        await nats_server.stop()
        await nats_server.start()
        # Published while the client may still be reconnecting: buffered, then sent after re-SUB.
        for i in range(n):
            await broker.publish("restart", BrokerMessage(body=b"after-%d" % i))
        await plain.reached(2 * n, timeout=10)
        await grouped.reached(2 * n, timeout=10)
        assert broker.client.reconnects == 1
    assert [m.body for m in plain.messages] == [b"before-%d" % i for i in range(n)] + [
        b"after-%d" % i for i in range(n)
    ]


async def test_reconnect_buffer_is_bounded_and_loud(nats_server: NatsServerProcess) -> None:
    options = {"reconnect_buffer_size": 4096, "reconnect_wait": 5.0}
    async with NatsBroker([nats_server.address], client_options=options) as broker:
        await nats_server.stop()
        with trio.fail_after(5), pytest.raises(BrokerError, match="reconnect buffer full"):
            while True:  # writes fail once the socket notices; then the buffer fills up
                await broker.publish("gone", BrokerMessage(body=b"x" * 256))
        assert not broker.client.connected


async def test_unsubscribe_stops_delivery(nats_server: NatsServerProcess) -> None:
    tally = Tally()
    async with NatsBroker([nats_server.address]) as broker:
        sub = await broker.subscribe("u", tally.handler("s"))
        await broker.publish("u", BrokerMessage())
        await tally.reached(1)
        await sub.unsubscribe()
        await broker.publish("u", BrokerMessage())
        await settle(broker)
    assert tally.total == 1


async def test_from_options_and_address(nats_server: NatsServerProcess) -> None:
    assert nats_broker.from_options(Options()).address == "127.0.0.1:4222"
    broker = nats_broker.from_options(Options(broker="nats", broker_address=nats_server.address))
    async with broker:
        assert broker.address == nats_server.address and broker.name == "nats"
    with pytest.raises(BrokerError):
        await broker.publish("t", BrokerMessage())


async def test_bad_topic_is_a_broker_error(nats_server: NatsServerProcess) -> None:
    async with NatsBroker([nats_server.address]) as broker:
        with pytest.raises(BrokerError):
            await broker.publish("has space", BrokerMessage())
        with pytest.raises(BrokerError):
            await broker.subscribe("", Tally().handler("x"))
