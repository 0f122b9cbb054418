"""The http broker (Go Micro's default): point-to-point HTTP between publishers and subscribers.

Every broker runs a small HTTP server (``address``, default ``127.0.0.1:0``). A subscription registers
a ``micro.http.broker`` node for its topic in the registry (version = queue name or
``ff.http.broadcast``; TTL 60 s, refreshed every 30 s, removed on unsubscribe and exit). ``publish``
looks those nodes up (cached, kept fresh by a registry watch), and POSTs Go Micro's JSON envelope
``{"Header": {...}, "Body": "<base64>"}`` to ``/?id=<node id>`` of every broadcast node and of one
random member per queue group. Go Micro services on the same registry interoperate both ways.

Delivery (documented in docs/pubsub.md):

- ``publish`` makes the first attempt itself (in parallel across targets, each bounded by
  ``publish_timeout``), so when it returns the subscribers' handlers have run, or the message is in the
  retry queue. A slow subscriber therefore slows its publishers (backpressure), unlike Go's
  fire-and-forget goroutine.
- A failed POST to a queue group fails over to the group's other members at once; a node that failed
  is avoided for ``blacklist_for`` seconds.
- What still failed goes to a bounded in-memory retry queue (``retry_queue_size``) drained by a task
  the broker owns, with exponential backoff (``retry_backoff`` doubling up to ``retry_backoff_max``),
  at most ``max_attempts`` attempts in all. A retry re-reads the registry, so a queue-group message
  goes to whichever members are alive then.
- A delivery given up (queue full, attempts exhausted, broadcast node gone, broker closing) is counted
  in ``stats.dropped`` and logged at WARNING on ``trimicro.broker``; never silent.
- A retry after a reply was lost (timeout) can deliver a message twice; nothing is persisted.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import attrs
import trio

from .. import _plugins
from .._lifecycle import NurseryOwner
from .._metadata import MICRO_TOPIC
from ..errors import BrokerError, RegistryError, ServiceNotFound
from ..registry import Node, Registry, Service
from ._base import BrokerMessage, Handler
from ._http_client import PostClient
from ._http_proto import (
    BROADCAST,
    LEGACY_SERVICE,
    SERVICE,
    Accepted,
    Target,
    backoff,
    broker_record,
    encode_envelope,
    route_request,
    select_targets,
    target_path,
)
from ._http_server import Limits, serve_connection

__all__ = ["HttpBroker", "HttpBrokerStats", "HttpEvent", "HttpSubscription", "from_options"]

log = logging.getLogger("trimicro.broker")

REGISTER_TTL = 60.0  # Go Micro's http broker: registerTTL = 1 minute
REGISTER_INTERVAL = 30.0  # and registerInterval = 30 s


@attrs.frozen
class HttpBrokerStats:
    """Counters since the broker was created (a snapshot).

    Publishing side: ``published`` messages accepted by ``publish``; ``delivered`` POSTs a subscriber
    answered 200; ``errors`` POST attempts that failed; ``failed_over`` deliveries moved to another
    queue-group member; ``retried`` attempts made from the retry queue; ``dropped`` deliveries given up.
    Subscribing side: ``received`` messages dispatched to local handlers; ``handler_errors`` handlers
    that raised; ``rejected`` inbound requests answered with an error (bad envelope, no topic, ...).
    """

    published: int = 0
    delivered: int = 0
    errors: int = 0
    failed_over: int = 0
    retried: int = 0
    dropped: int = 0
    received: int = 0
    handler_errors: int = 0
    rejected: int = 0


@attrs.frozen
class HttpEvent:
    """One delivery; ``ack()`` is a no-op (the http broker never redelivers what a handler got)."""

    topic: str
    message: BrokerMessage

    async def ack(self) -> None:
        await trio.lowlevel.checkpoint()


@attrs.define(eq=False)
class HttpSubscription:
    """A live subscription (registered as a ``micro.http.broker`` node); ``unsubscribe()`` deregisters
    it and stops local delivery."""

    topic: str
    queue: str | None
    id: str
    handler: Handler = attrs.field(repr=False)
    record: Service = attrs.field(repr=False)
    _broker: HttpBroker = attrs.field(repr=False)
    active: bool = True

    async def unsubscribe(self) -> None:
        await self._broker._unsubscribe(self)


@attrs.define(eq=False)
class _Retry:
    topic: str
    body: bytes
    group: str
    node_id: str | None  # broadcast: the node this copy is for; queue groups: any member
    legacy: bool
    attempts: int  # made so far
    due: float


@attrs.define(eq=False)
class HttpBroker(NurseryOwner):
    """Go Micro's http broker; see the module docstring.

    ``registry``: where subscriptions are registered and looked up. If None, the service running this
    broker injects its own (``use_registry``), else one is created from ``options`` on entry.
    ``rng`` picks queue-group members (seed it for reproducible tests).
    """

    registry: Registry | None = None
    _address: str = attrs.field(default="127.0.0.1:0", alias="address")
    options: Any = None
    publish_timeout: float = 5.0
    connect_timeout: float = 5.0
    retry_queue_size: int = 1024
    max_attempts: int = 4
    retry_backoff: float = 0.1
    retry_backoff_max: float = 5.0
    blacklist_for: float = 5.0
    cache_ttl: float = 60.0
    register_ttl: float = REGISTER_TTL
    register_interval: float = REGISTER_INTERVAL
    registry_timeout: float = 10.0
    limits: Limits = attrs.field(factory=Limits)
    rng: random.Random = attrs.field(factory=random.Random, repr=False)
    name: str = attrs.field(default="http", init=False)

    _bound: str = attrs.field(default="", init=False)
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False, repr=False)
    _selector: Any = attrs.field(default=None, init=False, repr=False)
    _client: PostClient = attrs.field(init=False, repr=False)
    _subs: dict[str, HttpSubscription] = attrs.field(factory=dict, init=False, repr=False)
    _retry_send: trio.MemorySendChannel[_Retry] | None = attrs.field(default=None, init=False, repr=False)
    _blacklist: dict[str, float] = attrs.field(factory=dict, init=False, repr=False)
    _pending: int = attrs.field(default=0, init=False, repr=False)
    _idle: trio.Event = attrs.field(factory=trio.Event, init=False, repr=False)
    _counts: dict[str, int] = attrs.field(factory=dict, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._client = PostClient(connect_timeout=self.connect_timeout)
        self._idle.set()
        self._counts = dict.fromkeys(attrs.fields_dict(HttpBrokerStats), 0)

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        """The bound ``host:port`` once open (the configured address before)."""
        return self._bound or self._address

    @property
    def stats(self) -> HttpBrokerStats:
        return HttpBrokerStats(**self._counts)

    def use_registry(self, registry: Registry) -> None:
        """Use ``registry`` unless one was given already (Service calls this with its own)."""
        if self.registry is None and not self.is_open:
            self.registry = registry

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        """Registry (if we create it), listeners, selector and POST client around one nursery (retry
        loop, registrar, accept loops, connections); on the way out the nursery is cancelled first,
        then subscriptions are deregistered (``_shutdown``) and the rest closes in reverse."""
        if self.is_open:
            raise BrokerError("http broker is already open")
        from ..selector.cache import CachingSelector
        from ..transport.http import split_address

        async with AsyncExitStack() as stack:
            if self.registry is None:
                options = self.options
                if options is None:
                    from ..config import Options

                    options = Options()
                self.registry = _plugins.create("registry", options.registry, options)
                await stack.enter_async_context(self.registry)
            assert self.registry is not None
            try:
                host, port = split_address(self._address)
                listeners = await trio.open_tcp_listeners(port, host=host or None)
            except (ValueError, OSError) as exc:
                raise BrokerError(f"http broker: cannot listen on {self._address}: {exc}") from exc
            for listener in listeners:
                stack.push_async_callback(listener.aclose)
            bound_host, bound_port = listeners[0].socket.getsockname()[:2]
            if bound_host in ("0.0.0.0", "::", ""):
                bound_host = "127.0.0.1"
            self._bound = (
                f"[{bound_host}]:{bound_port}" if ":" in bound_host else f"{bound_host}:{bound_port}"
            )
            self._selector = await stack.enter_async_context(
                CachingSelector(self.registry, ttl=self.cache_ttl, lookup_timeout=self.registry_timeout)
            )
            stack.push_async_callback(self._client.aclose)
            stack.push_async_callback(self._shutdown)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                send, receive = trio.open_memory_channel[_Retry](self.retry_queue_size)
                self._retry_send = send
                nursery.start_soon(self._retry_loop, receive)
                nursery.start_soon(self._registrar)
                for listener in listeners:
                    nursery.start_soon(self._accept_loop, listener, nursery)
                log.debug("http broker listening on %s", self._bound)
                try:
                    yield
                finally:
                    nursery.cancel_scope.cancel()

    async def _shutdown(self) -> None:
        """Runs after the nursery is cancelled: deregister every subscription, count unsent retries."""
        self._nursery = None
        if self._retry_send is not None:
            self._retry_send.close()
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self.registry_timeout):
                for sub in list(self._subs.values()):
                    sub.active = False
                    await self._deregister(sub)
        self._subs.clear()
        if self._pending:
            self._counts["dropped"] += self._pending
            log.warning("http broker closing: %d queued deliveries dropped", self._pending)
            self._pending = 0
            self._idle.set()

    async def wait_idle(self) -> None:
        """Wait until the retry queue is empty (each queued delivery was made or dropped)."""
        await self._idle.wait()

    # -- subscribing ------------------------------------------------------------------------------
    async def subscribe(
        self, topic: str, handler: Handler, *, queue: str | None = None, auto_ack: bool = True
    ) -> HttpSubscription:
        """Register ``handler`` for ``topic`` (live when this returns). ``auto_ack`` has no effect."""
        if not self.is_open or self.registry is None:
            raise BrokerError("http broker is not open; use `async with broker:`")
        if not topic:
            raise BrokerError("empty topic")
        node_id = f"{topic}-{uuid.uuid4()}"
        record = broker_record(topic, node_id, self._bound, queue)
        sub = HttpSubscription(topic, queue, node_id, handler, record, self)
        self._subs[node_id] = sub
        try:
            with trio.fail_after(self.registry_timeout):
                await self.registry.register(record, ttl=self.register_ttl)
        except (RegistryError, trio.TooSlowError) as exc:
            del self._subs[node_id]
            raise BrokerError(f"http broker: cannot register subscription to {topic!r}: {exc}") from exc
        return sub

    async def _unsubscribe(self, sub: HttpSubscription) -> None:
        if self._subs.pop(sub.id, None) is None:
            await trio.lowlevel.checkpoint()
            return
        sub.active = False
        with trio.CancelScope(shield=True), trio.move_on_after(self.registry_timeout):
            await self._deregister(sub)

    async def _deregister(self, sub: HttpSubscription) -> None:
        assert self.registry is not None
        try:
            await self.registry.deregister(sub.record)
        except RegistryError as exc:
            log.warning("http broker: deregister %s failed: %s", sub.id, exc)

    async def _registrar(self) -> None:
        """Refresh every subscription's record before its TTL lapses (Go: every 30 s, TTL 1 min)."""
        assert self.registry is not None
        while True:
            await trio.sleep(self.register_interval)
            for sub in list(self._subs.values()):
                try:
                    with trio.fail_after(self.registry_timeout):
                        await self.registry.register(sub.record, ttl=self.register_ttl)
                except (RegistryError, trio.TooSlowError) as exc:
                    log.warning("http broker: re-register %s failed (will retry): %s", sub.id, exc)

    # -- serving ----------------------------------------------------------------------------------
    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except trio.ClosedResourceError:
                return
            except OSError as exc:
                log.error("http broker: accept failed (%s); retrying", exc)
                await trio.sleep(0.1)
                continue
            nursery.start_soon(self._connection, stream)

    async def _connection(self, stream: trio.SocketStream) -> None:
        async with stream:
            await serve_connection(stream, self._dispatch, self.limits, self._rejected)

    def _rejected(self, status: int) -> None:
        self._counts["rejected"] += 1
        log.info("http broker: rejected a malformed request: %d", status)

    async def _dispatch(self, method: str, target: str, body: bytes) -> tuple[int, bytes]:
        decision = route_request(method, target, body)
        if not isinstance(decision, Accepted):
            self._counts["rejected"] += 1
            log.info("http broker: rejected %s %s: %d", method, target[:80], decision.status)
            return decision.status, decision.body
        if decision.node_id is None:
            subs = [s for s in self._subs.values() if s.topic == decision.topic]
        else:
            sub = self._subs.get(decision.node_id)
            subs = [sub] if sub is not None and sub.topic == decision.topic else []
        for sub in subs:
            self._counts["received"] += 1
            message = BrokerMessage(dict(decision.message.header), decision.message.body)
            try:
                await sub.handler(HttpEvent(decision.topic, message))
            except Exception:
                self._counts["handler_errors"] += 1
                log.exception("http broker: subscriber of %r raised", decision.topic)
        return 200, b""  # Go answers 200 even when the handler failed

    # -- publishing -------------------------------------------------------------------------------
    async def publish(self, topic: str, message: BrokerMessage) -> None:
        """Deliver to every broadcast subscriber and one member per queue group (see the module doc).
        BrokerError if the broker is closed or the registry cannot be read."""
        if not self.is_open:
            raise BrokerError("http broker is not open; use `async with broker:`")
        header = dict(message.header)
        header[MICRO_TOPIC] = topic
        body = encode_envelope(BrokerMessage(header, message.body))
        targets = await self._targets(topic)
        self._counts["published"] += 1
        if not targets:
            log.debug("http broker: no subscribers for %r", topic)
            return
        if len(targets) == 1:
            await self._deliver(topic, body, targets[0])
            return
        async with trio.open_nursery() as nursery:
            for target in targets:
                nursery.start_soon(self._deliver, topic, body, target)

    async def _targets(self, topic: str) -> list[Target]:
        out: list[Target] = []
        for name, legacy in ((SERVICE, False), (LEGACY_SERVICE, True)):
            services = await self._services(name)
            out += select_targets(services, topic, shuffle=self.rng, legacy=legacy)
        return out

    async def _services(self, name: str) -> list[Service]:
        captured: list[Service] = []

        def grab(services: list[Service]) -> list[Service]:
            captured.extend(services)
            return services

        try:
            await self._selector.select(name, filters=[grab])
        except ServiceNotFound:
            pass
        except RegistryError as exc:
            raise BrokerError(f"http broker: cannot look up subscribers: {exc}") from exc
        return captured

    def _blacklisted(self, node: Node) -> bool:
        until = self._blacklist.get(node.id)
        if until is None:
            return False
        if until <= trio.current_time():
            del self._blacklist[node.id]
            return False
        return True

    async def _post(self, topic: str, body: bytes, node: Node, legacy: bool) -> bool:
        try:
            status, reply = await self._client.post(
                node.address, target_path(node.id, legacy=legacy), body, limit=self.publish_timeout
            )
        except BrokerError as exc:
            self._counts["errors"] += 1
            self._blacklist[node.id] = trio.current_time() + self.blacklist_for
            log.info("http broker: delivery of %r to %s failed: %s", topic, node.id, exc)
            return False
        if status != 200:
            self._counts["errors"] += 1
            log.warning(
                "http broker: %s answered %d for %r: %s",
                node.id,
                status,
                topic,
                reply[:200].decode("utf-8", "replace"),
            )
            return False
        self._blacklist.pop(node.id, None)
        self._counts["delivered"] += 1
        return True

    async def _try_nodes(self, topic: str, body: bytes, nodes: Sequence[Node], legacy: bool) -> bool:
        """Try candidates in order, healthy ones first; True once one took the message."""
        ordered = [n for n in nodes if not self._blacklisted(n)] + [n for n in nodes if self._blacklisted(n)]
        for i, node in enumerate(ordered):
            if i:
                self._counts["failed_over"] += 1
            if await self._post(topic, body, node, legacy):
                return True
        return False

    async def _deliver(self, topic: str, body: bytes, target: Target) -> None:
        if target.group == BROADCAST:
            node = target.nodes[0]
            # A broadcast node that just failed goes straight to the retry queue: no publisher stall.
            if not self._blacklisted(node) and await self._post(topic, body, node, target.legacy):
                return
            self._enqueue(_Retry(topic, body, target.group, node.id, target.legacy, 1, 0.0))
            return
        if await self._try_nodes(topic, body, target.nodes, target.legacy):
            return
        self._enqueue(_Retry(topic, body, target.group, None, target.legacy, 1, 0.0))

    # -- retries ----------------------------------------------------------------------------------
    def _drop(self, item: _Retry, why: str) -> None:
        self._counts["dropped"] += 1
        who = item.node_id or f"queue {item.group!r}"
        log.warning("http broker: dropped a message on %r for %s: %s", item.topic, who, why)

    def _enqueue(self, item: _Retry) -> None:
        if item.attempts >= self.max_attempts:
            self._drop(item, f"{item.attempts} attempts failed")
            return
        item.due = trio.current_time() + backoff(item.attempts, self.retry_backoff, self.retry_backoff_max)
        if self._retry_send is None:
            self._drop(item, "broker closed")
            return
        try:
            self._retry_send.send_nowait(item)
        except trio.WouldBlock:
            self._drop(item, f"retry queue full ({self.retry_queue_size})")
            return
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self._drop(item, "broker closed")
            return
        self._pending += 1
        self._idle = trio.Event() if self._idle.is_set() else self._idle

    async def _retry_loop(self, receive: trio.MemoryReceiveChannel[_Retry]) -> None:
        async with receive:
            async for item in receive:
                await trio.sleep_until(item.due)
                self._pending -= 1
                try:
                    await self._retry(item)
                except BrokerError as exc:
                    item.attempts += 1
                    log.info("http broker: retry lookup failed: %s", exc)
                    self._enqueue(item)
                if self._pending == 0:
                    self._idle.set()

    async def _retry(self, item: _Retry) -> None:
        self._counts["retried"] += 1
        services = await self._services(LEGACY_SERVICE if item.legacy else SERVICE)
        targets = [
            t
            for t in select_targets(services, item.topic, shuffle=self.rng, legacy=item.legacy)
            if t.group == item.group
        ]
        if item.node_id is not None:
            nodes = [n for t in targets for n in t.nodes if n.id == item.node_id]
            if not nodes:
                self._drop(item, "the subscriber is gone from the registry")
                return
            ok = await self._post(item.topic, item.body, nodes[0], item.legacy)
        else:
            members = [n for t in targets for n in t.nodes]
            if not members:
                self._drop(item, "no member of the queue group is registered")
                return
            ok = await self._try_nodes(item.topic, item.body, members, item.legacy)
        if not ok:
            item.attempts += 1
            self._enqueue(item)


def from_options(options: Any) -> HttpBroker:
    """An http broker on ``--broker_address`` (default ``127.0.0.1:0``); its registry is injected by the
    service, else created from ``options`` when it opens."""
    addresses: list[str] = list(getattr(options, "broker_address", None) or [])
    return HttpBroker(address=addresses[0] if addresses else "127.0.0.1:0", options=options)
