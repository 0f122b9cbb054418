"""The Broker contract: asynchronous messaging (Go Micro's ``broker.Broker``).

A broker is an async context manager: ``async with broker:`` connects (and starts whatever background
tasks it needs in a nursery it owns); leaving disconnects. Inside:

- ``await broker.publish(topic, message)`` hands a :class:`BrokerMessage` (headers + encoded body) to
  the broker. It raises :class:`~trimicro.errors.BrokerError` if the broker cannot take it.
- ``await broker.subscribe(topic, handler, queue=None, auto_ack=True)`` returns a :class:`Subscription`
  once the subscription is live. ``handler(event)`` is awaited for each delivery; if it raises, the error
  is logged and counted and (for brokers that can redeliver, with ``auto_ack=False``) the message is not
  acknowledged. Without ``queue`` every subscriber gets every message; with a queue name one subscriber
  per queue gets it. ``await subscription.unsubscribe()`` stops delivery.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Protocol

import attrs

__all__ = ["Broker", "BrokerMessage", "Event", "Handler", "Subscription"]


@attrs.define(slots=True)
class BrokerMessage:
    """What travels through a broker: headers (``Content-Type``, ``Micro-Topic``, ``Micro-Id``, metadata)
    and the codec-encoded body."""

    header: dict[str, str] = attrs.field(factory=dict)
    body: bytes = b""


class Event(Protocol):
    """One delivery to a subscriber."""

    @property
    def topic(self) -> str: ...

    @property
    def message(self) -> BrokerMessage: ...

    async def ack(self) -> None: ...


Handler = Callable[[Event], Awaitable[None]]


class Subscription(Protocol):
    @property
    def topic(self) -> str: ...

    @property
    def queue(self) -> str | None: ...

    async def unsubscribe(self) -> None: ...


class Broker(Protocol):
    name: str

    async def __aenter__(self) -> Broker: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None: ...

    @property
    def address(self) -> str: ...

    async def publish(self, topic: str, message: BrokerMessage) -> None: ...

    async def subscribe(
        self, topic: str, handler: Handler, *, queue: str | None = None, auto_ack: bool = True
    ) -> Subscription: ...
