"""A broker that opens the real one on first use: what a Service without subscribers hands its client.

Why: most services never publish, and opening a broker costs something (a NATS connection, the http
broker's listener and registry watch). Go Micro connects its broker at start anyway; we defer it to the
first ``publish`` (or ``subscribe``) without changing what the caller sees.

The real broker is entered by a task of this broker's own nursery, not by the task that happened to
publish first: that task may be a request handler that ends long before the service does, and the task
that enters a broker must also be the one that leaves it. Leaving the lazy broker (the service
stopping) leaves the real one.

``subscribe`` is passed on too, for brokers that deliver from their own nursery (http, nats). The
memory broker delivers in the session of the *subscribing* task, so through a lazy broker it raises
BrokerError unless that task is itself inside ``async with`` the memory broker; a Service with
subscribers enters its broker directly and never hands out a lazy one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import attrs
import trio

from .._lifecycle import NurseryOwner
from ..errors import BrokerError
from ._base import Broker, BrokerMessage, Handler, Subscription

__all__ = ["LazyBroker"]


@attrs.define(eq=False)
class LazyBroker(NurseryOwner):
    """Opens ``factory()`` on the first ``publish``/``subscribe`` while open; ``name`` is the plugin
    name of the broker it will open."""

    factory: Callable[[], Broker]
    name: str = ""
    _broker: Broker | None = attrs.field(default=None, init=False, repr=False)
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False, repr=False)
    _lock: trio.Lock = attrs.field(factory=trio.Lock, init=False, repr=False)

    @property
    def opened(self) -> Broker | None:
        """The real broker once the first use opened it."""
        return self._broker

    @property
    def address(self) -> str:
        return self._broker.address if self._broker is not None else ""

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                yield
            finally:
                self._nursery = None
                nursery.cancel_scope.cancel()

    async def get(self) -> Broker:
        """The real broker, opened now if this is the first use."""
        async with self._lock:
            if self._broker is None:
                if self._nursery is None:
                    raise BrokerError("the service is not running: cannot open its broker")
                self._broker = await self._nursery.start(self._hold)
        return self._broker

    async def _hold(self, *, task_status: trio.TaskStatus[Broker] = trio.TASK_STATUS_IGNORED) -> None:
        async with self.factory() as broker:
            task_status.started(broker)
            await trio.sleep_forever()

    async def publish(self, topic: str, message: BrokerMessage) -> None:
        broker = await self.get()
        await broker.publish(topic, message)

    async def subscribe(
        self, topic: str, handler: Handler, *, queue: str | None = None, auto_ack: bool = True
    ) -> Subscription:
        broker = await self.get()
        return await broker.subscribe(topic, handler, queue=queue, auto_ack=auto_ack)
