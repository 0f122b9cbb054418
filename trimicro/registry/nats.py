"""NATS registry in Go Micro v5's ``registry/nats`` protocol: no central store, every process answers.

There is no server-side state. A process holds its own registrations in memory and subscribes to the
query subject; a lookup is a broadcast survey whose answers are collected for a short window. Wire
facts (go-micro v5 ``registry/nats``), all JSON from Go's ``encoding/json``:

- **query** (``micro.nats.query``): a lookup publishes ``{"Service": {...}, "Action": "get"}`` (only
  ``name`` set) or ``{"Service": null, "Action": "list"}`` with a fresh ``_INBOX.*`` reply subject.
  Every registry that holds a matching registration publishes each matching service version (a
  Service record with its nodes) to that reply subject, one message per version. The asker merges
  answers by name and version for ``query_timeout`` seconds (Go: 100 ms), or until a version has
  ``quorum`` nodes.
- **watch** (``micro.nats.watch``): ``register`` publishes ``{"Service": s, "Action": "create"}`` (the
  register action; Go's ``RegisterAction`` option), ``deregister`` the same with ``"delete"``. Watchers
  subscribe to it; there is no replay, so a watcher sees only what happens while it listens.
- **liveness**: there are no TTLs in Go's nats registry and none here: ``register(ttl=)`` is accepted
  and ignored. A registration lives as long as the process that made it is connected and answering:
  a process that dies stops answering queries at once (its subscription goes with its connection). A
  process that dies without deregistering sends no ``delete`` event, so watchers (and caches built on
  them) keep its nodes until their own refresh re-queries.

Across a nats-server restart the client reconnects and re-subscribes, so registrations keep being
answered and watches keep delivering (events published during the outage are lost, as in Go).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import attrs
import trio

from .._lifecycle import NurseryOwner
from .._nats import nats_servers, open_nats
from ..broker._nats_client import NatsClient, NatsSubscription
from ..errors import BrokerError, RegistryError
from ._base import Watcher
from ._model import Node, Result, Service

__all__ = [
    "QUERY_TOPIC",
    "WATCH_TOPIC",
    "NatsRegistry",
    "NatsWatcher",
    "decode_result",
    "encode_result",
    "from_options",
]

log = logging.getLogger("trimicro.registry.nats")

QUERY_TOPIC = "micro.nats.query"
WATCH_TOPIC = "micro.nats.watch"
_ACTIONS = frozenset({"create", "update", "delete"})


def encode_result(action: str, service: Service | None) -> bytes:
    """``json.Marshal(&registry.Result{Action, Service})`` as Go writes it (field names capitalised)."""
    return json.dumps(
        {"Service": service.to_dict() if service is not None else None, "Action": action},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")


def decode_result(data: bytes) -> tuple[str, Service | None]:
    """``(action, service)`` from a query or watch message; keys match case-insensitively as in Go.
    ValueError when it is not a Result object."""
    try:
        obj = json.loads(data)
    except RecursionError:
        raise ValueError("registry result nests too deep") from None
    if not isinstance(obj, dict):
        raise ValueError("registry result is not a JSON object")
    fields = {str(k).lower(): v for k, v in obj.items()}
    action = fields.get("action")
    if not isinstance(action, str):
        raise ValueError("registry result has no Action")
    raw = fields.get("service")
    if raw is None:
        return action, None
    if not isinstance(raw, dict):
        raise ValueError("registry result Service is not an object")
    try:
        return action, Service.from_dict(raw)
    except (TypeError, AttributeError, RecursionError) as exc:
        raise ValueError(f"registry result Service is malformed: {exc}") from None


def _decode_service(data: bytes) -> Service | None:
    try:
        obj = json.loads(data)
        return Service.from_dict(obj) if isinstance(obj, dict) else None
    except (ValueError, TypeError, AttributeError, RecursionError):
        return None


def _merge_nodes(old: Iterable[Node], new: Iterable[Node]) -> tuple[Node, ...]:
    """Go's ``addNodes``: a node with a known id replaces it, others are appended."""
    nodes = {n.id: n for n in old}
    for node in new:
        nodes[node.id] = node
    return tuple(nodes.values())


@attrs.define(eq=False)
class NatsWatcher:
    """Create/update/delete events from the watch subject, for one service or all."""

    _sub: NatsSubscription
    _service: str | None

    def __aiter__(self) -> AsyncIterator[Result]:
        return self

    async def __anext__(self) -> Result:
        while True:
            try:
                msg = await self._sub.next()
            except trio.EndOfChannel:
                raise StopAsyncIteration from None
            try:
                action, service = decode_result(msg.payload)
            except ValueError as exc:
                log.debug("nats registry: undecodable watch event skipped: %s", exc)
                continue
            if service is None or action not in _ACTIONS:
                continue  # Go's "put"/custom register actions have no Result meaning here
            if self._service is not None and service.name != self._service:
                continue
            return Result(action=action, service=service)  # type: ignore[arg-type]


@attrs.define(eq=False)
class NatsRegistry(NurseryOwner):
    """Go Micro's nats registry on trio; ``async with`` it to connect (and to answer queries).

    ``servers`` are NATS addresses (``host:port`` or ``nats://host:port``). ``query_timeout`` is the
    survey window of a lookup (Go's registry ``Timeout``, 100 ms); ``quorum`` > 0 ends it early once a
    version has that many nodes (Go's ``Quorum`` option).
    """

    servers: Sequence[str] = attrs.field(default=(), converter=nats_servers)
    query_timeout: float = 0.1
    quorum: int = 0
    query_topic: str = QUERY_TOPIC
    watch_topic: str = WATCH_TOPIC
    register_action: str = "create"
    timeout: float = 10.0  # bound on waiting for the server to confirm a subscription
    connect_attempts: int = 4
    client_options: dict[str, Any] = attrs.field(factory=dict)
    name: str = attrs.field(default="nats", init=False)
    _client: NatsClient | None = attrs.field(default=None, init=False, repr=False)
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False, repr=False)
    _answering: bool = attrs.field(default=False, init=False, repr=False)
    _services: dict[tuple[str, str], Service] = attrs.field(factory=dict, init=False, repr=False)

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        if self._client is not None:  # entered again (shared by several services): share the connection
            yield
            return
        async with open_nats(
            self.servers, error=RegistryError, attempts=self.connect_attempts, **self.client_options
        ) as client:
            async with trio.open_nursery() as nursery:
                self._client, self._nursery = client, nursery
                try:
                    yield
                finally:
                    self._client = self._nursery = None
                    self._answering = False
                    self._services.clear()
                    nursery.cancel_scope.cancel()

    @property
    def client(self) -> NatsClient:
        """The NATS connection (only inside ``async with``)."""
        if self._client is None:
            raise RegistryError("NatsRegistry used outside `async with registry:`")
        return self._client

    # ---- answering other processes' queries -------------------------------------------------------

    async def _start_answering(self, client: NatsClient) -> None:
        if self._answering:
            return
        assert self._nursery is not None
        try:
            sub = await client.subscribe(self.query_topic)
        except (BrokerError, ValueError) as exc:
            raise RegistryError(f"nats registry: cannot subscribe to {self.query_topic!r}: {exc}") from None
        self._answering = True
        self._nursery.start_soon(self._answer, client, sub)
        # Lookups from others must find us as soon as register returns: wait until the server has
        # the subscription (while disconnected it is sent on reconnect; do not fail for that).
        with trio.move_on_after(self.timeout):
            try:
                await client.flush()
            except BrokerError as exc:
                log.debug("nats registry: query subscription pending reconnect: %s", exc)

    async def _answer(self, client: NatsClient, sub: NatsSubscription) -> None:
        async for msg in sub:
            if not msg.reply:
                continue
            try:
                action, asked = decode_result(msg.payload)
            except ValueError as exc:
                log.debug("nats registry: undecodable query skipped: %s", exc)
                continue
            if action == "get" and asked is not None:
                answers = [s for (n, _), s in self._services.items() if n == asked.name]
            elif action == "list":
                answers = list(self._services.values())
            else:
                continue
            for service in answers:
                try:
                    await client.publish(msg.reply, service.to_json().encode("utf-8"))
                except (BrokerError, ValueError) as exc:
                    log.debug("nats registry: cannot answer query: %s", exc)
                    break

    # ---- Registry ---------------------------------------------------------------------------------

    async def register(self, service: Service, *, ttl: float | None = None) -> None:
        """Hold ``service``'s nodes and announce them; ``ttl`` is ignored (see the module doc)."""
        client = self.client
        if not service.nodes:
            raise RegistryError(f"register {service.name!r}: at least one node is required")
        key = (service.name, service.version)
        old = self._services.get(key)
        nodes = _merge_nodes(old.nodes if old is not None else (), service.nodes)
        self._services[key] = attrs.evolve(service, nodes=nodes)
        await self._start_answering(client)
        await self._publish(client, self.register_action, service)

    async def deregister(self, service: Service) -> None:
        client = self.client
        key = (service.name, service.version)
        old = self._services.get(key)
        if old is not None:
            gone = {n.id for n in service.nodes}
            nodes = tuple(n for n in old.nodes if n.id not in gone)
            if nodes:
                self._services[key] = attrs.evolve(old, nodes=nodes)
            else:
                del self._services[key]
        await self._publish(client, "delete", service)

    async def _publish(self, client: NatsClient, action: str, service: Service) -> None:
        try:
            await client.publish(self.watch_topic, encode_result(action, service))
        except (BrokerError, ValueError) as exc:
            raise RegistryError(
                f"nats registry: cannot publish {action} of {service.name!r}: {exc}"
            ) from None

    async def get_service(self, name: str) -> list[Service]:
        services = await self._query("get", name)
        return [s for s in services if s.name == name]

    async def list_services(self) -> list[Service]:
        return sorted(await self._query("list", ""), key=lambda s: (s.name, s.version))

    async def _query(self, action: str, name: str) -> list[Service]:
        client = self.client
        if not client.connected:
            raise RegistryError(f"nats registry: not connected to NATS ({', '.join(self.servers)})")
        inbox = "_INBOX." + secrets.token_hex(11)
        try:
            sub = await client.subscribe(inbox)
        except BrokerError as exc:
            raise RegistryError(f"nats registry: {exc}") from None
        groups: dict[tuple[str, str], Service] = {}
        try:
            try:
                await client.publish(
                    self.query_topic, encode_result(action, Service(name) if name else None), reply=inbox
                )
            except (BrokerError, ValueError) as exc:
                raise RegistryError(f"nats registry: cannot query {name or 'services'}: {exc}") from None
            with trio.move_on_after(self.query_timeout):
                async for msg in sub:
                    service = _decode_service(msg.payload)
                    if service is None or not service.name:
                        continue
                    key = (service.name, service.version)
                    old = groups.get(key)
                    if old is not None:
                        service = attrs.evolve(old, nodes=_merge_nodes(old.nodes, service.nodes))
                    groups[key] = service
                    if self.quorum > 0 and len(service.nodes) >= self.quorum:
                        break
        finally:
            with trio.CancelScope(shield=True):
                await sub.unsubscribe()
        return list(groups.values())

    def watch(self, service: str | None = None) -> AbstractAsyncContextManager[Watcher]:
        return self._watch(service)

    @asynccontextmanager
    async def _watch(self, service: str | None) -> AsyncIterator[Watcher]:
        client = self.client
        try:
            sub = await client.subscribe(self.watch_topic)
        except (BrokerError, ValueError) as exc:
            raise RegistryError(f"nats registry: cannot watch: {exc}") from None
        try:
            with trio.move_on_after(self.timeout):
                try:
                    await client.flush()  # events published after this returns are seen
                except BrokerError as exc:
                    log.debug("nats registry: watch subscription pending reconnect: %s", exc)
            yield NatsWatcher(sub, service)
        finally:
            with trio.CancelScope(shield=True):
                await sub.unsubscribe()


def from_options(options: Any) -> NatsRegistry:
    """Registry plugin ``nats``: ``--registry_address`` (default ``127.0.0.1:4222``)."""
    return NatsRegistry(servers=list(options.registry_address), timeout=options.registry_timeout)
