"""trimicro under test: one server process (mucp over HTTP/1.1 and gRPC over h2 on one port).

The server is what ``Service.run`` builds (a :class:`~trimicro.server.Server` on the HTTP transport
from options, with the :class:`GrpcServer` as its HTTP/2 handler), minus the registry: the client
dials the address directly (``address=``), so discovery costs nothing in either column.

``BENCH_OBSERVE=1`` measures the observability wrappers: server and client get OpenTelemetry tracing
(an SDK tracer provider, every span sampled, a batch processor feeding an exporter that drops them:
the cost of making and propagating spans, not of shipping them) and Prometheus metrics, as
``tracing=true`` + ``metrics_address`` would install them on a Service. ``BENCH_OBSERVE`` may also
name the parts, comma-separated: ``tracing``, ``metrics`` (Prometheus), ``otel_metrics``
(OpenTelemetry metrics on an SDK meter provider whose periodic reader, at the SDK's default 60 s
interval, feeds an exporter that drops them), e.g. ``BENCH_OBSERVE=otel_metrics``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from tests.protos.greeter_pb2 import (
    EchoMessage,
    HelloRequest,
    HelloResponse,
    StreamRequest,
    StreamResponse,
)
from trimicro import Client, Context, Options, Stream
from trimicro.server import Router, Server
from trimicro.transport.http import HttpTransport, from_options

SERVICE = "greeter"


class Greeter:
    async def Hello(self, req: HelloRequest, ctx: Context) -> HelloResponse:
        return HelloResponse(greeting="Hello " + req.name)

    async def Stream(
        self, req: StreamRequest, stream: Stream[StreamRequest, StreamResponse], ctx: Context
    ) -> None:
        for i in range(req.count):
            await stream.send(StreamResponse(count=i, message="hello"))

    async def Echo(self, stream: Stream[EchoMessage, EchoMessage], ctx: Context) -> None:
        async for msg in stream:
            await stream.send(msg)


def observe_parts() -> set[str]:
    """The parts ``BENCH_OBSERVE`` asks for ("1": tracing and Prometheus metrics)."""
    value = os.environ.get("BENCH_OBSERVE", "")
    if value == "1":
        return {"tracing", "metrics"}
    parts = {p.strip() for p in value.split(",") if p.strip() and p.strip() != "0"}
    unknown = parts - {"tracing", "metrics", "otel_metrics"}
    if unknown:
        raise SystemExit(f"BENCH_OBSERVE: unknown parts {sorted(unknown)}")
    return parts


def observe_wrappers(parts: set[str] | None = None) -> tuple[list[Any], list[Any]]:
    """(handler wrappers, client wrappers) for ``parts`` (default ``BENCH_OBSERVE``'s), else two
    empty lists."""
    parts = observe_parts() if parts is None else parts
    wrappers: list[Any] = []  # outermost first, as Observability installs them
    if "tracing" in parts:
        from collections.abc import Sequence

        from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

        from trimicro.observability import Tracing

        class Drop(SpanExporter):
            def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Drop()))
        wrappers.append(Tracing(SERVICE, provider))
    if "metrics" in parts:
        from trimicro.observability import Metrics

        wrappers.append(Metrics(SERVICE))
    if "otel_metrics" in parts:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import (
            MetricExporter,
            MetricExportResult,
            MetricsData,
            PeriodicExportingMetricReader,
        )

        from trimicro.observability import OtelMetrics

        class DropMetrics(MetricExporter):
            def export(
                self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
            ) -> MetricExportResult:
                return MetricExportResult.SUCCESS

            def force_flush(self, timeout_millis: float = 10_000) -> bool:
                return True

            def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
                pass

        meters = MeterProvider(metric_readers=[PeriodicExportingMetricReader(DropMetrics())])
        wrappers.append(OtelMetrics(SERVICE, meters))
    return [w.handler_wrapper for w in wrappers], [w.call_wrapper for w in wrappers]


def grpc_available() -> bool:
    try:
        import trimicro.server._grpc
        import trimicro.transport.grpc  # noqa: F401
    except ImportError:
        return False
    return True


async def serve(announce: Callable[[int], None]) -> None:
    options = Options()
    router = Router(observe_wrappers()[0])
    router.handle(Greeter())
    transport = from_options(options)
    # The bench opens 1,000+ idle connections; the defaults (5 min idle timeout) keep them all.
    server = Server(SERVICE, router, transport, "127.0.0.1:0")
    if grpc_available():
        from trimicro.server._grpc import GrpcServer

        server.h2_handler = GrpcServer.from_server(server, options).handle_connection
    async with trio.open_nursery() as nursery:
        address = await nursery.start(server.serve)
        announce(int(address.rpartition(":")[2]))


class TrimicroClient:
    """trimicro's Client against one address, over ``transport`` ("http" = mucp, or "grpc")."""

    def __init__(self, address: str, transport: str) -> None:
        self.address = address
        self.kind = transport
        self.options = Options(client_pool_size=2048)
        self.wrappers = observe_wrappers()[1]
        self.client = self._new_client()

    def _new_client(self) -> Client:
        if self.kind == "grpc":
            from trimicro.transport.grpc import GrpcTransport

            return Client(None, GrpcTransport(), self.options, self.wrappers)
        return Client(None, HttpTransport(), self.options, self.wrappers)

    async def aclose(self) -> None:
        await self.client.aclose()
        tr = self.client.transport
        if hasattr(tr, "aclose"):
            await tr.aclose()

    async def unary(self, name: str) -> None:
        rsp = await self.client.call(
            SERVICE,
            "Greeter.Hello",
            HelloRequest(name=name),
            response_type=HelloResponse,
            address=self.address,
        )
        if len(rsp.greeting) != len(name) + 6:
            raise AssertionError("bad greeting")

    async def server_stream(self, count: int, progress: list[int]) -> None:
        async with self.client.stream(
            SERVICE,
            "Greeter.Stream",
            request=StreamRequest(count=count),
            response_type=StreamResponse,
            address=self.address,
        ) as stream:
            async for _ in stream:
                progress[0] += 1

    @asynccontextmanager
    async def bidi(self) -> AsyncIterator[Callable[[int], Awaitable[None]]]:
        async with self.client.stream(
            SERVICE, "Greeter.Echo", response_type=EchoMessage, address=self.address
        ) as stream:

            async def ping(seq: int) -> None:
                await stream.send(EchoMessage(text="ping", seq=seq))
                back = await stream.receive()
                if back.seq != seq:
                    raise AssertionError("out of order")

            yield ping
            await stream.close_send()

    async def hold_idle(self, n: int, ready: Callable[[], Awaitable[None]]) -> None:
        if self.kind == "grpc":
            # One HTTP/2 connection per client (the transport multiplexes calls on it).
            clients = [self._new_client() for _ in range(n)]
            async with trio.open_nursery() as nursery:
                for c in clients:
                    nursery.start_soon(self._one_call, c)
            await ready()
            return
        # mucp: n concurrent calls leave n pooled keep-alive connections.
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(self.unary, "world")
        assert self.client.pool.idle_count >= n, self.client.pool.idle_count
        await ready()

    async def _one_call(self, client: Client) -> None:
        await client.call(
            SERVICE,
            "Greeter.Hello",
            HelloRequest(name="world"),
            response_type=HelloResponse,
            address=self.address,
        )

    async def hold_streams(self, n: int, ready: Callable[[], Awaitable[None]]) -> None:
        opened = [0]
        all_open = trio.Event()
        # trimicro's gRPC server allows 256 concurrent streams per connection (MAX_CONCURRENT_STREAMS);
        # beyond that a client waits for a slot, so spread the streams over enough connections.
        per_connection = 200 if self.kind == "grpc" else n
        clients = [self] + [TrimicroClient(self.address, self.kind) for _ in range((n - 1) // per_connection)]

        async def one(i: int) -> None:
            async with clients[i // per_connection].bidi() as ping:
                await ping(0)
                opened[0] += 1
                if opened[0] == n:
                    all_open.set()
                await trio.sleep_forever()

        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(one, i)
            await all_open.wait()
            await ready()


@asynccontextmanager
async def open_client(address: str, transport: str) -> AsyncIterator[Any]:
    client = TrimicroClient(address, transport)
    try:
        yield client
    finally:
        with trio.CancelScope(shield=True):
            await client.aclose()
