"""In-process broker: a feature for tests and single-process apps, not a test double.

Each subscription owns a bounded memory channel (``buffer_size`` events) and one delivery task that
awaits the handler for each event in order. Without a queue every subscriber of a topic gets every
message; subscribers sharing a queue name form a group and one member, picked at random, gets each
message. Topics match exactly (no wildcards), as in Go Micro's memory broker.

**Backpressure, not loss:** when a subscription's buffer is full, ``publish`` waits until that
subscriber catches up, so a slow subscriber slows its publishers instead of dropping messages (nothing
is ever dropped for being slow; ``stats.dropped`` only counts messages whose subscription went away
mid-publish). A handler that raises is logged on ``trimicro.broker`` and counted in ``stats.errors``;
delivery continues with the next message.

``publish`` works from any task; ``subscribe`` needs an open broker. ``async with broker:`` opens a
*session* (a :class:`~trimicro._lifecycle.NurseryOwner` lifespan; sessions nest and are kept per
task). Delivery tasks live in the nursery of the nearest enclosing session of the task that
subscribes (found by walking up the parent tasks; a task under none of them uses the latest session,
as a test does whose fixture opened the broker), so one shared broker (:func:`from_options`) can
serve several services in one process, each owning its own subscribers' tasks.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from .._lifecycle import NurseryOwner
from ..errors import BrokerError
from ._base import BrokerMessage, Handler

__all__ = ["BrokerStats", "MemoryBroker", "MemoryEvent", "MemorySubscription", "from_options"]

log = logging.getLogger("trimicro.broker")


@attrs.frozen
class BrokerStats:
    """Counters of a broker since it was created (a snapshot).

    ``published``: messages accepted by ``publish``; ``delivered``: handler calls that returned;
    ``errors``: handler calls that raised; ``dropped``: messages lost to a buffer policy;
    ``undecodable``: payloads that could not be decoded into a message (skipped).
    """

    published: int = 0
    delivered: int = 0
    errors: int = 0
    dropped: int = 0
    undecodable: int = 0


@attrs.frozen
class MemoryEvent:
    """One delivery: the topic and a private copy of the message (handlers may mutate it freely)."""

    topic: str
    message: BrokerMessage

    async def ack(self) -> None:
        """Nothing to acknowledge in memory."""
        await trio.lowlevel.checkpoint()


@attrs.define(eq=False)
class MemorySubscription:
    """A live subscription; ``unsubscribe()`` stops delivery (the current handler call is cancelled)."""

    topic: str
    queue: str | None
    _broker: MemoryBroker = attrs.field(repr=False)
    _nursery: trio.Nursery = attrs.field(repr=False)
    buffer_size: int
    _send: trio.MemorySendChannel[MemoryEvent] = attrs.field(init=False, repr=False)
    _receive: trio.MemoryReceiveChannel[MemoryEvent] = attrs.field(init=False, repr=False)
    _scope: trio.CancelScope = attrs.field(factory=trio.CancelScope, init=False, repr=False)
    _done: trio.Event = attrs.field(factory=trio.Event, init=False, repr=False)
    _task: trio.lowlevel.Task | None = attrs.field(default=None, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[MemoryEvent](self.buffer_size)

    @property
    def pending(self) -> int:
        """Events buffered and not yet handed to the handler."""
        return self._send.statistics().current_buffer_used

    def _stop(self) -> None:
        self._broker._forget(self)
        self._send.close()
        self._scope.cancel()

    async def unsubscribe(self) -> None:
        """Stop delivery and wait until the delivery task has exited (unless called from a handler)."""
        self._stop()
        if trio.lowlevel.current_task() is self._task:
            await trio.lowlevel.checkpoint()
        else:
            await self._done.wait()


@attrs.define(eq=False)
class MemoryBroker(NurseryOwner):
    """An in-memory pub/sub broker; see the module doc for delivery and backpressure rules."""

    buffer_size: int = 256
    name: str = attrs.field(default="memory", init=False)
    _subs: dict[str, list[MemorySubscription]] = attrs.field(factory=dict, init=False, repr=False)
    # task that entered -> stack of its sessions' nurseries (innermost last)
    _sessions: dict[trio.lowlevel.Task, list[trio.Nursery]] = attrs.field(
        factory=dict, init=False, repr=False
    )
    _published: int = attrs.field(default=0, init=False, repr=False)
    _delivered: int = attrs.field(default=0, init=False, repr=False)
    _errors: int = attrs.field(default=0, init=False, repr=False)
    _dropped: int = attrs.field(default=0, init=False, repr=False)

    @property
    def address(self) -> str:
        return "memory"

    @property
    def stats(self) -> BrokerStats:
        return BrokerStats(self._published, self._delivered, self._errors, self._dropped, 0)

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        """One session: a nursery for the deliveries of subscriptions made inside it (by this task or
        its children); leaving stops those subscriptions and no others."""
        task = trio.lowlevel.current_task()
        async with trio.open_nursery() as nursery:
            self._sessions.setdefault(task, []).append(nursery)
            try:
                yield
            finally:
                stack = self._sessions[task]
                stack.pop()
                if not stack:
                    del self._sessions[task]
                for subs in list(self._subs.values()):
                    for sub in list(subs):
                        if sub._nursery is nursery:
                            sub._stop()
                nursery.cancel_scope.cancel()

    def _session_nursery(self) -> trio.Nursery:
        task: trio.lowlevel.Task | None = trio.lowlevel.current_task()
        while task is not None:
            stack = self._sessions.get(task)
            if stack:
                return stack[-1]
            parent = task.parent_nursery
            task = parent.parent_task if parent is not None else None
        if self._sessions:
            # Not under any session (a pytest-trio fixture opened the broker in a task of its own):
            # the most recently opened session owns the delivery.
            return list(self._sessions.values())[-1][-1]
        raise BrokerError("MemoryBroker.subscribe must run inside `async with broker:` (which owns delivery)")

    def _forget(self, sub: MemorySubscription) -> None:
        subs = self._subs.get(sub.topic)
        if subs is not None and sub in subs:
            subs.remove(sub)
            if not subs:
                del self._subs[sub.topic]

    async def subscribe(
        self, topic: str, handler: Handler, *, queue: str | None = None, auto_ack: bool = True
    ) -> MemorySubscription:
        """Subscribe ``handler`` to ``topic`` (live when this returns). ``auto_ack`` has no effect here."""
        if not topic:
            raise BrokerError("empty topic")
        nursery = self._session_nursery()
        sub = MemorySubscription(topic, queue, self, nursery, self.buffer_size)
        await nursery.start(self._deliver, sub, handler)
        self._subs.setdefault(topic, []).append(sub)
        return sub

    async def _deliver(
        self,
        sub: MemorySubscription,
        handler: Handler,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            with sub._scope:
                sub._task = trio.lowlevel.current_task()
                task_status.started()
                async for event in sub._receive:
                    try:
                        await handler(event)
                    except Exception:
                        self._errors += 1
                        log.exception("memory broker: subscriber of %r raised", sub.topic)
                    else:
                        self._delivered += 1
        finally:
            sub._receive.close()
            sub._done.set()

    async def publish(self, topic: str, message: BrokerMessage) -> None:
        """Deliver to every plain subscriber and one random member per queue group; waits while a
        target's buffer is full (backpressure)."""
        subs = self._subs.get(topic, ())
        targets: list[MemorySubscription] = []
        groups: dict[str, list[MemorySubscription]] = {}
        for sub in subs:
            if sub.queue is None:
                targets.append(sub)
            else:
                groups.setdefault(sub.queue, []).append(sub)
        targets += [random.choice(members) for members in groups.values()]
        self._published += 1
        if not targets:
            await trio.lowlevel.checkpoint()
            return
        for sub in targets:
            event = MemoryEvent(topic, BrokerMessage(dict(message.header), message.body))
            try:
                await sub._send.send(event)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                self._dropped += 1  # unsubscribed while we were waiting


_DEFAULT: MemoryBroker | None = None


def from_options(options: Any) -> MemoryBroker:
    """The process-wide memory broker, so publishers and subscribers in one process meet by default."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = MemoryBroker()
    return _DEFAULT
