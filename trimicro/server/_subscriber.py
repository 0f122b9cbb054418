"""Service subscribers: ``service.subscribe(topic, handler, queue=...)`` made live on the broker.

A subscriber handler is ``async def on_event(msg: Event, ctx: trimicro.Context) -> None``. The type hint
of its first parameter picks what the payload decodes into (a protobuf class, an attrs class, ``dict``,
``bytes``; no hint: the codec's natural value); the codec comes from the message's ``Content-Type``
(missing: protobuf, as Go Micro). The context carries the topic (``ctx.endpoint``), the message id,
and the publisher's metadata, which is also the outgoing metadata of calls the handler makes.

A service's subscriptions are one :class:`Subscribers` object, built by the Service (``add``, ``wrap``),
asked for the registry ``endpoints`` it advertises, and started on the broker (``start``); it keeps the
service's counters (``stats``) across runs. Lifecycle: each subscription is a child task of the service
nursery: it subscribes when the service starts (before the service registers), and unsubscribes when
the service stops.

Failures never stop a subscriber: a handler that raises is logged on ``trimicro.subscriber`` and
counted, and the message is not acknowledged (brokers that can redeliver will); a payload the codec
cannot decode is logged, counted and skipped (acknowledged, so it is not redelivered forever).

Subscriber wrappers (Go Micro's ``server.SubscriberWrapper``) are ``def wrap(next) -> call`` where
``call(message: SubscriberMessage, ctx) -> None``; service-wide ones are added with
``service.wrap_subscriber(w)`` (:meth:`Subscribers.wrap`) and per subscription with
``subscribe(..., wrappers=[w])``; the first added is the outermost.
"""

from __future__ import annotations

import inspect
import logging
import typing
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import trio

from .._metadata import CONTENT_TYPE, MESSAGE_ID, MICRO_ID, ROUTING_HEADERS
from ..broker import Broker
from ..codec import get_codec
from ..codec.describe import describe
from ..context import Context, reset_incoming, set_incoming
from ..errors import CodecError
from ..registry import Endpoint, Value

__all__ = [
    "SubscriberCall",
    "SubscriberMessage",
    "SubscriberStats",
    "SubscriberWrapper",
    "Subscribers",
    "subscriber_stats",
]

log = logging.getLogger("trimicro.subscriber")

Subscription = tuple[str, Callable[..., Any], "str | None", dict[str, Any]]


@attrs.frozen
class SubscriberMessage:
    """What subscriber wrappers see (Go Micro's ``server.Message``): the decoded payload and the raw
    delivery. Wrappers may pass a changed copy on (``attrs.evolve(msg, payload=...)``)."""

    topic: str
    payload: Any
    content_type: str
    header: dict[str, str]
    body: bytes


SubscriberCall = Callable[[SubscriberMessage, Context], Awaitable[None]]
SubscriberWrapper = Callable[[SubscriberCall], SubscriberCall]


@attrs.define
class SubscriberStats:
    """Counters for one service's subscribers: ``received`` deliveries, ``handled`` handler calls that
    returned, ``errors`` handler calls that raised, ``undecodable`` payloads skipped."""

    received: int = 0
    handled: int = 0
    errors: int = 0
    undecodable: int = 0


def subscriber_stats(service: Any) -> SubscriberStats:
    """The (live) subscriber counters of ``service`` (``service.subscribers.stats``)."""
    stats: SubscriberStats = service.subscribers.stats
    return stats


def _payload_type(handler: Callable[..., Any]) -> Any:
    """The decode type: the type hint of the handler's first parameter (None if absent)."""
    target: Any = handler if inspect.isroutine(handler) else type(handler).__call__
    try:
        hints = typing.get_type_hints(target)
        params = [p for p in inspect.signature(target).parameters.values() if p.name != "self"]
    except Exception:  # unresolvable forward references / builtins: decode untyped
        return None
    if not params:
        return None
    hint = hints.get(params[0].name)
    return None if hint is Any else hint


def _endpoint_name(handler: Callable[..., Any]) -> str:
    """Go Micro's name: ``Func`` for a function, ``Handler.Method`` for a bound method."""
    owner = getattr(handler, "__self__", None)
    if owner is not None and not inspect.ismodule(owner):
        return f"{type(owner).__name__}.{handler.__name__}"
    return "Func"


def _describe(cls: Any) -> Value | None:
    if cls is None:
        return None
    try:
        return describe(cls)
    except Exception:
        return None


def _metadata(header: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in header.items() if k not in ROUTING_HEADERS and k != MESSAGE_ID}


def _chain(handler: Callable[..., Any], wrappers: Sequence[SubscriberWrapper]) -> SubscriberCall:
    async def call(msg: SubscriberMessage, ctx: Context) -> None:
        await handler(msg.payload, ctx)

    chained: SubscriberCall = call
    for wrapper in reversed(list(wrappers)):
        chained = wrapper(chained)
    return chained


def _make_delivery(
    name: str,
    stats: SubscriberStats,
    topic: str,
    handler: Callable[..., Any],
    wrappers: Sequence[SubscriberWrapper],
    auto_ack: bool,
) -> Callable[[Any], Awaitable[None]]:
    into = _payload_type(handler)
    call = _chain(handler, wrappers)

    async def deliver(event: Any) -> None:
        stats.received += 1
        header: dict[str, str] = event.message.header
        body: bytes = event.message.body
        content_type = header.get(CONTENT_TYPE) or "application/protobuf"
        try:
            payload = get_codec(content_type).decode(body, into)
        except CodecError as exc:
            stats.undecodable += 1
            log.warning(
                "subscriber %s: undecodable %s message on %r skipped: %s", name, content_type, topic, exc
            )
            if not auto_ack:
                await event.ack()
            return
        md = _metadata(header)
        ctx = Context(
            service=name,
            endpoint=topic,
            metadata=md,
            content_type=content_type,
            id=header.get(MESSAGE_ID) or header.get(MICRO_ID, ""),
        )
        token = set_incoming(md)
        try:
            await call(SubscriberMessage(topic, payload, content_type, header, body), ctx)
        except Exception:
            stats.errors += 1
            log.exception("subscriber %s: handler for %r raised", name, topic)
            return  # not acknowledged: a broker that can redeliver will
        finally:
            reset_incoming(token)
        stats.handled += 1
        if not auto_ack:
            await event.ack()

    return deliver


@attrs.define(eq=False)
class Subscribers:
    """One service's subscriptions: what ``Service.subscribe`` added, its service-wide wrappers and
    its counters. The Service builds one, advertises its :meth:`endpoints` and starts it on the broker
    each time it runs (:meth:`start`)."""

    service_name: str
    stats: SubscriberStats = attrs.field(factory=SubscriberStats)
    _subscriptions: list[Subscription] = attrs.field(factory=list, init=False)
    _wrappers: list[SubscriberWrapper] = attrs.field(factory=list, init=False)

    def __len__(self) -> int:
        return len(self._subscriptions)

    def add(
        self, topic: str, handler: Callable[..., Any], queue: str | None, options: dict[str, Any]
    ) -> None:
        """Add a subscription (options ``wrappers``, ``auto_ack``; others fail when it starts)."""
        self._subscriptions.append((topic, handler, queue, options))

    def wrap(self, wrapper: SubscriberWrapper, *, first: bool = False) -> None:
        """Add a service-wide wrapper (outermost first, or the outermost with ``first=True``);
        subscriptions started later use it."""
        if first:
            self._wrappers.insert(0, wrapper)
        else:
            self._wrappers.append(wrapper)

    def endpoints(self) -> list[Endpoint]:
        """The registry endpoints advertising the subscriptions (metadata ``topic``,
        ``subscriber=true``; Go Micro does not advertise the queue)."""
        return [
            Endpoint(
                _endpoint_name(handler),
                _describe(_payload_type(handler)),
                None,
                {"topic": topic, "subscriber": "true"},
            )
            for topic, handler, _queue, _kw in self._subscriptions
        ]

    async def start(self, nursery: trio.Nursery, broker: Broker, *, unsubscribe_timeout: float) -> None:
        """Start one task per subscription in ``nursery``; returns once every subscription is live.
        Each unsubscribes (within ``unsubscribe_timeout``) when ``nursery`` is cancelled."""
        for subscription in self._subscriptions:
            await nursery.start(self._run, broker, subscription, unsubscribe_timeout)

    async def _run(
        self,
        broker: Broker,
        subscription: Subscription,
        unsubscribe_timeout: float,
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        topic, handler, queue, kw = subscription
        unknown = set(kw) - {"wrappers", "auto_ack"}
        if unknown:
            raise TypeError(f"subscribe({topic!r}): unknown option(s) {sorted(unknown)}")
        wrappers = list(self._wrappers) + list(kw.get("wrappers", ()))
        # We ack ourselves after the handler succeeded, so failures stay unacknowledged (Go Micro acks
        # only when the subscriber returned nil); ``auto_ack=True`` hands acknowledgement back to the
        # broker.
        auto_ack = bool(kw.get("auto_ack", False))
        deliver = _make_delivery(self.service_name, self.stats, topic, handler, wrappers, auto_ack)
        sub = await broker.subscribe(topic, deliver, queue=queue, auto_ack=auto_ack)
        try:
            task_status.started(sub)
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(unsubscribe_timeout):
                try:
                    await sub.unsubscribe()
                except Exception as exc:  # the broker may be gone already; nothing left to stop
                    log.debug("unsubscribe from %r failed: %s", topic, exc)
