"""A test world: one registry, memory network and broker that several services and clients share.

``serve`` gives each block a world of its own; a test with several services that call each other
starts them all in one :class:`World` (the ``trimicro_world`` fixture), and standalone clients made by
the world find them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from ..client import Client
from ..registry import MemoryRegistry
from ..service import open_client
from ..transport import Transport
from ..transport.memory import MemoryNetwork, MemoryTransport
from ._broker import TestBroker
from ._serve import ServiceClient, serve

__all__ = ["World"]


@attrs.define(eq=False)
class World:
    """Shared plugins for the services and clients of one test (fresh ones by default)."""

    registry: MemoryRegistry = attrs.field(factory=MemoryRegistry)
    network: MemoryNetwork = attrs.field(factory=MemoryNetwork)
    broker: TestBroker = attrs.field(factory=TestBroker)

    def serve(self, *handlers: object, **kw: Any) -> Any:
        """:func:`serve` in this world: ``async with world.serve(Greeter(), name="greeter") as c:``."""
        kw.setdefault("registry", self.registry)
        kw.setdefault("network", self.network)
        kw.setdefault("broker", self.broker)
        return serve(*handlers, **kw)

    @asynccontextmanager
    async def client(self, *, transport: str | Transport = "memory", **options: Any) -> AsyncIterator[Client]:
        """A standalone client that discovers this world's services (and publishes to its broker)."""
        tr = MemoryTransport(network=self.network) if transport == "memory" else transport
        async with open_client(registry=self.registry, transport=tr, **options) as client:
            client.broker = self.broker
            yield client

    async def start(self, nursery: trio.Nursery, *handlers: object, **kw: Any) -> ServiceClient:
        """Run ``self.serve(...)`` in a task of ``nursery`` (until it is cancelled); return its client."""

        async def run(task_status: trio.TaskStatus[ServiceClient] = trio.TASK_STATUS_IGNORED) -> None:
            async with self.serve(*handlers, **kw) as bound:
                task_status.started(bound)
                await trio.sleep_forever()

        bound: ServiceClient = await nursery.start(run)
        return bound

    async def start_client(self, nursery: trio.Nursery, **kw: Any) -> Client:
        """Open ``self.client(...)`` in a task of ``nursery`` (until it is cancelled); return it."""

        async def run(task_status: trio.TaskStatus[Client] = trio.TASK_STATUS_IGNORED) -> None:
            async with self.client(**kw) as client:
                task_status.started(client)
                await trio.sleep_forever()

        client: Client = await nursery.start(run)
        return client
