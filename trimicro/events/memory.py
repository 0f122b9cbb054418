"""In-process event streams: the events contract without a server, for tests and single processes.

Same semantics as the JetStream stream (see :mod:`trimicro.events._base`): every topic keeps its
events; each group has a durable place in it; a delivered event not acknowledged within ``ack_wait``
(30 s, JetStream's default) or nacked is delivered again, up to ``retry_limit`` deliveries. Time is
trio's clock, so tests run it with ``autojump_clock``. Nothing is persisted beyond the process.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import attrs
import trio

from ._base import Event, EventsError, encode_payload

__all__ = ["MemoryConsumer", "MemoryStream", "from_options"]

DEFAULT_ACK_WAIT = 30.0


@attrs.define(eq=False)
class _Group:
    """One group's place in one topic, shared by its members."""

    next_seq: int
    ack_wait: float
    retry_limit: int | None
    #: delivered, not acknowledged: seq -> (deliveries so far, trio time it is due again)
    pending: dict[int, tuple[int, float]] = attrs.field(factory=dict)
    #: nacked or overdue: delivered again before anything new
    ready: deque[int] = attrs.field(factory=deque)
    changed: trio.Event = attrs.field(factory=trio.Event)

    def wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


@attrs.define(eq=False)
class MemoryConsumer:
    """One member of a group (an async iterator of :class:`Event`)."""

    _stream: MemoryStream
    topic: str
    group: str
    _state: _Group
    _auto_ack: bool
    _current: Event | None = attrs.field(default=None, init=False)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        if self._auto_ack and self._current is not None:
            await self._current.ack()
        self._current = None
        g = self._state
        log = self._stream._logs.setdefault(self.topic, [])
        while True:
            now = trio.current_time()
            for seq, (_, due) in list(g.pending.items()):
                if due <= now and seq not in g.ready:
                    g.ready.append(seq)
            seq, deliveries = -1, 0
            while g.ready:
                candidate = g.ready.popleft()
                done, _ = g.pending.get(candidate, (0, 0.0))
                if g.retry_limit is not None and done >= g.retry_limit:
                    g.pending.pop(candidate, None)  # out of deliveries: dropped
                    continue
                seq, deliveries = candidate, done + 1
                break
            if seq < 0 and g.next_seq < len(log):
                seq, deliveries = g.next_seq, 1
                g.next_seq += 1
            if seq >= 0:
                g.pending[seq] = (deliveries, now + g.ack_wait)
                self._current = self._deliver(log[seq], seq, deliveries)
                await trio.lowlevel.checkpoint()
                return self._current
            next_due = min((due for _, due in g.pending.values()), default=math.inf)
            with trio.move_on_at(next_due):
                await g.changed.wait()

    def _deliver(self, stored: Event, seq: int, deliveries: int) -> Event:
        g = self._state

        async def ack() -> None:
            g.pending.pop(seq, None)
            await trio.lowlevel.checkpoint()

        async def nack() -> None:
            if seq in g.pending:
                g.ready.append(seq)
                g.wake()
            await trio.lowlevel.checkpoint()

        event = attrs.evolve(stored, delivery=deliveries)
        event._ack, event._nack = ack, nack
        return event


@attrs.define(eq=False)
class MemoryStream:
    """Event streams held in memory; share one instance between publishers and consumers."""

    name: str = attrs.field(default="memory", init=False)
    _logs: dict[str, list[Event]] = attrs.field(factory=dict, init=False)
    _groups: dict[tuple[str, str], _Group] = attrs.field(factory=dict, init=False)

    async def __aenter__(self) -> MemoryStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def publish(
        self,
        topic: str,
        message: Any,
        *,
        metadata: Mapping[str, str] | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        if not topic:
            raise EventsError("missing topic")
        event = Event(
            id=str(uuid.uuid4()),
            topic=topic,
            timestamp=timestamp or datetime.now(UTC),
            metadata=dict(metadata or {}),
            payload=encode_payload(message),
        )
        self._logs.setdefault(topic, []).append(event)
        for (t, _), group in self._groups.items():
            if t == topic:
                group.wake()
        await trio.lowlevel.checkpoint()

    def consume(
        self,
        topic: str,
        *,
        group: str | None = None,
        auto_ack: bool = True,
        ack_wait: float | None = None,
        retry_limit: int | None = None,
        offset: datetime | None = None,
    ) -> AbstractAsyncContextManager[MemoryConsumer]:
        return self._consume(topic, group or str(uuid.uuid4()), auto_ack, ack_wait, retry_limit, offset)

    @asynccontextmanager
    async def _consume(
        self,
        topic: str,
        group: str,
        auto_ack: bool,
        ack_wait: float | None,
        retry_limit: int | None,
        offset: datetime | None,
    ) -> AsyncIterator[MemoryConsumer]:
        if not topic:
            raise EventsError("missing topic")
        log = self._logs.setdefault(topic, [])
        state = self._groups.get((topic, group))
        if state is None:
            start = len(log)
            if offset is not None:
                at = offset if offset.tzinfo is not None else offset.replace(tzinfo=UTC)
                start = next((i for i, e in enumerate(log) if e.timestamp >= at), len(log))
            state = _Group(start, ack_wait or DEFAULT_ACK_WAIT, retry_limit)
            self._groups[(topic, group)] = state
        await trio.lowlevel.checkpoint()
        yield MemoryConsumer(self, topic, group, state, auto_ack)


_DEFAULT: MemoryStream | None = None


def from_options(options: Any) -> MemoryStream:
    """The process-wide memory stream, so publishers and consumers in one process meet."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = MemoryStream()
    return _DEFAULT
