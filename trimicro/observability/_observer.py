"""One service's observability: which wrappers it installed, the listener, the Debug.Stats extras.

:func:`instrument` is the one entry point, called by the Service itself when an option asks for
tracing or metrics (``tracing=true``, ``metrics_address=...``, ``otel_metrics=true``), or by the
application beforehand to pass its own tracer provider, Prometheus registry or meter provider.
OpenTelemetry and prometheus_client are imported here only for the parts that are enabled.

Wrappers go *outermost* (tracing, then Prometheus metrics, then OpenTelemetry metrics, then the
application's own), so a span and a latency cover everything the service does for a call, application wrappers included.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ._health import Readiness
from ._http import HttpListener, Response

if TYPE_CHECKING:
    from ._metrics import Metrics
    from ._otel_metrics import OtelMetrics
    from ._tracing import Tracing

__all__ = ["Observability", "instrument"]

log = logging.getLogger("trimicro.observability")


@attrs.define(eq=False)
class Observability:
    """What :func:`instrument` set up on one service."""

    service: Any
    tracing: Tracing | None = None
    metrics: Metrics | None = None
    metrics_address: str = ""
    otel_metrics: OtelMetrics | None = None
    listener: HttpListener | None = attrs.field(default=None, init=False)

    def _wrappers(self) -> list[Any]:
        # outermost first
        return [w for w in (self.tracing, self.metrics, self.otel_metrics) if w is not None]

    def install(self) -> None:
        """Put the wrappers on the service's handlers, subscribers and client (outermost)."""
        for part in reversed(self._wrappers()):
            self.service.router.add_wrapper(part.handler_wrapper, first=True)
            self.service.subscribers.wrap(part.subscriber_wrapper, first=True)
            self.service.wrap_client(part.call_wrapper, first=True)

    def attach(self, client: Any) -> None:
        """A run's new client: add the publish wrappers (the call wrappers came with the service's)."""
        for part in reversed(self._wrappers()):
            client.wrap_publish(part.publish_wrapper, first=True)
        if self.tracing is not None:
            client.wrap_stream(self.tracing.stream_hook, first=True)
        for part in (self.metrics, self.otel_metrics):
            if part is not None:
                part.watch(selector=client.selector, client=client)

    def listening(self, address: str) -> None:
        if self.tracing is not None:
            self.tracing.address = address

    def stats(self) -> dict[str, Any]:
        """Extra ``Debug.Stats`` fields (requests/errors/in-flight/p50/p99 from the metrics)."""
        return self.metrics.summary() if self.metrics is not None else {}

    # -- the HTTP listener --
    async def serve(
        self, readiness: Readiness, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve ``/metrics`` and the health probes on ``metrics_address`` until cancelled (returns at
        once, reporting "", when no address is configured)."""
        if not self.metrics_address:
            task_status.started("")
            return
        metrics = self.metrics

        async def live() -> Response:
            return Response(200, b'{"status":"up"}')

        async def ready() -> Response:
            ok, body = readiness.report()
            return Response(200 if ok else 503, json.dumps(body).encode())

        async def health() -> Response:
            ok, body = readiness.report()
            body["info"] = {"name": self.service.name, "id": self.service.id}
            return Response(200 if ok else 503, json.dumps(body).encode())

        routes: dict[str, Any] = {"/health": health, "/health/live": live, "/health/ready": ready}
        if metrics is not None:
            from ._metrics import CONTENT_TYPE_LATEST

            async def scrape() -> Response:
                return Response(200, metrics.exposition(), CONTENT_TYPE_LATEST)

            routes["/metrics"] = scrape
        self.listener = HttpListener(self.metrics_address, routes)
        await self.listener.serve(task_status=task_status)


def _maybe_default_provider(service_name: str) -> Any:
    """With no tracer provider configured anywhere (OpenTelemetry's proxy default) and the SDK
    installed, make one from the standard ``OTEL_*`` environment: ``OTEL_TRACES_EXPORTER`` =
    ``console`` | ``otlp`` (needs opentelemetry-exporter-otlp-proto-http) | ``none`` (the default:
    spans are made and propagated, exported nowhere). Returns None to use the global provider."""
    from opentelemetry import trace

    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider):
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning(
            "tracing: opentelemetry-sdk is not installed; spans only propagate (pip install trimicro[otel])"
        )
        return None
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or service_name})
    provider = TracerProvider(resource=resource)
    for name in os.environ.get("OTEL_TRACES_EXPORTER", "none").split(","):
        name = name.strip().lower()
        exporter: Any = None
        if name == "console":
            exporter = ConsoleSpanExporter()
        elif name == "otlp":
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                    OTLPSpanExporter,
                )
            except ImportError:
                log.warning("tracing: OTEL_TRACES_EXPORTER=otlp needs trimicro[otlp]; not exporting")
                continue
            exporter = OTLPSpanExporter()
        elif name not in ("", "none"):
            log.warning("tracing: unknown OTEL_TRACES_EXPORTER %r ignored", name)
        if exporter is not None:
            # The SDK's batch processor exports from its own thread (the library's design): export
            # never blocks a call, and the thread is the SDK's, shut down with the provider.
            provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _maybe_default_meter_provider(service_name: str) -> Any:
    """With no SDK meter provider set globally and ``OTEL_METRICS_EXPORTER`` = ``console`` or ``otlp``
    (needs opentelemetry-exporter-otlp-proto-http), make one exporting every
    ``OTEL_METRIC_EXPORT_INTERVAL`` ms (the SDK's reader, default 60 s). Unset or ``none``: None, the
    global provider (OpenTelemetry's proxy until the application sets one)."""
    names = [n.strip().lower() for n in os.environ.get("OTEL_METRICS_EXPORTER", "none").split(",")]
    names = [n for n in names if n not in ("", "none")]
    if not names:
        return None
    from opentelemetry import metrics

    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
    except ImportError:
        log.warning("otel_metrics: opentelemetry-sdk is not installed (pip install trimicro[otel])")
        return None
    if isinstance(metrics.get_meter_provider(), MeterProvider):
        return None  # the application's
    readers = []
    for name in names:
        exporter: Any = None
        if name == "console":
            exporter = ConsoleMetricExporter()
        elif name == "otlp":
            try:
                from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[import-not-found,unused-ignore]
                    OTLPMetricExporter,
                )
            except ImportError:
                log.warning("otel_metrics: OTEL_METRICS_EXPORTER=otlp needs trimicro[otlp]; not exporting")
                continue
            exporter = OTLPMetricExporter()
        else:
            log.warning("otel_metrics: unknown OTEL_METRICS_EXPORTER %r ignored", name)
        if exporter is not None:
            # the SDK's periodic reader exports from its own thread (the library's design)
            readers.append(PeriodicExportingMetricReader(exporter))
    if not readers:
        return None
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or service_name})
    return MeterProvider(metric_readers=readers, resource=resource)


def instrument(
    service: Any,
    *,
    tracing: bool | None = None,
    tracer_provider: Any = None,
    metrics: bool | None = None,
    registry: Any = None,
    metrics_address: str | None = None,
    otel_metrics: bool | None = None,
    meter_provider: Any = None,
) -> Observability:
    """Enable tracing and/or metrics on ``service`` (a :class:`trimicro.Service` not yet running).

    ``None`` arguments fall back to the service's options (``tracing``, ``metrics_address``,
    ``otel_metrics``); a ``tracer_provider``, ``registry`` or ``meter_provider`` implies its part.
    Calling it again returns what the first call set up. Raises ImportError naming the extra to
    install when a part's library is missing."""
    existing = getattr(service, "observability", None)
    if existing is not None:
        return existing  # type: ignore[no-any-return]
    opts = service.options
    address = opts.metrics_address if metrics_address is None else metrics_address
    want_tracing = tracer_provider is not None or (opts.tracing if tracing is None else tracing)
    want_metrics = (registry is not None or bool(address)) if metrics is None else metrics
    want_otel_metrics = meter_provider is not None or (
        opts.otel_metrics if otel_metrics is None else otel_metrics
    )
    obs = Observability(service, metrics_address=address)
    if want_tracing:
        try:
            from ._tracing import Tracing
        except ImportError as exc:
            raise ImportError(f"tracing needs OpenTelemetry: pip install 'trimicro[otel]' ({exc})") from exc
        provider = tracer_provider or _maybe_default_provider(service.name)
        obs.tracing = Tracing(service.name, provider, transport=opts.transport, broker=opts.broker)
    if want_metrics:
        try:
            from ._metrics import Metrics
        except ImportError as exc:
            if metrics or registry is not None:
                raise ImportError(
                    f"metrics need prometheus_client: pip install 'trimicro[metrics]' ({exc})"
                ) from exc
            # only an address was given: the health probes still work without prometheus_client
            log.warning(
                "metrics: prometheus_client is not installed (pip install 'trimicro[metrics]'); "
                "serving the health probes only"
            )
        else:
            obs.metrics = Metrics(service.name) if registry is None else Metrics(service.name, registry)
    if want_otel_metrics:
        try:
            from ._otel_metrics import OtelMetrics
        except ImportError as exc:
            raise ImportError(f"otel_metrics needs OpenTelemetry: pip install 'trimicro[otel]' ({exc})") from exc
        obs.otel_metrics = OtelMetrics(
            service.name,
            meter_provider or _maybe_default_meter_provider(service.name),
            transport=opts.transport,
            broker=opts.broker,
        )
    obs.install()
    service.observability = obs
    return obs
