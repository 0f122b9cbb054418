"""ZooKeeper registry in Go Micro's layout (go-plugins ``registry/zookeeper``), so both see each other.

Layout: each node is one znode ``/micro-registry/<service>/<node-id>`` (``/`` in either part becomes
``-``) holding the Service JSON with exactly that node; ``/micro-registry`` and the service znodes are
persistent and empty. Lookups list the service's children and read each; a child that has children
of its own is skipped, as Go does.

Unlike Go's plugin, which creates the node znodes persistent (a crashed node stays listed until
someone deletes it), trimicro creates them *ephemeral*: they live as long as the registry's ZooKeeper
session, so a crashed process disappears when its session expires (the session timeout, by default
``registry_timeout``), and a clean shutdown (closeSession) removes them at once. Go reads them the
same way. ``register``'s ``ttl`` has no ZooKeeper meaning and is not used.

The client keeps the session across connection losses (reconnecting with the session id and
password) and, if the session expires anyway, re-creates every node it registered in the new one; so
services come back after a ZooKeeper outage without anyone calling ``register`` again.

Watches are ZooKeeper child watches on the service znodes (and on ``/micro-registry`` when watching
everything) plus a data watch per node, re-armed each time they fire; the watcher keeps what it has
seen and emits the difference, so events are create/update/delete of one node each, and after a
reconnection a full re-read catches what changed while it was away.
"""

from __future__ import annotations

import logging
import posixpath
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal

import attrs
import trio

from .._lifecycle import NurseryOwner
from .._util import collapse_excgroups
from ..errors import RegistryError
from . import _zk_proto as p
from ._base import Watcher
from ._model import Node, Result, Service
from ._zk_client import WatchQueue, ZkClient

__all__ = ["PREFIX", "ZookeeperRegistry", "ZookeeperWatcher", "from_options", "node_path", "service_path"]

log = logging.getLogger("trimicro.registry.zookeeper")

PREFIX = "/micro-registry"
DEFAULT_ADDRESS = "127.0.0.1:2181"
_RESYNC_RETRY = 0.5  # seconds between attempts to re-read a watched tree after a failed read
_BUFFER = 1024  # results a watcher may hold for a slow consumer before it stops reading events


def service_path(name: str) -> str:
    """``/micro-registry/<service>`` as Go's ``servicePath`` builds it (``path.Join``)."""
    return posixpath.normpath(posixpath.join(PREFIX, name.replace("/", "-")))


def node_path(service: str, node_id: str) -> str:
    """``/micro-registry/<service>/<node-id>`` as Go's ``nodePath`` builds it."""
    return posixpath.normpath(posixpath.join(PREFIX, service.replace("/", "-"), node_id.replace("/", "-")))


def _decode(data: bytes, path: str) -> Service | None:
    """The Service stored at ``path``, or None (logged) when it is not Go Micro's JSON."""
    try:
        service = Service.from_json(data)
    except (ValueError, TypeError, AttributeError) as exc:
        log.debug("ignoring undecodable registry record %s: %s", path, exc)
        return None
    return service


def _group(records: Sequence[Service]) -> list[Service]:
    """One-node records -> one Service per (name, version) carrying all its nodes, first-seen order."""
    groups: dict[tuple[str, str], tuple[Service, list[Node]]] = {}
    for one in records:
        key = (one.name, one.version)
        if key not in groups:
            groups[key] = (one, [])
        groups[key][1].extend(one.nodes)
    return [attrs.evolve(first, nodes=tuple(nodes)) for first, nodes in groups.values()]


async def _read_service_dir(client: ZkClient, directory: str) -> list[Service]:
    """Every decodable record under one service znode, read in parallel (one pipelined connection)."""
    try:
        children, _ = await client.get_children(directory)
    except p.ZkError as exc:
        if exc.code == p.NO_NODE:
            return []
        raise
    found: list[Service | None] = [None] * len(children)
    errors: list[RegistryError] = []

    async def read(i: int, path: str) -> None:
        try:
            data, stat = await client.get_data(path)
        except p.ZkError as exc:
            if exc.code != p.NO_NODE:  # NO_NODE: deregistered between the listing and the read
                errors.append(exc)
            return
        except RegistryError as exc:
            errors.append(exc)
            return
        if stat.num_children == 0:
            found[i] = _decode(data, path)

    async with trio.open_nursery() as nursery:
        for i, child in enumerate(sorted(children)):
            nursery.start_soon(read, i, posixpath.join(directory, child))
    if errors:  # one plain RegistryError for the caller, not an exception group
        raise errors[0]
    return [s for s in found if s is not None]


@attrs.define(eq=False)
class ZookeeperWatcher:
    """Registry events from ZooKeeper watches; an async iterator of :class:`Result`.

    Watching one service uses a child watch on its znode (an exists watch while it does not exist yet);
    watching everything adds a child watch on ``/micro-registry``. Each node gets a data watch. What
    the watcher has seen is kept, so every fired watch turns into the precise create/update/delete
    events, and a reconnection (watches lost on the server) into a full re-read and diff.
    Iteration ends when the registry closes.
    """

    _client: ZkClient
    _queue: WatchQueue
    _service: str | None  # the watched service znode, or None for every service
    _receive: trio.MemoryReceiveChannel[Result]
    _known: dict[str, dict[str, bytes]] = attrs.field(factory=dict)  # service znode -> node path -> data
    _results: deque[Result] = attrs.field(factory=deque)
    _resync: bool = False

    def __aiter__(self) -> AsyncIterator[Result]:
        return self

    async def __anext__(self) -> Result:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def pump(self, send: trio.MemorySendChannel[Result]) -> None:
        """Turn fired watches into Results as they come (promptly, so that few changes coalesce)."""
        async with send:
            while True:
                while self._results:
                    await send.send(self._results.popleft())
                if self._resync:
                    try:
                        await self._full_sync()
                        self._resync = False
                    except RegistryError as exc:
                        if not self._client.is_open:
                            return
                        log.info("zookeeper watch re-read failed (%s); retrying", exc)
                        await trio.sleep(_RESYNC_RETRY)
                    continue
                try:
                    event = await self._queue.receive()
                except RegistryError:
                    return  # the client closed
                try:
                    await self._handle(event)
                except RegistryError as exc:
                    log.info("zookeeper watch lost track (%s); re-reading", exc)
                    self._resync = True

    async def start(self) -> None:
        """Arm the watches and learn the current state (not reported: a watch reports changes)."""
        await self._full_sync(emit=False)

    # ---- reading and diffing --------------------------------------------------------------------

    def _emit(self, action: Literal["create", "update", "delete"], data: bytes, path: str) -> None:
        service = _decode(data, path)
        if service is not None:
            self._results.append(Result(action=action, service=service))

    async def _full_sync(self, *, emit: bool = True) -> None:
        if self._service is not None:
            await self._sync_dir(self._service, refresh=True, emit=emit)
            return
        await self._sync_root(emit=emit)
        for directory in list(self._known):
            await self._sync_dir(directory, refresh=True, emit=emit)

    async def _sync_root(self, *, emit: bool = True) -> None:
        q = self._queue
        try:
            dirs, _ = await self._client.get_children(PREFIX, watch=q)
        except p.ZkError as exc:
            if exc.code != p.NO_NODE:
                raise
            if await self._client.exists(PREFIX, watch=q) is not None:
                return await self._sync_root(emit=emit)  # created meanwhile
            dirs = []
        listed = {posixpath.join(PREFIX, d) for d in dirs}
        for directory in sorted(listed | set(self._known)):
            if directory not in self._known or directory not in listed:
                await self._sync_dir(directory, emit=emit)

    async def _sync_dir(self, directory: str, *, refresh: bool = False, emit: bool = True) -> None:
        q = self._queue
        gone = False
        try:
            children, _ = await self._client.get_children(directory, watch=q)
        except p.ZkError as exc:
            if exc.code != p.NO_NODE:
                raise
            children, gone = [], True
            # Watching one service that has no znode yet: learn when it appears.
            if directory == self._service and await self._client.exists(directory, watch=q) is not None:
                return await self._sync_dir(directory, refresh=refresh, emit=emit)
        known = self._known.setdefault(directory, {})
        paths = {posixpath.join(directory, c) for c in children}
        for path in sorted(set(known) - paths):
            data = known.pop(path)
            if emit:
                self._emit("delete", data, path)
        for path in sorted(paths):
            if path not in known or refresh:
                await self._sync_node(directory, path, emit=emit)
        if gone and directory != self._service:
            del self._known[directory]  # the root listing brings it back if it is created again

    async def _sync_node(self, directory: str, path: str, *, emit: bool = True) -> None:
        known = self._known.setdefault(directory, {})
        try:
            data, stat = await self._client.get_data(path, watch=self._queue)
        except p.ZkError as exc:
            if exc.code != p.NO_NODE:
                raise
            old = known.pop(path, None)
            if old is not None and emit:
                self._emit("delete", old, path)
            return
        if stat.num_children:
            return  # not a node record (Go skips these too)
        old = known.get(path)
        known[path] = data
        if emit and old is None:
            self._emit("create", data, path)
        elif emit and old != data:
            self._emit("update", data, path)

    async def _handle(self, event: p.WatcherEvent) -> None:
        path = event.path
        if event.type == p.EVENT_NONE:
            await self._full_sync()
            return
        if path == PREFIX:
            if self._service is None:
                await self._sync_root()
            return
        if path in self._known or path == self._service:
            await self._sync_dir(path)  # children changed, or the service znode came or went
            return
        directory = posixpath.dirname(path)
        known = self._known.get(directory)
        if known is None or path not in known:
            return
        if event.type == p.EVENT_NODE_DELETED:
            self._emit("delete", known.pop(path), path)
        else:
            await self._sync_node(directory, path)


@attrs.define(eq=False)
class ZookeeperRegistry(NurseryOwner):
    """Go Micro's zookeeper registry on trio; ``async with`` it to open its ZooKeeper session.

    ``addresses`` are ``host:port`` of the ensemble's servers, tried in turn. Entering fails with a
    RegistryError when none answers within ``timeout`` (retrying with backoff meanwhile); after
    that, connection losses are survived. Every call is bounded by ``timeout`` and raises
    RegistryError. ``session_timeout`` (default ``timeout``) is what ZooKeeper waits before it
    declares a silent registry dead and deletes its nodes (within the server's min/max bounds).
    """

    addresses: Sequence[str] = (DEFAULT_ADDRESS,)
    timeout: float = 10.0
    session_timeout: float | None = None
    name: str = "zookeeper"
    _client: ZkClient | None = attrs.field(default=None, init=False)

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        client = ZkClient(
            list(self.addresses) or [DEFAULT_ADDRESS],
            timeout=self.timeout,
            session_timeout=self.session_timeout or self.timeout,
        )
        async with client:
            await client.ensure_path(PREFIX)  # as Go's plugin does at start
            self._client = client
            try:
                yield
            finally:
                self._client = None

    @property
    def client(self) -> ZkClient:
        """The underlying ZooKeeper client (only inside ``async with``)."""
        if self._client is None:
            raise RegistryError("ZookeeperRegistry used outside `async with registry:`")
        return self._client

    # ---- Registry -------------------------------------------------------------------------------

    async def register(self, service: Service, *, ttl: float | None = None) -> None:
        client = self.client
        if not service.nodes:
            raise RegistryError(f"register {service.name!r}: at least one node is required")
        for node in service.nodes:
            value = attrs.evolve(service, nodes=(node,)).to_json().encode()
            await client.ensure_ephemeral(node_path(service.name, node.id), value)

    async def deregister(self, service: Service) -> None:
        client = self.client
        for node in service.nodes:
            await client.drop_ephemeral(node_path(service.name, node.id))

    async def get_service(self, name: str) -> list[Service]:
        return _group(await _read_service_dir(self.client, service_path(name)))

    async def list_services(self) -> list[Service]:
        client = self.client
        try:
            dirs, _ = await client.get_children(PREFIX)
        except p.ZkError as exc:
            if exc.code == p.NO_NODE:
                return []
            raise
        per_dir: list[list[Service]] = [[] for _ in dirs]
        errors: list[RegistryError] = []

        async def read(i: int, directory: str) -> None:
            try:
                per_dir[i] = await _read_service_dir(client, directory)
            except RegistryError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            for i, d in enumerate(sorted(dirs)):
                nursery.start_soon(read, i, posixpath.join(PREFIX, d))
        if errors:
            raise errors[0]
        return sorted(_group([s for group in per_dir for s in group]), key=lambda s: s.name)

    def watch(self, service: str | None = None) -> AbstractAsyncContextManager[Watcher]:
        return self._watch(service)

    @asynccontextmanager
    async def _watch(self, service: str | None) -> AsyncIterator[Watcher]:
        client = self.client
        async with client.watch_queue() as queue:
            send, receive = trio.open_memory_channel[Result](_BUFFER)
            watcher = ZookeeperWatcher(client, queue, service_path(service) if service else None, receive)
            await watcher.start()
            with collapse_excgroups():  # the body's own errors come out as raised
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(watcher.pump, send)
                    try:
                        yield watcher
                    finally:
                        nursery.cancel_scope.cancel()


def from_options(options: Any) -> ZookeeperRegistry:
    """Registry plugin ``zookeeper``: ``--registry_address`` (comma list), ``--registry_timeout``."""
    return ZookeeperRegistry(
        addresses=list(options.registry_address) or [DEFAULT_ADDRESS],
        timeout=options.registry_timeout,
    )
