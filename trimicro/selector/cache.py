"""The caching selector (Go Micro's default ``selector`` over ``registry/cache``).

Lookups are cached for ``ttl`` seconds; one watch-all task, started when the selector opens, applies
create/update/delete events to cached services so new and departed nodes show up at once. The watch is
opened before any lookup, so no event between a lookup and the watch can be lost; if it breaks, every
entry is invalidated (kept only as a stale fallback) and the watch reopens with backoff.

When the registry fails (RegistryError or ``lookup_timeout``) and a stale entry exists, the selector
serves it, logs a warning, and retries the refresh after ``retry_interval``. An answer with no nodes
right after such a failure (or a broken watch) is doubted the same way for up to ``ttl``: a registry
that just came back empty has usually not seen its services re-register yet.

Names the registry does not know are cached too (for ``ttl``, updated by the watch like the rest), but
at most ``max_misses`` of them, the oldest dropped first: callers asking for random
names (an api gateway under attack) cannot grow the cache without bound.

Nodes that fail are ejected for a while by outlier detection (:mod:`trimicro.selector._outlier`, on
for every strategy; ``outlier``), and a Next never hands out the same node twice while another is
left, so a retry always goes elsewhere. Strategies that do not weigh load themselves (``random``,
``roundrobin``) are kept off nodes piling up calls in flight (see :func:`_next_for`): ``random`` stays
uniform over the nodes that answer.
"""

from __future__ import annotations

import logging
import math
import random
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import attrs
import trio

from .. import _plugins
from .._lifecycle import NurseryOwner
from ..errors import RegistryError, ServiceNotFound
from ..registry import Node, Registry, Result, Service
from ._base import Filter, Next, Strategy
from ._outlier import OutlierDetector, OutlierPolicy
from .strategy import nodes_of, random_strategy, strategy_from_name, to_strategy

__all__ = ["CachingSelector", "OutlierPolicy", "RegistrySelector", "from_options", "strategy_from_name"]

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


def _next_for(
    service: str, services: list[Service], strategy: Strategy, detector: OutlierDetector, load_aware: bool
) -> Next:
    """The selector's Next: the strategy's picks, minus ejected nodes and nodes this Next already gave.

    A client calls one Next per call, again for each retry (or hedge), so a node handed out before is
    one that failed or is still busy with this call: the next attempt goes to another node while one
    is left. The plan is rebuilt only when the set of nodes to avoid changes. When nothing would be
    left, ejected nodes are tried anyway (better to try than to fail). ``load_aware`` (strategies that
    do not weigh load themselves): a node holding more than twice the calls in flight of the least
    loaded one (plus two) is passed over for a calm one, so a node that accepts calls and never answers
    cannot soak up every caller before it is ejected.
    """
    all_ids = frozenset(n.id for n in nodes_of(services))
    tried: set[str] = set()
    plan_key: frozenset[str] | None = None
    inner: Next = strategy(services)
    usable: list[Node] = nodes_of(services)

    def next_node() -> Node:
        nonlocal plan_key, inner, usable
        now = trio.current_time()
        blocked = detector.blocked(service, now) & all_ids
        avoid = blocked | tried if tried else blocked
        if avoid >= all_ids:
            tried.clear()  # every usable node has been tried: start over
            avoid = blocked if blocked < all_ids else frozenset()
        if avoid != plan_key:
            plan_key = avoid
            kept = _without(services, avoid) if avoid else services
            inner = strategy(kept)
            usable = nodes_of(kept)
        node = inner()
        if load_aware and len(usable) > 1:
            node = _calm(service, node, usable, detector)
        tried.add(node.id)
        detector.acquire(service, node.id, now)
        return node

    return next_node


def _calm(service: str, node: Node, usable: list[Node], detector: OutlierDetector) -> Node:
    load = detector.inflight(service, node.id)
    if load <= 2:
        return node  # the common case: no scan
    loads = [detector.inflight(service, n.id) for n in usable]
    limit = 2 * min(loads) + 2
    if load <= limit:
        return node
    return random.choice([n for n, x in zip(usable, loads, strict=True) if x <= limit])


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
    outlier: OutlierPolicy = attrs.field(factory=OutlierPolicy)
    owns_registry: bool = False
    #: how many names with no nodes (unknown services) the cache keeps at most
    max_misses: int = 10_000
    name: str = attrs.field(default="cache", init=False)
    _cache: dict[str, _Entry] = attrs.field(factory=dict, init=False)
    _misses: OrderedDict[str, None] = attrs.field(factory=OrderedDict, init=False)
    _pending: dict[str, trio.Event] = attrs.field(factory=dict, init=False)
    _detector: OutlierDetector = attrs.field(init=False)
    _open: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        self._detector = OutlierDetector(self.outlier)

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
        if self._detector.size(service) > len(nodes_of(services)):
            self._detector.forget(service, (n.id for n in nodes_of(services)))
        for f in filters:
            services = f(services)
        _check_found(service, services)
        chosen = strategy or self.strategy
        load_aware = getattr(chosen, "mark", None) is None  # P2C weighs load itself
        return _next_for(service, services, chosen, self._detector, load_aware)

    def mark(self, service: str, node: Node, error: BaseException | None) -> None:
        """Report a call's outcome, exactly once per node a Next handed out: feeds the strategy and the
        outlier detector (:mod:`trimicro.selector._outlier`); ``trio.Cancelled`` means abandoned."""
        _mark_strategy(self.strategy, service, node, error)
        entry = self._cache.get(service)
        nodes = len(nodes_of(entry.services)) if entry is not None else 0
        self._detector.record(service, node.id, error, trio.current_time(), nodes)

    @property
    def detector(self) -> OutlierDetector:
        return self._detector

    def stats(self) -> dict[str, Any]:
        """Outlier ejection counters and the nodes out of rotation now (shown in ``Debug.Stats``)."""
        return self._detector.stats()

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
        self._note(service, services)
        return self._cache[service].services

    def _note(self, service: str, services: list[Service]) -> None:
        """Track entries without nodes, LRU-bounded by ``max_misses``; a known service is untracked."""
        if nodes_of(services):
            self._misses.pop(service, None)
            return
        self._misses[service] = None
        self._misses.move_to_end(service)
        while len(self._misses) > self.max_misses:
            name, _ = self._misses.popitem(last=False)
            entry = self._cache.get(name)
            if entry is not None and not nodes_of(entry.services):
                del self._cache[name]

    def _invalidate(self, *, degraded: bool = False) -> None:
        for entry in self._cache.values():
            entry.expires = -math.inf  # keep the data as a stale fallback
            entry.degraded = entry.degraded or degraded

    def _apply(self, result: Result) -> None:
        entry = self._cache.get(result.service.name)
        if entry is not None:  # services nobody selected are not cached
            entry.services = apply_event(entry.services, result)
            self._note(result.service.name, entry.services)

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
        outlier=OutlierPolicy.from_options(options),
        owns_registry=True,
    )
