"""NATS broker: the Broker contract over the trio-native :class:`~trimicro._nats.NatsClient`.

Wire forms (``wire=``):

- ``"gomicro"`` (default): Go Micro's nats broker JSON-encodes the whole ``broker.Message`` into the
  payload, ``{"Header": {...}, "Body": "<base64>"}`` (Go's encoding of ``map[string]string`` and
  ``[]byte``), published with plain ``PUB``. Go Micro services subscribed to the same subject read it.
- ``"headers"``: ``HPUB`` with the message header as NATS headers and the body as the raw payload;
  cheaper, and readable by any NATS tool, but not by Go Micro's broker.

Receiving decodes both: a message carrying NATS headers is the headers form, one without is Go
Micro's JSON. A payload that is neither is logged, counted in ``stats.undecodable`` and skipped.

Each subscription has its own delivery task (a child of the broker's nursery) that awaits the handler
per message; a raising handler is logged and counted (``stats.errors``) and the loop goes on. A handler
slower than the publishers fills the subscription's bounded buffer, after which NATS's slow-consumer
rule applies: the newest messages are dropped and counted (``stats.dropped``). NATS core has no
acknowledgements, so ``auto_ack`` and ``Event.ack()`` have no effect.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import attrs
import trio

from .._lifecycle import NurseryOwner
from .._nats import Msg, NatsClient, NatsSubscription, str_list
from ..errors import BrokerError, CodecError
from ._base import BrokerMessage, Handler
from ._envelope import decode_envelope, encode_envelope
from .memory import BrokerStats

__all__ = [
    "NatsBroker",
    "NatsBrokerSubscription",
    "NatsEvent",
    "decode_message",
    "encode_gomicro",
    "from_options",
]

log = logging.getLogger("trimicro.broker")

DEFAULT_ADDRESS = "127.0.0.1:4222"


encode_gomicro = encode_envelope  # Go Micro's nats-broker payload: the JSON broker envelope


def decode_message(msg: Msg) -> BrokerMessage:
    """A NATS message as a BrokerMessage: headers form if it has NATS headers, else Go Micro's JSON.
    CodecError if neither."""
    if msg.headers is not None:
        return BrokerMessage(header=msg.header_dict(), body=msg.payload)
    return decode_envelope(msg.payload)


@attrs.frozen
class NatsEvent:
    """One delivery; ``ack()`` is a no-op (NATS core does not redeliver)."""

    topic: str
    message: BrokerMessage
    reply: str | None = None

    async def ack(self) -> None:
        await trio.lowlevel.checkpoint()


@attrs.define(eq=False)
class NatsBrokerSubscription:
    """A live broker subscription; ``unsubscribe()`` sends UNSUB and stops the delivery task (the
    current handler call is cancelled) before returning, unless called from that handler."""

    topic: str
    queue: str | None
    _sub: NatsSubscription = attrs.field(repr=False)
    _broker: NatsBroker = attrs.field(repr=False)
    _scope: trio.CancelScope = attrs.field(factory=trio.CancelScope, init=False, repr=False)
    _done: trio.Event = attrs.field(factory=trio.Event, init=False, repr=False)
    _task: trio.lowlevel.Task | None = attrs.field(default=None, init=False, repr=False)

    @property
    def dropped(self) -> int:
        """Messages dropped by the slow-consumer rule on this subscription."""
        return self._sub.dropped

    @property
    def pending(self) -> int:
        return self._sub.pending

    async def unsubscribe(self) -> None:
        await self._sub.unsubscribe()
        self._scope.cancel()
        if trio.lowlevel.current_task() is not self._task:
            await self._done.wait()

    async def _run(
        self, handler: Handler, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        broker = self._broker
        try:
            with self._scope:
                self._task = trio.lowlevel.current_task()
                task_status.started()
                async for msg in self._sub:
                    try:
                        message = decode_message(msg)
                    except CodecError as exc:
                        broker._undecodable += 1
                        log.error("nats broker: undecodable message on %r skipped: %s", msg.subject, exc)
                        continue
                    try:
                        await handler(NatsEvent(msg.subject, message, msg.reply))
                    except Exception:
                        broker._errors += 1
                        log.exception("nats broker: subscriber of %r raised", self.topic)
                    else:
                        broker._delivered += 1
        finally:
            broker._retired_dropped += self._sub.dropped
            broker._live.discard(self)
            self._done.set()


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)  # hot counters: plain setattr
class NatsBroker(NurseryOwner):
    """Broker over NATS; ``servers`` are tried in order (``host:port`` or ``nats://host:port``).

    ``client_options`` go to :class:`NatsClient` (``pending_msgs_limit``, ``reconnect_buffer_size``,
    ``ping_interval``, ...). ``client`` exposes the connection for request/reply.
    """

    servers: list[str] = attrs.field(factory=lambda: [DEFAULT_ADDRESS], converter=str_list)
    wire: Literal["gomicro", "headers"] = "gomicro"
    client_options: dict[str, Any] = attrs.field(factory=dict)
    name: str = attrs.field(default="nats", init=False)
    _client: NatsClient | None = attrs.field(default=None, init=False, repr=False)
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False, repr=False)
    _live: set[NatsBrokerSubscription] = attrs.field(factory=set, init=False, repr=False)
    _published: int = attrs.field(default=0, init=False, repr=False)
    _delivered: int = attrs.field(default=0, init=False, repr=False)
    _errors: int = attrs.field(default=0, init=False, repr=False)
    _undecodable: int = attrs.field(default=0, init=False, repr=False)
    _retired_dropped: int = attrs.field(default=0, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.wire not in ("gomicro", "headers"):
            raise ValueError(f"wire must be 'gomicro' or 'headers', not {self.wire!r}")

    @property
    def address(self) -> str:
        """The server connected to, else the first configured one."""
        if self._client is not None and self._client.server:
            return self._client.server
        return self.servers[0] if self.servers else DEFAULT_ADDRESS

    @property
    def client(self) -> NatsClient:
        if self._client is None:
            raise BrokerError("nats broker is not connected (use `async with broker:`)")
        return self._client

    @property
    def stats(self) -> BrokerStats:
        dropped = self._retired_dropped + sum(s.dropped for s in self._live)
        return BrokerStats(self._published, self._delivered, self._errors, dropped, self._undecodable)

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        """The connection around the nursery of the delivery tasks: deliveries stop before it closes."""
        if self._client is not None:
            raise RuntimeError("NatsBroker is already connected")
        async with NatsClient(self.servers, **self.client_options) as client:
            async with trio.open_nursery() as nursery:
                self._client, self._nursery = client, nursery
                try:
                    yield
                finally:
                    self._client = self._nursery = None
                    nursery.cancel_scope.cancel()

    async def publish(self, topic: str, message: BrokerMessage) -> None:
        client = self.client
        try:
            if self.wire == "gomicro":
                await client.publish(topic, encode_gomicro(message))
            else:
                await client.publish(topic, message.body, headers=message.header)
        except ValueError as exc:
            raise BrokerError(f"nats broker: cannot publish to {topic!r}: {exc}") from None
        self._published += 1

    async def subscribe(
        self, topic: str, handler: Handler, *, queue: str | None = None, auto_ack: bool = True
    ) -> NatsBrokerSubscription:
        """Subscribe and return once the server has the subscription (or, while reconnecting, once it
        is registered to be sent on reconnect)."""
        client = self.client
        assert self._nursery is not None
        try:
            sub = await client.subscribe(topic, queue)
        except ValueError as exc:
            raise BrokerError(f"nats broker: cannot subscribe to {topic!r}: {exc}") from None
        try:
            with trio.fail_after(client.connect_timeout):
                await client.flush()
        except (BrokerError, trio.TooSlowError) as exc:
            log.debug("nats broker: subscription to %r pending reconnect: %s", topic, exc)
        bsub = NatsBrokerSubscription(topic, queue, sub, self)
        self._live.add(bsub)
        await self._nursery.start(bsub._run, handler)
        return bsub


def from_options(options: Any) -> NatsBroker:
    """A NatsBroker on ``options.broker_address`` (default ``127.0.0.1:4222``)."""
    addresses = list(getattr(options, "broker_address", None) or []) or [DEFAULT_ADDRESS]
    return NatsBroker(addresses)
