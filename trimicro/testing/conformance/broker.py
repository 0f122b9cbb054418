"""The Broker conformance suite: what every :class:`~trimicro.broker.Broker` must do.

Subclass it and provide a ``broker`` fixture yielding an *open* broker; optionally ``peer``, a
second open broker of the same backend (another connection to the nats-server, another http broker
node on the same registry) that publishes to ``broker``'s subscribers, and subscribes alongside them::

    class TestMyBroker(BrokerConformance):
        @pytest.fixture
        async def broker(self):
            async with MyBroker(...) as b:
                yield b

``ordered = False`` for a broker that does not keep one publisher's order to one subscriber;
``timeout`` bounds every wait for a delivery.

What it checks (trimicro/broker/_base.py): a published message reaches a subscriber with its body
(any bytes, empty too) and headers; every plain subscriber gets each message; a queue group gets
each message once; topics are separate; ``unsubscribe`` stops delivery; a handler that raises does
not end its subscription; subscriptions report topic and queue; ``ack`` can be called with
``auto_ack=False``; one publisher's messages arrive in order (if ``ordered``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import trio

from ...broker import Broker, BrokerMessage, Event
from ._util import Inbox, unique

__all__ = ["BrokerConformance"]


def _msg(body: bytes, **header: str) -> BrokerMessage:
    return BrokerMessage({"Content-Type": "application/octet-stream", **header}, body)


def _inbox_handler(inbox: Inbox) -> Any:
    async def handler(event: Event) -> None:
        inbox.put(event)

    return handler


class BrokerConformance:
    """Base class of a broker's conformance tests (see the module doc)."""

    ordered: ClassVar[bool] = True
    timeout: ClassVar[float] = 10.0

    @pytest.fixture
    async def peer(self, broker: Broker) -> Any:
        """A second client of the same broker backend; the broker itself unless overridden."""
        return broker

    async def test_publish_reaches_a_subscriber(self, broker: Broker, peer: Broker) -> None:
        topic, inbox = unique("conf.pub"), Inbox()
        sub = await broker.subscribe(topic, _inbox_handler(inbox))
        assert sub.topic == topic and sub.queue is None
        body = bytes(range(256))
        await peer.publish(topic, _msg(body, **{"X-Conformance": "yes", "Micro-Topic": topic}))
        [event] = await inbox.wait(1, self.timeout)
        assert event.topic == topic
        assert event.message.body == body
        assert event.message.header.get("X-Conformance") == "yes"
        assert event.message.header.get("Content-Type") == "application/octet-stream"
        await sub.unsubscribe()

    async def test_empty_body(self, broker: Broker, peer: Broker) -> None:
        topic, inbox = unique("conf.empty"), Inbox()
        await broker.subscribe(topic, _inbox_handler(inbox))
        await peer.publish(topic, _msg(b""))
        [event] = await inbox.wait(1, self.timeout)
        assert event.message.body == b""

    async def test_every_plain_subscriber_gets_each_message(self, broker: Broker, peer: Broker) -> None:
        topic, a, b = unique("conf.fanout"), Inbox(), Inbox()
        await broker.subscribe(topic, _inbox_handler(a))
        await peer.subscribe(topic, _inbox_handler(b))
        for i in range(3):
            await peer.publish(topic, _msg(b"%d" % i))
        for inbox in (a, b):
            got = await inbox.wait(3, self.timeout)
            assert sorted(e.message.body for e in got) == [b"0", b"1", b"2"]

    async def test_a_queue_group_gets_each_message_once(self, broker: Broker, peer: Broker) -> None:
        topic, group, everyone = unique("conf.queue"), Inbox(), Inbox()
        queue = unique("workers")
        s1 = await broker.subscribe(topic, _inbox_handler(group), queue=queue)
        await peer.subscribe(topic, _inbox_handler(group), queue=queue)
        await broker.subscribe(topic, _inbox_handler(everyone))  # a plain subscriber alongside
        assert s1.queue == queue
        n = 10
        for i in range(n):
            await peer.publish(topic, _msg(b"%d" % i))
        await everyone.wait(n, self.timeout)
        got = await group.wait(n, self.timeout)
        # the group's deliveries: each message exactly once (a late duplicate would show up here)
        with trio.move_on_after(0.2):
            await group.wait(n + 1, self.timeout)
        assert sorted(int(e.message.body) for e in got) == list(range(n))

    async def test_topics_are_separate(self, broker: Broker, peer: Broker) -> None:
        a_topic, b_topic = unique("conf.a"), unique("conf.b")
        a, b = Inbox(), Inbox()
        await broker.subscribe(a_topic, _inbox_handler(a))
        await broker.subscribe(b_topic, _inbox_handler(b))
        await peer.publish(b_topic, _msg(b"for b"))
        await peer.publish(a_topic, _msg(b"for a"))
        [got_a] = await a.wait(1, self.timeout)
        [got_b] = await b.wait(1, self.timeout)
        assert (got_a.message.body, got_b.message.body) == (b"for a", b"for b")
        assert len(a.items) == len(b.items) == 1

    async def test_unsubscribe_stops_delivery(self, broker: Broker, peer: Broker) -> None:
        topic, gone, stays = unique("conf.unsub"), Inbox(), Inbox()
        sub = await broker.subscribe(topic, _inbox_handler(gone))
        await broker.subscribe(topic, _inbox_handler(stays))
        await peer.publish(topic, _msg(b"1"))
        await gone.wait(1, self.timeout)
        await stays.wait(1, self.timeout)
        await sub.unsubscribe()
        await peer.publish(topic, _msg(b"2"))
        await stays.wait(2, self.timeout)  # delivered to the one left...
        assert [e.message.body for e in gone.items] == [b"1"]  # ...and not to the one gone

    async def test_a_raising_handler_keeps_its_subscription(self, broker: Broker, peer: Broker) -> None:
        topic, inbox = unique("conf.raise"), Inbox()

        async def handler(event: Event) -> None:
            inbox.put(event)
            if event.message.body == b"boom":
                raise RuntimeError("conformance: a handler failure")

        await broker.subscribe(topic, handler)
        await peer.publish(topic, _msg(b"boom"))
        await inbox.wait(1, self.timeout)
        await peer.publish(topic, _msg(b"after"))
        got = await inbox.wait(2, self.timeout)
        assert b"after" in [e.message.body for e in got]

    async def test_ack_without_auto_ack(self, broker: Broker, peer: Broker) -> None:
        topic, inbox = unique("conf.ack"), Inbox()

        async def handler(event: Event) -> None:
            await event.ack()
            inbox.put(event)

        await broker.subscribe(topic, handler, auto_ack=False)
        await peer.publish(topic, _msg(b"ack me"))
        [event] = await inbox.wait(1, self.timeout)
        assert event.message.body == b"ack me"

    async def test_one_publishers_order(self, broker: Broker, peer: Broker) -> None:
        if not self.ordered:
            pytest.skip("this broker does not promise ordering")
        topic, inbox = unique("conf.order"), Inbox()
        await broker.subscribe(topic, _inbox_handler(inbox))
        n = 50
        for i in range(n):
            await peer.publish(topic, _msg(b"%d" % i))
        got = await inbox.wait(n, self.timeout)
        assert [int(e.message.body) for e in got] == list(range(n))

    async def test_address_is_a_string(self, broker: Broker) -> None:
        assert isinstance(broker.address, str)
        assert isinstance(broker.name, str) and broker.name
