"""The events contract (Go Micro v5's ``events.Stream``): durable, at-least-once event streams.

Unlike the broker (fire-and-forget pub/sub), an event stream keeps what is published and delivers
each event to every consumer *group* until a member of that group acknowledges it:

- ``await stream.publish(topic, payload, metadata=..., timestamp=...)`` -- ``payload`` is bytes as
  is, anything else JSON-encoded (as Go's ``Publish``). Returns once the stream has stored it.
- ``async with stream.consume(topic, group=..., auto_ack=True, ack_wait=..., retry_limit=...,
  offset=...) as events: async for event in events: ...`` -- members of one group share the events
  (each goes to one member); different groups each get all of them. A group is durable: it keeps its
  place while no member is connected. Without ``offset`` a new group starts with events published
  after it was created; with ``offset`` (a datetime) from that time on.
- **Acknowledgement.** With ``auto_ack`` an event is acknowledged when the consumer asks for the
  next one (so an event whose handling raised, or was cancelled, is delivered again). Otherwise call
  ``await event.ack()``, or ``await event.nack()`` to have it delivered again at once. An event not
  acknowledged within ``ack_wait`` seconds is delivered again; ``retry_limit`` bounds deliveries.

Events travel as Go's ``json.Marshal(events.Event{})``: ``{"ID", "Topic", "Timestamp" (RFC 3339),
"Metadata", "Payload" (base64)}`` (:func:`encode_event` / :func:`decode_event`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

import attrs

from ..errors import BrokerError

__all__ = ["Consumer", "Event", "EventsError", "Stream", "decode_event", "encode_event", "encode_payload"]


class EventsError(BrokerError):
    """An event stream operation failed (stream unreachable, rejected publish, bad topic)."""


async def _no_op() -> None:
    return None


@attrs.define(eq=False)
class Event:
    """One delivered (or published) event; ``delivery`` counts deliveries (1 = first)."""

    id: str
    topic: str
    timestamp: datetime
    metadata: dict[str, str] = attrs.field(factory=dict)
    payload: bytes = b""
    delivery: int = 1
    _ack: Callable[[], Awaitable[None]] = attrs.field(default=_no_op, repr=False)
    _nack: Callable[[], Awaitable[None]] = attrs.field(default=_no_op, repr=False)
    acked: bool = attrs.field(default=False, init=False)

    def unmarshal(self) -> Any:
        """The payload as JSON (Go's ``Event.Unmarshal``)."""
        return json.loads(self.payload)

    async def ack(self) -> None:
        """Done with it: it is not delivered to this group again."""
        if not self.acked:
            self.acked = True
            await self._ack()

    async def nack(self) -> None:
        """Not handled: deliver it again (to this group) now."""
        if not self.acked:
            self.acked = True
            await self._nack()


class Consumer(Protocol):
    """An async iterator of :class:`Event` for one group's member."""

    def __aiter__(self) -> AsyncIterator[Event]: ...

    async def __anext__(self) -> Event: ...


class Stream(Protocol):
    """Go Micro's ``events.Stream`` on trio (see the module doc)."""

    name: str

    async def publish(
        self,
        topic: str,
        message: Any,
        *,
        metadata: Mapping[str, str] | None = None,
        timestamp: datetime | None = None,
    ) -> None: ...

    def consume(
        self,
        topic: str,
        *,
        group: str | None = None,
        auto_ack: bool = True,
        ack_wait: float | None = None,
        retry_limit: int | None = None,
        offset: datetime | None = None,
    ) -> AbstractAsyncContextManager[Consumer]: ...


def encode_payload(message: Any) -> bytes:
    """bytes as they are, anything else as JSON (Go's ``Publish``)."""
    if isinstance(message, (bytes, bytearray, memoryview)):
        return bytes(message)
    try:
        return json.dumps(message, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise EventsError(f"cannot encode event payload: {exc}") from None


def _rfc3339(ts: datetime) -> str:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    text = ts.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


_FRACTION = re.compile(r"(\.\d{6})\d+")


def _parse_time(text: str) -> datetime:
    """Go's RFC 3339 (nanoseconds, ``Z``) -> an aware datetime (microseconds)."""
    clean = _FRACTION.sub(r"\1", text.strip()).replace("Z", "+00:00").replace("z", "+00:00")
    ts = datetime.fromisoformat(clean)
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def encode_event(event: Event) -> bytes:
    """``json.Marshal(&events.Event{ID, Topic, Timestamp, Metadata, Payload})`` as Go writes it."""
    return json.dumps(
        {
            "ID": event.id,
            "Topic": event.topic,
            "Timestamp": _rfc3339(event.timestamp),
            "Metadata": dict(event.metadata) if event.metadata else None,
            "Payload": base64.b64encode(event.payload).decode("ascii"),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")


def decode_event(data: bytes) -> Event:
    """An Event from Go's JSON (keys case-insensitive, as Go reads them); EventsError if malformed."""
    try:
        obj = json.loads(data)
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        fields = {str(k).lower(): v for k, v in obj.items()}
        metadata = fields.get("metadata") or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise ValueError("Metadata is not a map of strings")
        payload = fields.get("payload")
        raw = base64.b64decode(payload, validate=True) if payload else b""
        stamp = fields.get("timestamp")
        return Event(
            id=str(fields.get("id") or ""),
            topic=str(fields.get("topic") or ""),
            timestamp=_parse_time(stamp) if isinstance(stamp, str) else datetime.now(UTC),
            metadata={str(k): v for k, v in metadata.items()},
            payload=raw,
        )
    except (ValueError, TypeError, binascii.Error, RecursionError) as exc:
        raise EventsError(f"undecodable event: {exc}") from None
