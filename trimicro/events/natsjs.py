"""Events on NATS JetStream, in Go Micro v5's ``events/natsjs`` layout (needs ``nats-server -js``).

Layout (what Go's natsjs does, so Go and trimicro publishers and consumers share streams and groups):

- one JetStream **stream per topic**, named after the topic and capturing that one subject (Go's
  ``AddStream(&StreamConfig{Name: topic})``; JetStream then forbids ``.``, ``*``, ``>`` and spaces in
  topics). Go creates it when consuming; trimicro also creates it on first publish, so nothing
  published before the first consumer is refused.
- events are published to the topic subject as Go's event JSON (:func:`~._base.encode_event`) and,
  by default, confirmed by JetStream's publish ack (``{"stream":…,"seq":…}``) before ``publish``
  returns: at-least-once from the publisher's side.
- a **group** is a durable push consumer named after the group, delivering to an inbox with the group
  as NATS queue group (Go's ``QueueSubscribe(topic, group, …, Durable(group))``). A member joining an
  existing group binds to the consumer's delivery subject. Consumer config as Go sets it:
  ``ack_policy`` ``all`` with ``auto_ack`` and ``explicit`` without, ``deliver_policy`` ``new`` or
  ``by_start_time`` (``offset``), ``ack_wait`` and ``max_deliver`` (``retry_limit``) when given.
- acknowledgements are JetStream's: ``+ACK`` / ``-NAK`` published to the delivery's reply subject
  ``$JS.ACK.<stream>.<consumer>.<delivered>.…`` (``Event.delivery`` is that count). An event that
  cannot be decoded is terminated (``+TERM``) and logged, so one bad publisher cannot make a group
  redeliver it forever.

Go Micro v5.30.0 quirks (see docs/pubsub.md): its default is ``AutoAck`` false, and then its
``Event.Ack`` / ``Nack`` do nothing, so a Go consumer without ``WithAutoAck`` never acknowledges and
JetStream redelivers every ``ack_wait``. With auto-ack Go acknowledges when the event is handed to the
consumer and the policy is ``all``: an ack also covers earlier deliveries to other group members.
trimicro's own auto-ack acknowledges after the consumer is done with an event (when it asks for the
next), and its explicit ``ack``/``nack`` work.
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import attrs
import trio

from .._lifecycle import NurseryOwner
from .._nats import nats_servers, open_nats
from ..broker._nats_client import NatsClient, NatsSubscription, NoResponders, RequestTimeout
from ..broker._nats_protocol import Msg, validate_subject
from ..errors import BrokerError
from ._base import Event, EventsError, decode_event, encode_event, encode_payload

__all__ = ["NatsJetStream", "NatsJsConsumer", "from_options"]

log = logging.getLogger("trimicro.events.natsjs")

_STREAM_NOT_FOUND = 10059
_CONSUMER_NOT_FOUND = 10014
_NS = 1_000_000_000


def _check_topic(topic: str) -> None:
    if not topic:
        raise EventsError("missing topic")
    if any(c in topic for c in ".*> \t\r\n"):
        raise EventsError(f"invalid topic {topic!r}: a JetStream stream name cannot contain . * > or spaces")


def _delivery(reply: str | None) -> int:
    """The delivery count from ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>``."""
    if not reply or not reply.startswith("$JS.ACK."):
        return 1
    tokens = reply.split(".")
    # With a domain/account hash prefix (newer servers) there are more tokens; delivered is 9th from the end.
    try:
        return int(tokens[-5]) if len(tokens) >= 9 else 1
    except ValueError:
        return 1


@attrs.define(eq=False)
class NatsJsConsumer:
    """One member of a group: JetStream deliveries as :class:`Event` (see the package doc on acks)."""

    _client: NatsClient
    _sub: NatsSubscription
    topic: str
    group: str
    _auto_ack: bool
    _current: Event | None = attrs.field(default=None, init=False)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        if self._auto_ack and self._current is not None:
            await self._current.ack()  # the consumer is done with it: it asked for the next
        self._current = None
        while True:
            try:
                msg = await self._sub.next()
            except trio.EndOfChannel:
                raise StopAsyncIteration from None
            if msg.status is not None:
                if msg.reply:  # flow control asks for an (empty) answer; heartbeats do not
                    await self._publish(msg.reply, b"")
                continue
            try:
                event = decode_event(msg.payload)
            except EventsError as exc:
                log.error("natsjs: undecodable event on %r terminated: %s", self.topic, exc)
                if msg.reply:
                    await self._publish(msg.reply, b"+TERM")
                continue
            event.delivery = _delivery(msg.reply)
            if msg.reply:
                event._ack = functools.partial(self._publish, msg.reply, b"+ACK")
                event._nack = functools.partial(self._publish, msg.reply, b"-NAK")
            self._current = event
            return event

    async def _publish(self, subject: str, data: bytes) -> None:
        try:
            await self._client.publish(subject, data)
        except (BrokerError, ValueError) as exc:
            raise EventsError(f"natsjs: cannot acknowledge: {exc}") from None


@attrs.define(eq=False)
class NatsJetStream(NurseryOwner):
    """Go Micro's natsjs events stream on trio; ``async with`` it to connect.

    ``sync_publish`` (default, Go's ``SynchronousPublish(true)``) waits for JetStream's ack of every
    publish; off, ``publish`` only queues it (Go's default ``PublishAsync``, at-most-once if the
    connection then dies). ``retention`` and ``max_age`` go into streams this creates.
    """

    servers: Sequence[str] = attrs.field(default=(), converter=nats_servers)
    sync_publish: bool = True
    timeout: float = 5.0  # bound on one JetStream API request or publish ack
    retention: str | None = None  # "limits" (JetStream's default), "interest" or "workqueue"
    max_age: float | None = None  # seconds
    connect_attempts: int = 4
    client_options: dict[str, Any] = attrs.field(factory=dict)
    name: str = attrs.field(default="natsjs", init=False)
    _client: NatsClient | None = attrs.field(default=None, init=False, repr=False)
    _streams: set[str] = attrs.field(factory=set, init=False, repr=False)

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        if self._client is not None:
            yield
            return
        async with open_nats(
            self.servers, error=EventsError, attempts=self.connect_attempts, **self.client_options
        ) as client:
            self._client = client
            try:
                yield
            finally:
                self._client = None
                self._streams.clear()

    @property
    def client(self) -> NatsClient:
        if self._client is None:
            raise EventsError("NatsJetStream used outside `async with stream:`")
        return self._client

    async def _request(self, subject: str, body: bytes) -> Msg:
        try:
            return await self.client.request(subject, body, timeout=self.timeout)
        except NoResponders:
            raise EventsError(
                f"natsjs: no JetStream answers {subject!r} (is nats-server running with -js?)"
            ) from None
        except RequestTimeout:
            raise EventsError(f"natsjs: {subject!r} not answered within {self.timeout}s") from None
        except (BrokerError, ValueError) as exc:  # the connection, or a bad subject
            raise EventsError(f"natsjs: {subject}: {exc}") from None

    async def _api(self, subject: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A JetStream API call; EventsError carrying the API's description and ``err_code``."""
        reply = await self._request(subject, json.dumps(body).encode() if body is not None else b"")
        try:
            obj = json.loads(reply.payload)
        except ValueError:
            raise EventsError(f"natsjs: {subject}: undecodable answer {reply.payload[:200]!r}") from None
        err = obj.get("error") if isinstance(obj, dict) else None
        if err:
            exc = EventsError(f"natsjs: {subject}: {err.get('description', err)}")
            exc.err_code = err.get("err_code")  # type: ignore[attr-defined]
            raise exc
        return obj if isinstance(obj, dict) else {}

    async def _ensure_stream(self, topic: str) -> None:
        if topic in self._streams:
            return
        try:
            await self._api(f"$JS.API.STREAM.INFO.{topic}")
        except EventsError as exc:
            if getattr(exc, "err_code", None) != _STREAM_NOT_FOUND:
                raise
            config: dict[str, Any] = {"name": topic, "subjects": [topic]}
            if self.retention:
                config["retention"] = self.retention
            if self.max_age:
                config["max_age"] = int(self.max_age * _NS)
            try:
                await self._api(f"$JS.API.STREAM.CREATE.{topic}", config)
            except EventsError as exc2:
                if "already in use" not in str(exc2):  # created meanwhile by someone else
                    raise
        self._streams.add(topic)

    async def publish(
        self,
        topic: str,
        message: Any,
        *,
        metadata: Mapping[str, str] | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        """Store one event on ``topic`` (see the module doc)."""
        _check_topic(topic)
        event = Event(
            id=str(uuid.uuid4()),
            topic=topic,
            timestamp=timestamp or datetime.now(UTC),
            metadata=dict(metadata or {}),
            payload=encode_payload(message),
        )
        await self._ensure_stream(topic)
        data = encode_event(event)
        if not self.sync_publish:
            try:
                await self.client.publish(topic, data)
            except (BrokerError, ValueError) as exc:
                raise EventsError(f"natsjs: cannot publish to {topic!r}: {exc}") from None
            return
        reply = await self._request(topic, data)
        try:
            ack = json.loads(reply.payload)
        except ValueError:
            ack = None
        if not isinstance(ack, dict) or ack.get("error") or "seq" not in ack:
            raise EventsError(f"natsjs: publish to {topic!r} not acknowledged: {reply.payload[:200]!r}")

    def consume(
        self,
        topic: str,
        *,
        group: str | None = None,
        auto_ack: bool = True,
        ack_wait: float | None = None,
        retry_limit: int | None = None,
        offset: datetime | None = None,
    ) -> AbstractAsyncContextManager[NatsJsConsumer]:
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
    ) -> AsyncIterator[NatsJsConsumer]:
        _check_topic(topic)
        try:
            validate_subject(group)
        except ValueError as exc:
            raise EventsError(f"natsjs: invalid group {group!r}: {exc}") from None
        if "." in group:
            raise EventsError(f"natsjs: invalid group {group!r}: a consumer name cannot contain '.'")
        client = self.client
        await self._ensure_stream(topic)
        deliver = await self._bind_or_create(topic, group, auto_ack, ack_wait, retry_limit, offset)
        try:
            sub = await client.subscribe(deliver, queue=group)
        except (BrokerError, ValueError) as exc:
            raise EventsError(f"natsjs: cannot subscribe to {deliver!r}: {exc}") from None
        try:
            yield NatsJsConsumer(client, sub, topic, group, auto_ack)
        finally:
            with trio.CancelScope(shield=True):
                await sub.unsubscribe()  # the durable consumer stays: the group keeps its place

    async def _bind_or_create(
        self,
        topic: str,
        group: str,
        auto_ack: bool,
        ack_wait: float | None,
        retry_limit: int | None,
        offset: datetime | None,
    ) -> str:
        """The delivery subject of the group's durable consumer, creating the consumer if needed."""
        try:
            info = await self._api(f"$JS.API.CONSUMER.INFO.{topic}.{group}")
        except EventsError as exc:
            if getattr(exc, "err_code", None) != _CONSUMER_NOT_FOUND:
                raise
        else:
            deliver = info.get("config", {}).get("deliver_subject")
            if not deliver:
                raise EventsError(
                    f"natsjs: consumer {group!r} on {topic!r} is a pull consumer; cannot join it"
                )
            return str(deliver)
        deliver = "_INBOX." + secrets.token_hex(11)
        config: dict[str, Any] = {
            "durable_name": group,
            "deliver_subject": deliver,
            "deliver_group": group,
            "ack_policy": "all" if auto_ack else "explicit",
            "filter_subject": topic,
        }
        if offset is not None:
            config["deliver_policy"] = "by_start_time"
            config["opt_start_time"] = offset.astimezone(UTC).isoformat().replace("+00:00", "Z")
        else:
            config["deliver_policy"] = "new"
        if ack_wait:
            config["ack_wait"] = int(ack_wait * _NS)
        if retry_limit is not None:
            config["max_deliver"] = retry_limit
        created = await self._api(
            f"$JS.API.CONSUMER.DURABLE.CREATE.{topic}.{group}", {"stream_name": topic, "config": config}
        )
        return str(created.get("config", {}).get("deliver_subject") or deliver)


def from_options(options: Any) -> NatsJetStream:
    """Events on JetStream at ``--broker_address`` (default ``127.0.0.1:4222``)."""
    return NatsJetStream(servers=list(getattr(options, "broker_address", None) or []))
