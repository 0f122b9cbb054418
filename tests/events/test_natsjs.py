"""The natsjs event stream against a real ``nats-server -js``: Go Micro's layout on the wire (stream
per topic, durable consumer per group, event JSON), acks, nacks and redelivery, durability of a
group's place across disconnects and a server restart, poison events, and startup errors."""

from __future__ import annotations

import json

import pytest
import trio

from trimicro.broker._nats_client import NatsClient
from trimicro.events import Event, EventsError
from trimicro.events.natsjs import NatsJetStream
from trimicro.testing._process import free_port
from trimicro.testing.nats import NatsServerProcess, open_nats_server

pytestmark = pytest.mark.loopback


async def next_event(consumer: object, timeout: float = 10.0) -> Event:
    with trio.fail_after(timeout):
        return await consumer.__anext__()  # type: ignore[attr-defined, no-any-return]


async def js_api(address: str, subject: str) -> dict[str, object]:
    async with NatsClient([address]) as raw:
        reply = await raw.request(subject, b"", timeout=5)
    obj = json.loads(reply.payload)
    assert isinstance(obj, dict)
    return obj


async def test_publish_consume_in_gos_layout(jetstream: NatsServerProcess) -> None:
    async with NatsJetStream([jetstream.address]) as js:
        async with js.consume("orders", group="billing") as c:
            async with NatsClient([jetstream.address]) as raw:
                wire = await raw.subscribe("orders")
                await raw.flush()
                await js.publish("orders", {"id": 7}, metadata={"source": "test"})
                with trio.fail_after(5):
                    on_wire = json.loads((await wire.next()).payload)
            event = await next_event(c)
            assert event.unmarshal() == {"id": 7} and event.metadata == {"source": "test"}
            assert (event.topic, event.delivery) == ("orders", 1)
    assert set(on_wire) == {"ID", "Topic", "Timestamp", "Metadata", "Payload"}
    assert on_wire["Topic"] == "orders" and on_wire["Timestamp"].endswith("Z")
    stream = await js_api(jetstream.address, "$JS.API.STREAM.INFO.orders")
    assert stream["config"]["subjects"] == ["orders"]  # type: ignore[index]
    consumer = await js_api(jetstream.address, "$JS.API.CONSUMER.INFO.orders.billing")
    config = consumer["config"]
    assert isinstance(config, dict)
    assert (config["durable_name"], config["deliver_group"], config["ack_policy"], config["deliver_policy"]) == (
        "billing", "billing", "all", "new",
    )  # fmt: skip


async def test_groups_share_and_split(jetstream: NatsServerProcess) -> None:
    async with NatsJetStream([jetstream.address]) as js:
        async with (
            js.consume("t", group="a") as a1,
            js.consume("t", group="a") as a2,
            js.consume("t", group="b") as b,
        ):
            for i in range(6):
                await js.publish("t", {"n": i})
            got_b = [(await next_event(b)).unmarshal()["n"] for _ in range(6)]
            got_a: list[int] = []
            async with trio.open_nursery() as nursery:

                async def drain(c: object) -> None:
                    with trio.move_on_after(1.0):  # until the group's events are shared out
                        while True:
                            got_a.append((await next_event(c)).unmarshal()["n"])

                nursery.start_soon(drain, a1)
                nursery.start_soon(drain, a2)
    assert got_b == list(range(6))
    assert sorted(got_a) == list(range(6))  # each exactly once across the group's members


async def test_nack_ack_wait_and_retry_limit(jetstream: NatsServerProcess) -> None:
    async with NatsJetStream([jetstream.address]) as js:
        async with js.consume("r", group="g", auto_ack=False, ack_wait=1.0, retry_limit=3) as c:
            await js.publish("r", b"job")
            first = await next_event(c)
            assert first.delivery == 1
            again = await next_event(c)  # not acknowledged: JetStream redelivers after ack_wait
            assert (again.payload, again.delivery) == (b"job", 2)
            await again.nack()
            third = await next_event(c)
            assert third.delivery == 3
            with trio.move_on_after(2.5):
                await c.__anext__()
                pytest.fail("delivered beyond retry_limit")
        async with js.consume("r", group="h", auto_ack=False, ack_wait=1.0) as c:
            await js.publish("r", b"done")
            event = await next_event(c)
            await event.ack()
            with trio.move_on_after(2.0):
                await c.__anext__()
                pytest.fail("an acknowledged event came back")


async def test_auto_ack_redelivers_what_was_in_hand(jetstream: NatsServerProcess) -> None:
    async with NatsJetStream([jetstream.address]) as js:
        async with js.consume("w", group="g", ack_wait=1.0) as c:
            await js.publish("w", b"a")
            await js.publish("w", b"b")
            assert (await next_event(c)).payload == b"a"
            assert (await next_event(c)).payload == b"b"  # asking for it acknowledged "a"
        # left while handling "b": the group gets it again
        async with js.consume("w", group="g", ack_wait=1.0) as c:
            event = await next_event(c)
            assert (event.payload, event.delivery) == (b"b", 2)


async def test_group_keeps_its_place_across_absence_and_a_server_restart(
    jetstream: NatsServerProcess,
) -> None:
    async with NatsJetStream([jetstream.address]) as js:
        async with js.consume("d", group="g") as c:
            await js.publish("d", b"1")
            assert (await next_event(c)).payload == b"1"
        await js.publish("d", b"2")  # nobody in the group connected: kept
        await jetstream.stop()
        await jetstream.start()  # same store directory: streams and consumers survive
        with trio.fail_after(10):
            while not js.client.connected:
                await trio.sleep(0.05)  # polling the client's reconnect
        await js.publish("d", b"3")
        async with js.consume("d", group="g") as c:
            assert [(await next_event(c)).payload for _ in range(2)] == [b"2", b"3"]


async def test_poison_event_is_terminated_not_redelivered(jetstream: NatsServerProcess) -> None:
    async with NatsJetStream([jetstream.address]) as js:
        async with js.consume("p", group="g", ack_wait=1.0) as c:
            async with NatsClient([jetstream.address]) as raw:
                await raw.request("p", b"not an event", timeout=5)  # stored by JetStream
            await js.publish("p", b"good")
            assert (await next_event(c)).payload == b"good"
            with trio.move_on_after(2.0):
                await c.__anext__()
                pytest.fail("the poison event came back")


async def test_errors_are_clear() -> None:
    port = free_port()
    with trio.fail_after(10), pytest.raises(EventsError, match="cannot connect to NATS"):
        async with NatsJetStream([f"127.0.0.1:{port}"], connect_attempts=2):
            pass
    async with open_nats_server() as plain:  # no -js
        async with NatsJetStream([plain.address], timeout=2.0) as js:
            with pytest.raises(EventsError, match="-js"):
                await js.publish("x", b"")
        async with NatsJetStream([plain.address]) as js:
            with pytest.raises(EventsError, match="invalid topic"):
                await js.publish("a.b", b"")
