"""``serve``: run a service inside the test's nursery and hand back a client bound to it.

What grpclib's ``ChannelFor`` does for a gRPC servicer, for a trimicro service: the handlers are served
by a real :class:`~trimicro.Service` (the same router, codecs, wrappers, subscribers and error mapping
as in production) and called through a real :class:`~trimicro.client.Client`, but by default nothing
leaves the process: a fresh :class:`~trimicro.registry.MemoryRegistry`, a memory transport on a fresh
:class:`~trimicro.transport.memory.MemoryNetwork` and a :class:`TestBroker` make each ``serve`` an
isolated little world, so tests can run side by side and under ``autojump_clock``. ``transport="http"``
or ``"grpc"`` serves on a real 127.0.0.1 socket instead (the registry stays in memory).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs

from ..broker import Broker
from ..client import Client
from ..registry import MemoryRegistry, Registry
from ..server import HandlerWrapper
from ..service import Service, open_service
from ..transport import Transport
from ..transport.memory import MemoryNetwork, MemoryTransport
from ._broker import TestBroker

__all__ = ["ServiceClient", "serve"]

#: A subscription for :func:`serve`: ``{topic: handler}`` or ``(topic, handler)`` / ``(topic, handler, queue)``.
Subscriptions = Mapping[str, Callable[..., Any]] | Sequence[tuple[Any, ...]]


@attrs.define(eq=False)
class ServiceClient:
    """A client bound to one running service: ``call``/``stream`` take the endpoint only.

    ``service`` is the running :class:`~trimicro.Service`, ``client`` the underlying
    :class:`~trimicro.client.Client` (to call other services in the same world), ``broker`` the
    service's broker (a :class:`TestBroker` unless another was given) and ``registry`` its registry.
    """

    service: Service
    client: Client
    broker: Any
    registry: Registry

    @property
    def name(self) -> str:
        return self.service.name

    @property
    def address(self) -> str:
        """Where the service listens (``127.0.0.1:PORT``, in memory or on a socket)."""
        return self.service.address

    async def call(self, endpoint: str, request: Any = None, **kw: Any) -> Any:
        """``client.call(service, endpoint, request, **kw)`` (``response_type=``, ``timeout=``, ...).

        A ``dict`` or ``list`` request (``None``: ``{}``) goes as JSON unless ``content_type`` says
        otherwise, so a test can call without the generated message classes."""
        if request is None:
            request = {}
        if isinstance(request, dict | list):
            kw.setdefault("content_type", "application/json")
        return await self.client.call(self.name, endpoint, request, **kw)

    def stream(self, endpoint: str, **kw: Any) -> Any:
        """``async with bound.stream("Handler.Method", ...) as s:`` (``client.stream``'s keywords)."""
        cm: Any = self.client.stream(self.name, endpoint, **kw)
        return cm

    async def publish(self, topic: str, message: Any, **kw: Any) -> None:
        """Publish through the service's broker (``client.publish``)."""
        await self.client.publish(topic, message, **kw)


def _transport(transport: str | Transport, network: MemoryNetwork | None) -> str | Transport:
    if transport == "memory":
        return MemoryTransport(network=network if network is not None else MemoryNetwork())
    return transport


@asynccontextmanager
async def serve(
    *handlers: object,
    name: str = "test",
    transport: str | Transport = "memory",
    registry: Registry | None = None,
    broker: Broker | None = None,
    network: MemoryNetwork | None = None,
    subscribe: Subscriptions = (),
    wrappers: Sequence[HandlerWrapper] = (),
    setup: Callable[[Service], object] | None = None,
    **options: Any,
) -> AsyncIterator[ServiceClient]:
    """Serve ``handlers`` as service ``name`` for the block; yield a :class:`ServiceClient` bound to it.

    ``transport``: ``"memory"`` (default, no sockets), ``"http"`` or ``"grpc"`` (127.0.0.1, a free
    port), or a transport instance. ``registry``/``broker``/``network`` share a world between several
    ``serve`` blocks (default: fresh ones). ``subscribe`` adds subscribers (``{topic: handler}``);
    ``setup(service)`` may configure the service further before it starts (wrappers, subscribers).
    Other keywords are :class:`~trimicro.config.Options` fields (``client_retries=0``, ...).
    """
    registry = registry if registry is not None else MemoryRegistry()
    the_broker: Broker = broker if broker is not None else TestBroker()
    options.setdefault("server_address", "127.0.0.1:0")
    service = Service(
        name,
        registry=registry,
        broker=the_broker,
        transport=_transport(transport, network),
        handlers=list(handlers),
        wrappers=wrappers,
        argv=[],
        handle_signals=False,
        **options,
    )
    if isinstance(the_broker, TestBroker):
        service.wrap_subscriber(TestBroker.capture)
    items = subscribe.items() if isinstance(subscribe, Mapping) else subscribe
    for item in items:
        topic, handler, *rest = item
        service.subscribe(topic, handler, queue=rest[0] if rest else None)
    if setup is not None:
        setup(service)
    async with open_service(service=service) as running:
        yield ServiceClient(running, running.client, the_broker, registry)
