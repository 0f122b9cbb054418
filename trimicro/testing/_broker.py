"""A broker for tests that records what was published and delivers on demand (FastStream's TestBroker).

:class:`TestBroker` is a real :class:`~trimicro.broker.MemoryBroker` underneath, so ``publish`` still
reaches live subscribers asynchronously, with the memory broker's ordering and backpressure. On top:

- ``broker.published[topic]`` lists every :class:`~trimicro.broker.BrokerMessage` published on
  ``topic`` (headers and encoded body), and ``broker.payloads(topic)`` decodes them;
- ``await broker.deliver(topic, message)`` hands one message to the subscribers of ``topic`` *in the
  calling task* and returns after their handlers ran, raising what a handler raised. A service's
  subscriber machinery logs and swallows handler errors (a broker would redeliver); a test wants
  them, so :meth:`TestBroker.capture` is a subscriber wrapper that notes the error for ``deliver``
  (``trimicro.testing.serve`` installs it; with a Service of your own,
  ``service.wrap_subscriber(broker.capture)``).
"""

from __future__ import annotations

import contextvars
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from .._lifecycle import NurseryOwner
from .._metadata import CONTENT_TYPE, MESSAGE_ID, MICRO_TOPIC
from ..broker import BrokerMessage, Handler
from ..broker.memory import MemoryBroker, MemoryEvent
from ..codec import Frame, get_codec
from ..context import Context
from ..errors import BrokerError
from ..server import SubscriberCall, SubscriberMessage

__all__ = ["TestBroker", "TestSubscription"]

# Errors raised by subscriber handlers during one ``deliver`` call (None outside of one).
_captured: contextvars.ContextVar[list[BaseException] | None] = contextvars.ContextVar(
    "trimicro_testing_captured", default=None
)


def _capture(call: SubscriberCall) -> SubscriberCall:
    """Subscriber wrapper: note a handler's exception for the ``deliver`` running it, then re-raise."""

    async def wrapped(msg: SubscriberMessage, ctx: Context) -> None:
        try:
            await call(msg, ctx)
        except Exception as exc:
            sink = _captured.get()
            if sink is not None:
                sink.append(exc)
            raise

    return wrapped


@attrs.define(eq=False)
class TestSubscription:
    """A subscription on a :class:`TestBroker`; ``unsubscribe()`` ends live and test delivery."""

    __test__ = False  # not a pytest test class

    topic: str
    queue: str | None
    handler: Handler
    _broker: TestBroker = attrs.field(repr=False)
    _inner: Any = attrs.field(repr=False)

    async def unsubscribe(self) -> None:
        if self in self._broker._subs:
            self._broker._subs.remove(self)
        await self._inner.unsubscribe()


@attrs.define(eq=False)
class TestBroker(NurseryOwner):
    """A memory broker that keeps every published message and lets a test deliver one synchronously."""

    __test__ = False  # not a pytest test class

    buffer_size: int = 256
    name: str = attrs.field(default="memory", init=False)
    #: topic -> messages published on it, in order.
    published: defaultdict[str, list[BrokerMessage]] = attrs.field(
        factory=lambda: defaultdict(list), init=False
    )
    _memory: MemoryBroker = attrs.field(init=False, repr=False)
    _subs: list[TestSubscription] = attrs.field(factory=list, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._memory = MemoryBroker(buffer_size=self.buffer_size)

    @property
    def address(self) -> str:
        return "memory"

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        async with self._memory:
            yield

    @property
    def subscriptions(self) -> list[TestSubscription]:
        """The live subscriptions (made through this broker, not yet unsubscribed)."""
        return list(self._subs)

    async def subscribe(
        self, topic: str, handler: Handler, *, queue: str | None = None, auto_ack: bool = True
    ) -> TestSubscription:
        inner = await self._memory.subscribe(topic, handler, queue=queue, auto_ack=auto_ack)
        sub = TestSubscription(topic, queue, handler, self, inner)
        self._subs.append(sub)
        return sub

    async def publish(self, topic: str, message: BrokerMessage) -> None:
        """Record the message, then publish it to the live subscribers (asynchronous delivery)."""
        if not topic:
            raise BrokerError("empty topic")
        self.published[topic].append(BrokerMessage(dict(message.header), message.body))
        await self._memory.publish(topic, message)

    def payloads(self, topic: str, into: Any = None) -> list[Any]:
        """The messages published on ``topic``, decoded by their Content-Type's codec into ``into``."""
        return [
            get_codec(m.header.get(CONTENT_TYPE) or "application/protobuf").decode(m.body, into)
            for m in self.published.get(topic, [])
        ]

    def clear(self) -> None:
        """Forget what was published so far."""
        self.published.clear()

    #: Subscriber wrapper noting handler errors for :meth:`deliver` (``service.wrap_subscriber``); it
    #: needs no broker state: a context variable finds the ``deliver`` call it runs under.
    capture = staticmethod(_capture)

    async def deliver(
        self,
        topic: str,
        message: Any,
        *,
        content_type: str = "application/json",
        header: Mapping[str, str] | None = None,
    ) -> int:
        """Run the handlers subscribed to ``topic`` on ``message`` in this task; return how many ran.

        ``message`` is a :class:`BrokerMessage` (sent as is) or any value the codec for
        ``content_type`` encodes. Every plain subscriber and one member of each queue group get it, as
        from ``publish``. The first exception a handler raised is raised here (the service's own
        logging and counters still see it). BrokerError if nothing subscribes to ``topic``.
        """
        msg = _message(topic, message, content_type, header)
        plain = [s for s in self._subs if s.topic == topic and s.queue is None]
        groups: dict[str, list[TestSubscription]] = {}
        for s in self._subs:
            if s.topic == topic and s.queue is not None:
                groups.setdefault(s.queue, []).append(s)
        targets = plain + [random.choice(members) for members in groups.values()]
        if not targets:
            raise BrokerError(f"deliver: nothing subscribes to {topic!r}")
        captured: list[BaseException] = []
        token = _captured.set(captured)
        try:
            for sub in targets:
                await sub.handler(MemoryEvent(topic, BrokerMessage(dict(msg.header), msg.body)))
        finally:
            _captured.reset(token)
        await trio.lowlevel.checkpoint()
        if captured:
            raise captured[0]
        return len(targets)


def _message(topic: str, message: Any, content_type: str, header: Mapping[str, str] | None) -> BrokerMessage:
    if isinstance(message, BrokerMessage):
        return message
    if isinstance(message, Frame):
        body = message.data
    elif isinstance(message, bytes | bytearray) and content_type == "application/octet-stream":
        body = bytes(message)
    else:
        body = get_codec(content_type).encode(message)
    hdr = dict(header or {})
    hdr.setdefault(CONTENT_TYPE, content_type)
    hdr.setdefault(MICRO_TOPIC, topic)
    hdr.setdefault(MESSAGE_ID, f"test-{id(message):x}")
    return BrokerMessage(hdr, body)
