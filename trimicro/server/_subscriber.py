"""Service subscribers: ``service.subscribe(topic, handler, queue=...)`` made live on the broker.

A subscriber handler is ``async def on_event(msg: Event, ctx: trimicro.Context) -> None``. The type hint
of its first parameter picks what the payload decodes into (a protobuf class, an attrs class, ``dict``,
``bytes``; no hint: the codec's natural value); the codec comes from the message's ``Content-Type``
(missing: protobuf, as Go Micro). The context carries the topic (``ctx.endpoint``), the message id,
and the publisher's metadata, which is also the outgoing metadata of calls the handler makes.

Lifecycle: each subscription is a child task of the service nursery: it subscribes when the service
starts (before the service registers), and unsubscribes when the service stops.

Failures never stop a subscriber: a handler that raises is logged on ``trimicro.subscriber`` and
counted, and the message is not acknowledged (brokers that can redeliver will); a payload the codec
cannot decode is logged, counted and skipped (acknowledged, so it is not redelivered forever).

Subscriber wrappers (Go Micro's ``server.SubscriberWrapper``) are ``def wrap(next) -> call`` where
``call(message: SubscriberMessage, ctx) -> None``; service-wide ones are added with
``service.wrap_subscriber(w)`` and per subscription with ``subscribe(..., wrappers=[w])``; the first
added is the outermost.
"""

from __future__ import annotations

import inspect
import logging
import typing
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import trio

from .._metadata import CONTENT_TYPE, MESSAGE_ID, MICRO_ID, ROUTING_HEADERS
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
    "add_subscriber_wrapper",
    "start_subscribers",
    "subscriber_endpoints",
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


_STATS: weakref.WeakKeyDictionary[Any, SubscriberStats] = weakref.WeakKeyDictionary()
_WRAPPERS: weakref.WeakKeyDictionary[Any, list[SubscriberWrapper]] = weakref.WeakKeyDictionary()


def subscriber_stats(service: Any) -> SubscriberStats:
    """The (live) subscriber counters of ``service``."""
    stats = _STATS.get(service)
    if stats is None:
        stats = _STATS[service] = SubscriberStats()
    return stats


def add_subscriber_wrapper(service: Any, wrapper: SubscriberWrapper) -> None:
    """Add a service-wide subscriber wrapper (used by ``Service.wrap_subscriber``)."""
    _WRAPPERS.setdefault(service, []).append(wrapper)


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


def subscriber_endpoints(subscriptions: Sequence[Subscription]) -> list[Endpoint]:
    """The registry endpoints advertising ``subscriptions`` (metadata ``topic``, ``subscriber=true``;
    Go Micro does not advertise the queue)."""
    return [
        Endpoint(
            _endpoint_name(handler),
            _describe(_payload_type(handler)),
            None,
            {"topic": topic, "subscriber": "true"},
        )
        for topic, handler, _queue, _kw in subscriptions
    ]


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
    service: Any,
    topic: str,
    handler: Callable[..., Any],
    wrappers: Sequence[SubscriberWrapper],
    auto_ack: bool,
) -> Callable[[Any], Awaitable[None]]:
    into = _payload_type(handler)
    call = _chain(handler, wrappers)
    stats = subscriber_stats(service)
    name = getattr(service, "name", "")

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


async def _run_subscription(
    service: Any,
    broker: Any,
    subscription: Subscription,
    *,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    topic, handler, queue, kw = subscription
    unknown = set(kw) - {"wrappers", "auto_ack"}
    if unknown:
        raise TypeError(f"subscribe({topic!r}): unknown option(s) {sorted(unknown)}")
    wrappers = list(_WRAPPERS.get(service, ())) + list(kw.get("wrappers", ()))
    # We ack ourselves after the handler succeeded, so failures stay unacknowledged (Go Micro acks only
    # when the subscriber returned nil); ``auto_ack=True`` hands acknowledgement back to the broker.
    auto_ack = bool(kw.get("auto_ack", False))
    deliver = _make_delivery(service, topic, handler, wrappers, auto_ack)
    sub = await broker.subscribe(topic, deliver, queue=queue, auto_ack=auto_ack)
    try:
        task_status.started(sub)
        await trio.sleep_forever()
    finally:
        with (
            trio.CancelScope(shield=True),
            trio.move_on_after(getattr(service.options, "registry_timeout", 10.0)),
        ):
            try:
                await sub.unsubscribe()
            except Exception as exc:  # the broker may be gone already; nothing left to stop
                log.debug("unsubscribe from %r failed: %s", topic, exc)


async def start_subscribers(
    service: Any, nursery: trio.Nursery, broker: Any, subscriptions: Sequence[Subscription]
) -> None:
    """Start one task per subscription in ``nursery``; returns once every subscription is live."""
    for subscription in subscriptions:
        await nursery.start(_run_subscription, service, broker, subscription)
