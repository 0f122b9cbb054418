"""Service: one nursery supervising the server, registrar, subscribers and signal handling.

``trio.run(service.run)`` for applications; ``await nursery.start(service.run)`` (returns once the
service is listening *and* registered); ``async with open_service(...) as svc`` for tests and
nursery-scoped code. All three share :meth:`Service.run`.

Shutdown (SIGINT/SIGTERM, :meth:`Service.stop`, or cancellation): deregister first so clients stop
picking this node, stop accepting, let in-flight calls finish within ``server_grace_period``, then
cancel whatever is left.
"""

from __future__ import annotations

import logging
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import trio

from . import _plugins
from ._lifecycle import NurseryOwner
from ._util import collapse_excgroups
from .broker import Broker, LazyBroker
from .client import Client, ClientWrapper
from .config import Options, load_options
from .debug import Debug
from .errors import RegistryError
from .observability import Readiness, configure_logging
from .registry import Node, Registry
from .registry import Service as ServiceRecord
from .selector import Selector
from .server import (
    GrpcServer,
    HandlerLimit,
    HandlerWrapper,
    MethodSpec,
    Router,
    Server,
    Subscribers,
    SubscriberWrapper,
    notify_worker_ready,
    supervise_workers,
    worker_address,
)
from .transport import Transport

__all__ = ["Service", "open_client", "open_service"]

log = logging.getLogger("trimicro.service")


def _advertise(bound: str, advertise: str) -> str:
    if advertise:
        return advertise
    if ":" not in bound:
        return bound  # not host:port but a subject (the nats transport)
    host, _, port = bound.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]", ""):
        host = "127.0.0.1"
    return f"{host}:{port}"


#: Selector names the caching selector handles itself; any other name is a selector plugin.
_STRATEGIES = frozenset({"random", "roundrobin", "round_robin", "p2c"})


def _node_metadata(options: Options) -> dict[str, str]:
    md = {
        "protocol": "mucp",
        "server": "mucp",
        # The one port serves mucp over HTTP whether the client side picked http, mucp or grpc.
        "transport": "http" if options.transport in ("http", "mucp", "grpc") else options.transport,
        "broker": options.broker,
        "registry": options.registry,
    }
    md.update(options.server_metadata)
    return md


class Service:
    """A named service: handlers, subscribers, a client, and the plugins they share.

    Options come from keyword arguments (``registry=``, ``server_address=``, ... any
    :class:`~trimicro.config.Options` field, or a plugin instance for ``registry``/``broker``/
    ``transport``/``selector``), then ``--flags`` (when ``argv`` is given, default ``sys.argv``), then
    ``MICRO_*`` env, then defaults.
    """

    def __init__(
        self,
        name: str = "",
        *,
        version: str | None = None,
        metadata: Mapping[str, str] | None = None,
        address: str | None = None,
        registry: str | Registry | None = None,
        broker: str | Broker | None = None,
        transport: str | Transport | None = None,
        selector: str | Selector | None = None,
        handlers: Sequence[object] = (),
        wrappers: Sequence[HandlerWrapper] = (),
        client_wrappers: Sequence[ClientWrapper] = (),
        argv: Sequence[str] | None = None,
        handle_signals: bool = True,
        **options: Any,
    ) -> None:
        overrides: dict[str, Any] = dict(options)
        if name:
            overrides["server_name"] = name
        if version is not None:
            overrides["server_version"] = version
        if metadata is not None:
            overrides["server_metadata"] = dict(metadata)
        if address is not None:
            overrides["server_address"] = address
        plugins: dict[str, Any] = {}
        for kind, value in (
            ("registry", registry),
            ("broker", broker),
            ("transport", transport),
            ("selector", selector),
        ):
            if isinstance(value, str):
                overrides[kind] = value
            elif value is not None:
                plugins[kind] = value
                if getattr(value, "name", None):
                    overrides[kind] = value.name
        self.options = load_options(overrides, argv=sys.argv[1:] if argv is None else argv)
        if not self.options.server_name:
            raise ValueError("a service needs a name (argument, --server_name or MICRO_SERVER_NAME)")
        self.name = self.options.server_name
        self.id = self.options.server_id or f"{self.name}-{uuid.uuid4()}"
        self.handle_signals = handle_signals
        self._plugins = plugins
        self.router = Router(list(wrappers))
        self._client_wrappers = list(client_wrappers)
        self.subscribers = Subscribers(self.name)
        self._stop = trio.Event()
        self._client: Client | None = None
        self._server: Server | None = None
        self._registry: Registry | None = None
        self.address: str = ""
        self._record: ServiceRecord | None = None
        #: what the health probes and grpc.health.v1 answer (trimicro/observability/_health.py)
        self.readiness = Readiness()
        #: set by trimicro.observability.instrument (or by run, when an option asks for it)
        self.observability: Any = None
        for handler in handlers:
            self.handle(handler)

    # -- configuration --
    def handle(
        self,
        handler: object,
        *,
        name: str | None = None,
        methods: Sequence[MethodSpec] | None = None,
        grpc_service: str | None = None,
    ) -> list[str]:
        """Register a handler object; its public async methods become ``Name.Method`` endpoints."""
        return self.router.handle(handler, name=name, methods=methods, grpc_service=grpc_service)

    def wrap_handler(self, wrapper: HandlerWrapper) -> HandlerWrapper:
        """Add a handler wrapper; usable as a decorator."""
        self.router.add_wrapper(wrapper)
        return wrapper

    def wrap_client(self, wrapper: ClientWrapper, *, first: bool = False) -> ClientWrapper:
        """Add a client wrapper (``first=True``: the outermost); usable as a decorator."""
        if first:
            self._client_wrappers.insert(0, wrapper)
        else:
            self._client_wrappers.append(wrapper)
        if self._client is not None:
            self._client.wrap(wrapper, first=first)
        return wrapper

    def subscribe(
        self, topic: str, handler: Callable[..., Any], *, queue: str | None = None, **kw: Any
    ) -> None:
        """Subscribe ``handler(msg, ctx)`` to ``topic`` when the service runs (see the pub/sub docs)."""
        self.subscribers.add(topic, handler, queue, kw)

    # -- running --
    @property
    def client(self) -> Client:
        """The service's client (shares its registry and selector); available once running."""
        if self._client is None:
            raise RuntimeError("the service is not running yet")
        return self._client

    @property
    def server(self) -> Server:
        if self._server is None:
            raise RuntimeError("the service is not running yet")
        return self._server

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            raise RuntimeError("the service is not running yet")
        return self._registry

    def stop(self) -> None:
        """Begin a graceful stop (deregister, drain, cancel)."""
        self._stop.set()

    def _plugin(self, kind: _plugins.Kind) -> Any:
        if kind in self._plugins:
            return self._plugins[kind]
        return _plugins.create(kind, getattr(self.options, kind), self.options)

    def record(self) -> ServiceRecord:
        """This node's registry record (Go Micro's JSON shape)."""
        if self._record is None:
            raise RuntimeError("the service is not running yet")
        return self._record

    async def run(self, *, task_status: trio.TaskStatus[Service] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until stopped or cancelled; ``task_status.started(self)`` once listening and registered.

        With ``server_workers`` > 1 this process supervises that many worker processes sharing the
        port instead (:mod:`trimicro.server._workers`); ``started`` fires when all of them are ready.
        """
        self._stop = trio.Event()
        in_worker = worker_address()
        if in_worker is not None:  # the supervisor's port and SO_REUSEPORT win over flags and env
            self.options = self.options.evolve(server_address=in_worker, server_reuse_port=True, server_workers=1)
        elif self.options.server_workers > 1:
            await supervise_workers(self, task_status=task_status)
            return
        opts = self.options
        configure_logging(opts.log_level, opts.log_format)  # only if the application did not
        obs = self._observe()
        self.readiness = readiness = Readiness()
        async with AsyncExitStack() as stack:
            registry: Registry = await stack.enter_async_context(self._plugin("registry"))
            self._registry = registry
            selector_obj = self._plugins.get("selector")
            if selector_obj is None and opts.selector not in _STRATEGIES:
                # An installed selector plugin (entry point): it builds its own registry from options.
                selector_obj = _plugins.create("selector", opts.selector, opts)
            if selector_obj is None:
                from .selector.cache import CachingSelector, OutlierPolicy

                selector_obj = CachingSelector(
                    registry, strategy=opts.selector, ttl=opts.selector_cache_ttl,
                    outlier=OutlierPolicy.from_options(opts),
                )  # fmt: skip
            selector: Selector = await stack.enter_async_context(selector_obj)
            transport: Transport = self._plugin("transport")
            if isinstance(transport, NurseryOwner):  # a connection of its own (nats)
                await stack.enter_async_context(transport)
            client = Client(selector, transport, opts, list(self._client_wrappers))
            stack.push_async_callback(client.aclose)
            self._client = client
            if obs is not None:
                obs.attach(client)
            server = Server(
                self.name, self.router, transport, opts.server_address, limit=HandlerLimit.from_options(opts)
            )
            # One port: HTTP/2 connections (gRPC) are sniffed and handed to the gRPC server.
            grpc = GrpcServer.from_server(server, opts)
            server.h2_handler = grpc.handle_connection
            # grpc.health.v1 answers what the HTTP readiness probe answers
            readiness.on_change(lambda ok: grpc.health.set_status("", 1 if ok else 2))
            readiness.on_change(lambda ok: grpc.health.set_status(self.name, 1 if ok else 2))
            self._server = server
            if "Debug.Health" not in self.router.routes:
                sources = {"selector": selector, "client": client, "server_limit": server.limit}
                extra = obs.stats if obs is not None else None
                self.router.handle(Debug(server.stats, sources, extra), name="Debug", internal=True)
            broker = await stack.enter_async_context(self._broker())
            client.broker = broker
            with collapse_excgroups():
                await self._serve(server, registry, broker, task_status)

    def _observe(self) -> Any:
        """The service's :class:`~trimicro.observability.Observability`: the one ``instrument`` set
        up, else one made now if an option asks for tracing or metrics (either kind), else None (nothing imported)."""
        opts = self.options
        if self.observability is None and (opts.tracing or opts.metrics_address or opts.otel_metrics):
            from .observability import instrument

            instrument(self)
        return self.observability

    async def _serve(
        self, server: Server, registry: Registry, broker: Broker, task_status: trio.TaskStatus[Service]
    ) -> None:
        opts = self.options
        readiness = self.readiness
        async with trio.open_nursery() as nursery:
            if self.observability is not None:  # /metrics and the probes answer before we listen
                await nursery.start(self.observability.serve, readiness)
            bound = await nursery.start(server.serve)
            self.address = _advertise(bound, opts.server_advertise)
            readiness.set(listening=True)
            if self.observability is not None:
                self.observability.listening(self.address)
            await self.subscribers.start(nursery, broker, unsubscribe_timeout=opts.registry_timeout)
            self._record = ServiceRecord(
                name=self.name,
                version=opts.server_version,
                metadata={},
                endpoints=tuple(self.router.endpoints()) + tuple(self.subscribers.endpoints()),
                nodes=(Node(self.id, self.address, _node_metadata(opts)),),
            )
            await registry.register(self._record, ttl=opts.register_ttl)
            readiness.set(registered=True, broker=broker)
            log.info(
                "service %s (%s) listening on %s (transport %s), registered in %s",
                self.name, self.id, self.address, opts.transport, opts.registry,
            )  # fmt: skip
            leaving, registrar_done = trio.Event(), trio.Event()
            try:
                nursery.start_soon(self._registrar, registry, leaving, registrar_done)
                if self.handle_signals:
                    await nursery.start(self._signals)  # installed before we report ready
                task_status.started(self)
                notify_worker_ready()
                await self._stop.wait()
            finally:
                readiness.set(draining=True)  # probes and grpc.health say NOT_SERVING from here
                with trio.CancelScope(shield=True):
                    # Stop re-registering (letting a refresh in progress finish) before deregistering:
                    # a refresh landing during the drain would put the record back, and clients would
                    # be sent to this node until its TTL ran out.
                    leaving.set()
                    with trio.move_on_after(opts.registry_timeout):
                        await registrar_done.wait()
                    await self._deregister(registry)
                    readiness.set(registered=False)
                    await server.drain(opts.server_grace_period)
                nursery.cancel_scope.cancel()

    async def _deregister(self, registry: Registry) -> None:
        if self._record is None:
            return
        with trio.move_on_after(self.options.registry_timeout):
            try:
                await registry.deregister(self._record)
            except RegistryError as exc:
                log.warning("deregister %s failed: %s", self.id, exc)

    async def _registrar(self, registry: Registry, leaving: trio.Event, done: trio.Event) -> None:
        """Re-register every ``register_interval`` so the TTL never lapses while we live; returns once
        ``leaving`` is set (never in the middle of a registration), then sets ``done``."""
        assert self._record is not None
        try:
            while True:
                with trio.move_on_after(self.options.register_interval):
                    await leaving.wait()
                if leaving.is_set():
                    return
                try:
                    with trio.fail_after(self.options.registry_timeout):
                        await registry.register(self._record, ttl=self.options.register_ttl)
                except (RegistryError, trio.TooSlowError) as exc:
                    log.warning("re-register %s failed (will retry): %s", self.id, exc)
        finally:
            done.set()

    async def _signals(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                task_status.started()
                async for signum in signals:
                    log.info("received %s: stopping gracefully", signal.Signals(signum).name)
                    self.stop()
                    return
        except RuntimeError:  # not the main thread: the embedding application handles signals
            task_status.started()

    # -- pub/sub --
    def wrap_subscriber(self, wrapper: SubscriberWrapper) -> SubscriberWrapper:
        """Add a subscriber wrapper ``w(next) -> call(msg, ctx)`` (outermost first); usable as a decorator."""
        self.subscribers.wrap(wrapper)
        return wrapper

    def _broker(self) -> Broker:
        """The broker to enter for this run: the configured one, or, when nothing subscribes and no
        broker instance was given, a :class:`~trimicro.broker.LazyBroker` that opens it on first use."""
        if not self.subscribers and "broker" not in self._plugins:
            return LazyBroker(self._new_broker, name=self.options.broker)
        return self._new_broker()

    def _new_broker(self) -> Broker:
        broker: Broker = self._plugin("broker")
        # Brokers that register themselves (http) use the service's registry unless given their own.
        use_registry = getattr(broker, "use_registry", None)
        if use_registry is not None and self._registry is not None:
            use_registry(self._registry)
        return broker


@asynccontextmanager
async def open_service(
    name: str = "", *, argv: Sequence[str] = (), handle_signals: bool = False, **kw: Any
) -> AsyncIterator[Service]:
    """Run a :class:`Service` for the duration of the block; it is ready when the block starts."""
    service = kw.pop("service", None) or Service(name, argv=argv, handle_signals=handle_signals, **kw)
    with collapse_excgroups():
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            try:
                yield service
            finally:
                service.stop()


@asynccontextmanager
async def open_client(
    *,
    registry: str | Registry | None = None,
    selector: str | Selector | None = None,
    transport: str | Transport | None = None,
    wrappers: Sequence[ClientWrapper] = (),
    argv: Sequence[str] = (),
    **options: Any,
) -> AsyncIterator[Client]:
    """A standalone client with its registry/selector/transport from options, closed on exit."""
    overrides = dict(options)
    if isinstance(selector, str):
        overrides["selector"] = selector
        selector = None
    if isinstance(registry, str):
        overrides["registry"] = registry
    if isinstance(transport, str):
        overrides["transport"] = transport
    opts = load_options(overrides, argv=argv)
    async with AsyncExitStack() as stack:
        sel = selector
        if sel is None and opts.selector not in _STRATEGIES:
            sel = _plugins.create("selector", opts.selector, opts)  # an installed selector plugin
        if sel is None:
            reg: Registry = (
                registry
                if registry is not None and not isinstance(registry, str)
                else _plugins.create("registry", opts.registry, opts)
            )
            reg = await stack.enter_async_context(reg)
            from .selector.cache import CachingSelector, OutlierPolicy

            sel = CachingSelector(
                reg,
                strategy=opts.selector,
                ttl=opts.selector_cache_ttl,
                outlier=OutlierPolicy.from_options(opts),
            )
        sel = await stack.enter_async_context(sel)
        tr = transport if transport is not None and not isinstance(transport, str) else None
        tr = tr or _plugins.create("transport", opts.transport, opts)
        if isinstance(tr, NurseryOwner):
            await stack.enter_async_context(tr)
        client = Client(sel, tr, opts, list(wrappers))
        stack.push_async_callback(client.aclose)
        yield client
