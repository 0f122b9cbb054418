"""etcd registry in Go Micro's layout, so Go Micro services and trimicro services see each other.

Layout (go-micro ``registry/etcd``): each node is one key ``/micro/registry/<service>/<node-id>`` (``/``
in either part becomes ``-``) holding the Service JSON with exactly that node, attached to a lease of
``ttl`` seconds. Lookups are prefix reads; watches are etcd watches with ``prev_kv`` so that deletes
(including lease expiry) still say which node went.

Unlike Go Micro, the registry keeps its registrations alive by itself: a keep-alive task in the
registry's own nursery refreshes each lease every ``ttl/3`` and, when a lease is gone (expired during an
outage, or etcd lost its data), grants a new one and writes the record again. So services come back
after an etcd outage without anyone calling ``register`` again.
"""

from __future__ import annotations

import logging
import math
import os
import posixpath
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import attrs
import trio

from .._lifecycle import NurseryOwner
from ..errors import RegistryError
from ._base import Watcher
from ._etcd_client import EtcdClient, EtcdWatch
from ._etcd_proto import EtcdCompacted, KeyValue, WatchEvent
from ._model import Node, Result, Service

__all__ = ["PREFIX", "EtcdRegistry", "EtcdWatcher", "from_options", "node_path", "service_path"]

log = logging.getLogger("trimicro.registry.etcd")

PREFIX = "/micro/registry/"
DEFAULT_ADDRESS = "127.0.0.1:2379"
_RETRY = 0.5  # seconds between keep-alive attempts while etcd is unreachable (capped at ttl/3)


def service_path(name: str) -> str:
    """``/micro/registry/<service>`` as Go Micro's ``servicePath`` builds it (``path.Join``)."""
    return posixpath.normpath(posixpath.join(PREFIX, name.replace("/", "-")))


def node_path(service: str, node_id: str) -> str:
    """``/micro/registry/<service>/<node-id>`` as Go Micro's ``nodePath`` builds it."""
    return posixpath.normpath(posixpath.join(PREFIX, service.replace("/", "-"), node_id.replace("/", "-")))


def _decode(value: bytes, key: bytes) -> Service | None:
    """The Service stored under ``key``, or None (logged) when it is not Go Micro's JSON."""
    try:
        service = Service.from_json(value)
    except (ValueError, TypeError, AttributeError) as exc:
        log.debug("ignoring undecodable registry record %r: %s", key, exc)
        return None
    return service


def _from_key(key: bytes) -> Service | None:
    """Best effort for a delete whose previous value etcd no longer has: name and node id from the key."""
    text = key.decode("utf-8", "replace")
    if not text.startswith(PREFIX):
        return None
    name, _, node_id = text[len(PREFIX) :].partition("/")
    return Service(name=name, nodes=(Node(id=node_id, address=""),)) if node_id else None


def _to_result(event: WatchEvent) -> Result | None:
    if event.type == "put":
        service = _decode(event.kv.value, event.kv.key)
        action: Any = "create" if event.is_create else "update"
    else:
        prev = event.prev_kv
        service = _decode(prev.value, prev.key) if prev is not None else _from_key(event.kv.key)
        action = "delete"
    return None if service is None else Result(action=action, service=service)


def _group(kvs: Sequence[KeyValue]) -> list[Service]:
    """Records -> one Service per (name, version) carrying all its nodes, in first-seen order."""
    groups: dict[tuple[str, str], tuple[Service, list[Node]]] = {}
    for kv in kvs:
        one = _decode(kv.value, kv.key)
        if one is None:
            continue
        key = (one.name, one.version)
        if key not in groups:
            groups[key] = (one, [])
        groups[key][1].extend(one.nodes)
    return [attrs.evolve(first, nodes=tuple(nodes)) for first, nodes in groups.values()]


@attrs.define(eq=False)
class _Registration:
    """What we keep for one registered node, so the keep-alive task can restore it."""

    key: str
    value: bytes
    ttl: int  # whole seconds; 0 = no lease (never expires)
    lease: int = 0
    due: float = math.inf  # trio time of the next refresh
    healthy: bool = True  # False after a failed refresh: verify the record once etcd answers again
    lock: trio.Lock = attrs.field(factory=trio.Lock)


@attrs.define(eq=False)
class EtcdWatcher:
    """Registry events from an etcd watch; an async iterator of :class:`Result`.

    If the stream breaks, the watcher resumes once from the next revision; when that fails (etcd still
    down, or the history was compacted) iteration ends, which tells the caller to re-list and re-watch.
    """

    _client: EtcdClient
    _prefix: str
    _watch: EtcdWatch | None
    _just_resumed: bool = False  # a resumed stream that fails before any event is not resumed again

    def __aiter__(self) -> AsyncIterator[Result]:
        return self

    async def __anext__(self) -> Result:
        while True:
            if self._watch is None:
                raise StopAsyncIteration
            try:
                event = await self._watch.__anext__()
            except EtcdCompacted:
                await self.aclose()
                raise StopAsyncIteration from None
            except RegistryError as exc:
                if self._just_resumed:
                    log.info("etcd watch on %s failed again (%s); ending it", self._prefix, exc)
                    await self.aclose()
                    raise StopAsyncIteration from None
                log.info("etcd watch on %s broke (%s); resuming", self._prefix, exc)
                self._just_resumed = True
                await self._resume()
                continue
            self._just_resumed = False
            result = _to_result(event)
            if result is not None:
                return result

    async def _resume(self) -> None:
        broken, self._watch = self._watch, None
        if broken is None:
            return
        await broken.aclose()
        try:
            self._watch = await self._client.open_watch(
                self._prefix, prefix=True, start_revision=broken.revision + 1, prev_kv=True
            )
        except RegistryError as exc:
            log.info("etcd watch on %s not resumed (%s); ending it", self._prefix, exc)

    async def aclose(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            await watch.aclose()


@attrs.define(eq=False)
class EtcdRegistry(NurseryOwner):
    """Go Micro's etcd registry on trio; ``async with`` it to run its keep-alive task.

    ``addresses`` are etcd client endpoints (``host:port``, ``http://...``, ``https://...``), tried in
    order on connection errors. Every call is bounded by ``timeout`` and raises RegistryError.
    """

    addresses: Sequence[str] = (DEFAULT_ADDRESS,)
    timeout: float = 10.0
    username: str = ""
    password: str = ""
    ssl_context: ssl.SSLContext | None = None
    name: str = "etcd"
    _client: EtcdClient | None = attrs.field(default=None, init=False)
    _registrations: dict[str, _Registration] = attrs.field(factory=dict, init=False)
    _changed: trio.Event = attrs.field(factory=trio.Event, init=False)

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        """The etcd client and the keep-alive task; leaving forgets the registrations (their leases
        run out by themselves) and closes the client's pooled connections."""
        client = EtcdClient(
            list(self.addresses) or [DEFAULT_ADDRESS],
            timeout=self.timeout,
            username=self.username,
            password=self.password,
            ssl_context=self.ssl_context,
        )
        self._client = client
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._keepalive_loop)
                try:
                    yield
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            self._client = None
            self._registrations.clear()
            with trio.CancelScope(shield=True):
                await client.aclose()

    @property
    def client(self) -> EtcdClient:
        """The underlying etcd client (only inside ``async with``)."""
        if self._client is None:
            raise RegistryError("EtcdRegistry used outside `async with registry:`")
        return self._client

    # ---- Registry -------------------------------------------------------------------------------

    async def register(self, service: Service, *, ttl: float | None = None) -> None:
        client = self.client
        if not service.nodes:
            raise RegistryError(f"register {service.name!r}: at least one node is required")
        seconds = max(1, math.ceil(ttl)) if ttl and ttl > 0 else 0
        for node in service.nodes:
            key = node_path(service.name, node.id)
            value = attrs.evolve(service, nodes=(node,)).to_json().encode()
            rec = self._registrations.get(key) or _Registration(key, value, seconds)
            async with rec.lock:
                changed = key not in self._registrations or rec.value != value or rec.ttl != seconds
                stale_lease = rec.lease if rec.ttl != seconds else 0
                if stale_lease:
                    rec.lease = 0
                rec.value, rec.ttl = value, seconds
                await self._sync(client, rec, changed=changed, verify=True)
                self._registrations[key] = rec
            if stale_lease:
                await self._revoke_quietly(client, stale_lease)
        self._wake()

    async def deregister(self, service: Service) -> None:
        client = self.client
        for node in service.nodes:
            key = node_path(service.name, node.id)
            rec = self._registrations.pop(key, None)
            lease = 0
            if rec is not None:
                async with rec.lock:  # let an in-flight refresh finish so it cannot re-put the key
                    lease, rec.lease = rec.lease, 0
            await client.delete(key)
            if lease:
                await self._revoke_quietly(client, lease)
        self._wake()

    async def get_service(self, name: str) -> list[Service]:
        rsp = await self.client.range(service_path(name) + "/", prefix=True, serializable=True)
        return _group(rsp.kvs)

    async def list_services(self) -> list[Service]:
        rsp = await self.client.range(PREFIX, prefix=True, serializable=True)
        return sorted(_group(rsp.kvs), key=lambda s: s.name)

    def watch(self, service: str | None = None) -> AbstractAsyncContextManager[Watcher]:
        return self._watch(service)

    @asynccontextmanager
    async def _watch(self, service: str | None) -> AsyncIterator[Watcher]:
        client = self.client
        prefix = service_path(service) + "/" if service else PREFIX
        watcher = EtcdWatcher(client, prefix, await client.open_watch(prefix, prefix=True, prev_kv=True))
        try:
            yield watcher
        finally:
            with trio.CancelScope(shield=True):
                await watcher.aclose()

    # ---- keeping registrations alive ------------------------------------------------------------

    def _wake(self) -> None:
        self._changed.set()

    async def _sync(self, client: EtcdClient, rec: _Registration, *, changed: bool, verify: bool) -> None:
        """Make etcd hold ``rec.value`` at ``rec.key`` under a live lease (call with ``rec.lock``)."""
        if rec.ttl:
            left = await client.lease_keepalive_once(rec.lease) if rec.lease else 0
            if left <= 0:
                if rec.lease:
                    log.info("etcd lease for %s is gone; registering it again", rec.key)
                rec.lease = await client.lease_grant(rec.ttl)
                changed = True
        if not changed and verify:
            found = (await client.range(rec.key)).kvs
            changed = not found or found[0].value != rec.value or found[0].lease != rec.lease
            if changed:
                log.info("etcd record %s was missing or altered; writing it again", rec.key)
        if changed:
            await client.put(rec.key, rec.value, lease=rec.lease)
        rec.healthy = True
        rec.due = trio.current_time() + rec.ttl / 3 if rec.ttl else math.inf

    async def _refresh(self, client: EtcdClient, rec: _Registration) -> None:
        async with rec.lock:
            if self._registrations.get(rec.key) is not rec:
                return  # deregistered meanwhile
            try:
                await self._sync(client, rec, changed=False, verify=not rec.healthy)
            except RegistryError as exc:
                if rec.healthy:
                    log.warning("etcd keep-alive for %s failed: %s", rec.key, exc)
                rec.healthy = False
                rec.due = trio.current_time() + min(_RETRY, rec.ttl / 3)

    async def _keepalive_loop(self) -> None:
        client = self.client
        while True:
            now = trio.current_time()
            due = [r for r in self._registrations.values() if r.due <= now]
            if due:
                async with trio.open_nursery() as nursery:
                    for rec in due:
                        nursery.start_soon(self._refresh, client, rec)
            next_due = min((r.due for r in self._registrations.values()), default=math.inf)
            if next_due > trio.current_time():
                self._changed = trio.Event()
                with trio.move_on_at(next_due):
                    await self._changed.wait()

    async def _revoke_quietly(self, client: EtcdClient, lease: int) -> None:
        try:
            await client.lease_revoke(lease)
        except RegistryError as exc:  # the lease expires by itself anyway
            log.debug("etcd lease revoke %d failed: %s", lease, exc)


def from_options(options: Any) -> EtcdRegistry:
    """Registry plugin ``etcd``: ``--registry_address``, ``--registry_timeout``, username/password.

    Like Go Micro, ``ETCD_USERNAME``/``ETCD_PASSWORD`` apply when no credentials were configured.
    """
    username = options.registry_username or os.environ.get("ETCD_USERNAME", "")
    password = options.registry_password or os.environ.get("ETCD_PASSWORD", "")
    return EtcdRegistry(
        addresses=list(options.registry_address) or [DEFAULT_ADDRESS],
        timeout=options.registry_timeout,
        username=username,
        password=password,
    )
