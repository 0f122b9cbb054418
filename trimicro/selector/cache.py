"""The caching selector (Go Micro's default ``selector`` over ``registry/cache``).

Lookups are cached for ``ttl`` seconds; one watch-all task, started when the selector opens, applies
create/update/delete events to cached services so new and departed nodes show up at once. The watch is
opened before any lookup, so no event between a lookup and the watch can be lost; if it breaks, every
entry is invalidated (kept only as a stale fallback) and the watch reopens with backoff.

When the registry fails (RegistryError or ``lookup_timeout``) and a stale entry exists, the selector
serves it, logs a warning, and retries the refresh after ``retry_interval``. An answer with no nodes
right after such a failure (or a broken watch) is doubted the same way for up to ``ttl``: a registry
that just came back empty has usually not seen its services re-register yet. A node whose call failed
with a :class:`~trimicro.errors.TransportError` is blacklisted for ``blacklist_for`` seconds (Go Micro
v1 did the same), so the client's retries go elsewhere, unless no other node is left.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import attrs
import trio

from .. import _plugins
from .._lifecycle import NurseryOwner
from ..errors import RegistryError, ServiceNotFound, TransportError
from ..registry import Node, Registry, Result, Service
from ._base import Filter, Next, Strategy
from .strategy import nodes_of, random_strategy, strategy_from_name, to_strategy

__all__ = ["CachingSelector", "RegistrySelector", "from_options", "strategy_from_name"]

log = logging.getLogger("trimicro.selector")

_BACKOFF_MIN, _BACKOFF_MAX = 0.1, 5.0


def _with_nodes(service: Service, nodes: tuple[Node, ...]) -> Service:
    return attrs.evolve(service, nodes=nodes)


def _without(services: list[Service], node_ids: frozenset[str]) -> list[Service]:
    out = []
    for s in services:
        nodes = tuple(n for n in s.nodes if n.id not in node_ids)
        if nodes:
            out.append(_with_nodes(s, nodes))
    return out


def apply_event(services: list[Service], result: Result) -> list[Service]:
    """``services`` (all versions of one service) after a watch event; the input is not changed."""
    event = result.service
    out: list[Service] = []
    matched = False
    for s in services:
        if s.version != event.version:
            out.append(s)
            continue
        matched = True
        ids = {n.id for n in event.nodes}
        kept = tuple(n for n in s.nodes if n.id not in ids)
        if result.action == "delete":
            if kept:
                out.append(_with_nodes(s, kept))
        else:  # create / update: upsert the node, take the event's endpoints and metadata
            out.append(_with_nodes(event, kept + event.nodes))
    if not matched and result.action != "delete" and event.nodes:
        out.append(event)
    return out


@attrs.define(eq=False)
class _Entry:
    services: list[Service]
    expires: float
    degraded: bool = False  # the registry failed (lookup or watch) since these nodes were confirmed
    doubted_since: float | None = None  # first empty answer after a failure


@attrs.define(eq=False)
class _Blacklist:
    """Node ids that just failed with a transport error, until a time on trio's clock."""

    duration: float
    _until: dict[str, float] = attrs.field(factory=dict)

    def add(self, node_id: str) -> None:
        self._until[node_id] = trio.current_time() + self.duration

    def discard(self, node_id: str) -> None:
        self._until.pop(node_id, None)

    def current(self) -> frozenset[str]:
        if not self._until:
            return frozenset()
        now = trio.current_time()
        for node_id, until in list(self._until.items()):
            if until <= now:
                del self._until[node_id]
        return frozenset(self._until)


def _next_avoiding(services: list[Service], strategy: Strategy, blacklist: _Blacklist) -> Next:
    """A Next that re-plans when the blacklist changes (so a retry after mark() avoids the node)."""
    all_ids = frozenset(n.id for n in nodes_of(services))
    plan_key: frozenset[str] | None = None
    inner: Next = strategy(services)

    def next_node() -> Node:
        nonlocal plan_key, inner
        avoid = blacklist.current() & all_ids
        if avoid != plan_key:
            plan_key = avoid
            usable = _without(services, avoid) if avoid else services
            inner = strategy(usable or services)  # all blacklisted: better to try than to fail
        return inner()

    return next_node


def _mark_strategy(strategy: Strategy, service: str, node: Node, error: BaseException | None) -> None:
    mark = getattr(strategy, "mark", None)
    if mark is not None:
        mark(service, node, error)


def _check_found(service: str, services: list[Service]) -> None:
    if not nodes_of(services):
        raise ServiceNotFound(f"service {service} not found")


@attrs.define(eq=False)
class CachingSelector(NurseryOwner):
    """Selector with a TTL cache kept fresh by a registry watch; see the module docstring.

    ``owns_registry``: enter/exit the registry with the selector (``from_options`` sets it).
    """

    registry: Registry
    strategy: Strategy = attrs.field(default=random_strategy, converter=to_strategy)
    ttl: float = 60.0
    lookup_timeout: float = 5.0
    retry_interval: float = 5.0
    blacklist_for: float = 5.0
    owns_registry: bool = False
    name: str = attrs.field(default="cache", init=False)
    _cache: dict[str, _Entry] = attrs.field(factory=dict, init=False)
    _pending: dict[str, trio.Event] = attrs.field(factory=dict, init=False)
    _blacklist: _Blacklist = attrs.field(init=False)
    _open: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self._blacklist = _Blacklist(self.blacklist_for)

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        """The registry (when owned) around the nursery of the watch task; ready once the watch is
        open (or has failed once: lookups work without it)."""
        if self._open:
            raise RuntimeError("selector is already open")
        async with AsyncExitStack() as stack:
            if self.owns_registry:
                await stack.enter_async_context(self.registry)
            async with trio.open_nursery() as nursery:
                await nursery.start(self._watch_loop)
                self._open = True
                try:
                    yield
                finally:
                    self._open = False
                    nursery.cancel_scope.cancel()

    # -- Selector API -------------------------------------------------------------------------------
    async def select(
        self, service: str, *, filters: Sequence[Filter] = (), strategy: Strategy | None = None
    ) -> Next:
        """A Next over the nodes of ``service`` after ``filters``; ServiceNotFound if there are none."""
        services = await self._lookup(service)
        for f in filters:
            services = f(services)
        _check_found(service, services)
        return _next_avoiding(services, strategy or self.strategy, self._blacklist)

    def mark(self, service: str, node: Node, error: BaseException | None) -> None:
        """Report a call's outcome: feeds the strategy; a TransportError blacklists the node briefly."""
        _mark_strategy(self.strategy, service, node, error)
        if isinstance(error, TransportError):
            self._blacklist.add(node.id)
        elif error is None:
            self._blacklist.discard(node.id)

    # -- cache --------------------------------------------------------------------------------------
    def cached(self, service: str) -> list[Service] | None:
        """The cached versions of ``service`` (even if expired), for inspection."""
        entry = self._cache.get(service)
        return None if entry is None else list(entry.services)

    async def _lookup(self, service: str) -> list[Service]:
        if not self._open:
            raise RegistryError("selector is not open; use `async with selector:`")
        while True:
            entry = self._cache.get(service)
            if entry is not None and entry.expires > trio.current_time():
                await trio.lowlevel.checkpoint()
                return entry.services
            pending = self._pending.get(service)
            if pending is None:
                break
            await pending.wait()  # someone else is fetching it: share their answer
            entry = self._cache.get(service)
            if entry is not None and entry.expires > trio.current_time():
                return entry.services
            # their fetch failed and left nothing fresh: try ourselves
        done = self._pending[service] = trio.Event()
        try:
            return await self._refresh(service)
        finally:
            del self._pending[service]
            done.set()

    async def _refresh(self, service: str) -> list[Service]:
        entry = self._cache.get(service)
        try:
            with trio.fail_after(self.lookup_timeout):
                services = await self.registry.get_service(service)
        except ServiceNotFound:
            services = []
        except (RegistryError, trio.TooSlowError) as exc:
            reason = "timed out" if isinstance(exc, trio.TooSlowError) else str(exc)
            if entry is not None:
                log.warning("registry lookup of %s failed (%s); serving stale nodes", service, reason)
                entry.expires = trio.current_time() + min(self.retry_interval, self.ttl)
                entry.degraded = True
                return entry.services
            raise RegistryError(f"registry lookup of {service} failed: {reason}") from exc
        now = trio.current_time()
        if entry is not None and entry.degraded and not nodes_of(services) and nodes_of(entry.services):
            # Just after an outage the registry can answer before its services have registered again
            # (etcd restored empty; leases are re-granted a moment later), so "no nodes" then is not
            # news that every node left. Like Go Micro's cache, keep the last known nodes, for at most
            # ``ttl`` after the first such answer; watch events still add and remove nodes meanwhile.
            if entry.doubted_since is None:
                entry.doubted_since = now
            if now - entry.doubted_since < self.ttl:
                log.warning("registry lists no nodes of %s right after failing; serving stale nodes", service)
                entry.expires = now + min(self.retry_interval, self.ttl)
                return entry.services
        self._cache[service] = _Entry(list(services), now + self.ttl)
        return self._cache[service].services

    def _invalidate(self, *, degraded: bool = False) -> None:
        for entry in self._cache.values():
            entry.expires = -math.inf  # keep the data as a stale fallback
            entry.degraded = entry.degraded or degraded

    def _apply(self, result: Result) -> None:
        entry = self._cache.get(result.service.name)
        if entry is not None:  # services nobody selected are not cached
            entry.services = apply_event(entry.services, result)

    async def _watch_loop(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        backoff = _BACKOFF_MIN
        started = False
        while True:
            try:
                async with self.registry.watch() as watcher:
                    self._invalidate()  # whatever was cached may have missed events
                    if not started:
                        started = True
                        task_status.started()
                    backoff = _BACKOFF_MIN
                    async for result in watcher:
                        self._apply(result)
                log.info("registry watch ended; re-watching")
            except (RegistryError, OSError) as exc:
                log.warning("registry watch failed (%s); re-watching in %.1fs", exc, backoff)
            self._invalidate(degraded=True)  # deletes may have been missed, and the registry may be down
            if not started:  # do not hold up the caller: lookups work without the watch
                started = True
                task_status.started()
            await trio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)


@attrs.define(eq=False)
class RegistrySelector:
    """No cache: every ``select`` asks the registry. For tests and registries that cache themselves."""

    registry: Registry
    strategy: Strategy = attrs.field(default=random_strategy, converter=to_strategy)
    lookup_timeout: float = 5.0
    name: str = attrs.field(default="registry", init=False)

    async def __aenter__(self) -> RegistrySelector:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def select(
        self, service: str, *, filters: Sequence[Filter] = (), strategy: Strategy | None = None
    ) -> Next:
        try:
            with trio.fail_after(self.lookup_timeout):
                services = await self.registry.get_service(service)
        except trio.TooSlowError:
            raise RegistryError(f"registry lookup of {service} timed out") from None
        for f in filters:
            services = f(services)
        _check_found(service, services)
        return (strategy or self.strategy)(services)

    def mark(self, service: str, node: Node, error: BaseException | None) -> None:
        _mark_strategy(self.strategy, service, node, error)


def from_options(options: Any) -> CachingSelector:
    """A caching selector over the registry named by ``options.registry``, owning that registry."""
    registry = _plugins.create("registry", options.registry, options)
    return CachingSelector(
        registry,
        strategy=strategy_from_name(options.selector),
        ttl=options.selector_cache_ttl,
        lookup_timeout=options.registry_timeout,
        owns_registry=True,
    )
