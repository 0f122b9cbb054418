"""In-process registry: a feature for tests and single-process apps, not a test double.

Records expire ``ttl`` seconds after their last registration (checked on read, on trio's clock, and by
a waiting watcher when the next record is due, so an expiry reaches watchers even if nobody reads),
and watchers get the same create/update/delete events as from any other registry.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from ._base import Watcher
from ._model import Node, Result, Service

__all__ = ["MemoryRegistry", "MemoryWatcher"]


@attrs.define(eq=False)
class _Record:
    service: Service  # with exactly one node
    expires: float


@attrs.define(eq=False)
class MemoryWatcher:
    """Watch events from a :class:`MemoryRegistry`; an async iterator of :class:`Result`."""

    _service: str | None
    _receive: trio.MemoryReceiveChannel[Result]
    _registry: MemoryRegistry | None = None

    def __aiter__(self) -> AsyncIterator[Result]:
        return self

    async def __anext__(self) -> Result:
        while True:
            due = self._registry._next_expiry() if self._registry is not None else math.inf
            try:
                with trio.move_on_at(due) as waiting:
                    result = await self._receive.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                raise StopAsyncIteration from None
            if waiting.cancelled_caught:  # a record is due: expiring it queues its delete event
                assert self._registry is not None
                self._registry._expire()
                continue
            if self._service is None or result.service.name == self._service:
                return result


@attrs.define(eq=False)
class MemoryRegistry:
    """A registry held in memory; share one instance between services to let them find each other."""

    name: str = "memory"
    default_ttl: float | None = None
    # (service name, version) -> node id -> record
    _records: dict[tuple[str, str], dict[str, _Record]] = attrs.field(factory=dict, init=False)
    _meta: dict[tuple[str, str], Service] = attrs.field(factory=dict, init=False)
    _watchers: set[trio.MemorySendChannel[Result]] = attrs.field(factory=set, init=False)

    async def __aenter__(self) -> MemoryRegistry:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def _notify(self, action: Any, service: Service) -> None:
        for send in list(self._watchers):
            try:
                send.send_nowait(Result(action=action, service=service))
            except trio.WouldBlock:
                # A watcher that does not keep up loses its stream: close it so it re-lists.
                send.close()
                self._watchers.discard(send)
            except trio.BrokenResourceError:
                self._watchers.discard(send)

    def _next_expiry(self) -> float:
        return min((r.expires for nodes in self._records.values() for r in nodes.values()), default=math.inf)

    def _expire(self) -> None:
        now = trio.current_time()
        for key, nodes in list(self._records.items()):
            for node_id, rec in list(nodes.items()):
                if rec.expires <= now:
                    del nodes[node_id]
                    self._notify("delete", rec.service)
            if not nodes:
                del self._records[key]
                self._meta.pop(key, None)

    async def register(self, service: Service, *, ttl: float | None = None) -> None:
        await trio.lowlevel.checkpoint()
        self._expire()
        ttl = ttl if ttl is not None else self.default_ttl
        expires = trio.current_time() + ttl if ttl else float("inf")
        key = (service.name, service.version)
        nodes = self._records.setdefault(key, {})
        self._meta[key] = attrs.evolve(service, nodes=())
        for node in service.nodes:
            one = attrs.evolve(service, nodes=(node,))
            action = "update" if node.id in nodes else "create"
            nodes[node.id] = _Record(one, expires)
            self._notify(action, one)

    async def deregister(self, service: Service) -> None:
        await trio.lowlevel.checkpoint()
        key = (service.name, service.version)
        nodes = self._records.get(key, {})
        for node in service.nodes:
            rec = nodes.pop(node.id, None)
            if rec is not None:
                self._notify("delete", rec.service)
        if not nodes:
            self._records.pop(key, None)
            self._meta.pop(key, None)

    def _snapshot(self, key: tuple[str, str]) -> Service:
        nodes: tuple[Node, ...] = tuple(r.service.nodes[0] for r in self._records[key].values())
        return attrs.evolve(self._meta[key], nodes=nodes)

    async def get_service(self, name: str) -> list[Service]:
        await trio.lowlevel.checkpoint()
        self._expire()
        return [self._snapshot(k) for k in self._records if k[0] == name]

    async def list_services(self) -> list[Service]:
        await trio.lowlevel.checkpoint()
        self._expire()
        return [self._snapshot(k) for k in self._records]

    @asynccontextmanager
    async def watch(self, service: str | None = None) -> AsyncIterator[Watcher]:
        send, receive = trio.open_memory_channel[Result](1000)
        self._watchers.add(send)
        try:
            yield MemoryWatcher(service, receive, self)
        finally:
            self._watchers.discard(send)
            send.close()
            receive.close()


_DEFAULT: MemoryRegistry | None = None


def from_options(options: Any) -> MemoryRegistry:
    """The process-wide memory registry, so services in one process find each other by default."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = MemoryRegistry()
    return _DEFAULT
