"""The Registry contract: where services announce nodes and clients find them.

A registry is an async context manager: ``async with registry:`` opens whatever connections and
background tasks it needs (in a nursery it owns) and closes them on exit. Methods may be called only
inside that block. Implementations: ``memory``, ``mdns`` (default), ``etcd``, ``zookeeper``; more by plugin.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Protocol, runtime_checkable

from ._model import Result, Service

__all__ = ["Registry", "Watcher"]


@runtime_checkable
class Watcher(Protocol):
    """An async iterator of :class:`Result` events; iteration ends when the watch is closed."""

    def __aiter__(self) -> AsyncIterator[Result]: ...

    async def __anext__(self) -> Result: ...


@runtime_checkable
class Registry(Protocol):
    """Go Micro's ``registry.Registry``.

    - ``register(service, ttl=)``: ``service`` carries exactly the nodes to add/refresh; records expire
      after ``ttl`` seconds unless registered again (the Service's registrar task re-registers).
    - ``deregister(service)``: remove the given nodes; the service disappears with its last node.
    - ``get_service(name)``: every version of ``name`` with its live nodes; ``[]`` if unknown. Raises
      :class:`~trimicro.errors.RegistryError` when the registry cannot be reached.
    - ``list_services()``: every service (nodes may be omitted).
    - ``watch(service=None)``: an async context manager yielding a :class:`Watcher` of create/update/
      delete events (only the changed node in ``Result.service.nodes``), for one service or all.
    """

    name: str

    async def __aenter__(self) -> Registry: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None: ...

    async def register(self, service: Service, *, ttl: float | None = None) -> None: ...

    async def deregister(self, service: Service) -> None: ...

    async def get_service(self, name: str) -> list[Service]: ...

    async def list_services(self) -> list[Service]: ...

    def watch(self, service: str | None = None) -> AbstractAsyncContextManager[Watcher]: ...
