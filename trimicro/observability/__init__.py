"""Observability: OpenTelemetry tracing, Prometheus metrics, health probes and structured logs.

Everything is off by default and costs nothing while off (OpenTelemetry and prometheus_client are
not even imported). Turn parts on with options (flags ``--x``, env ``MICRO_X``)::

    tracing=true            spans for handlers, calls, publishes and deliveries; W3C traceparent
    metrics_address=:9090   /metrics (Go Micro's metric names), /health, /health/live, /health/ready
    otel_metrics=true       the same metrics as OpenTelemetry instruments (rpc.server.call.duration, ...)
    log_format=json         JSON log lines with trace_id / span_id

or call :func:`instrument` before the service runs, e.g. to pass a tracer provider. See
docs/observability.md.
"""

from typing import TYPE_CHECKING, Any

from ._health import Readiness as Readiness
from ._http import HttpListener as HttpListener
from ._logs import JsonFormatter as JsonFormatter
from ._logs import TraceContextFilter as TraceContextFilter
from ._logs import configure_logging as configure_logging
from ._logs import current_trace_ids as current_trace_ids
from ._observer import Observability as Observability
from ._observer import instrument as instrument

if TYPE_CHECKING:
    from ._metrics import Metrics as Metrics
    from ._otel_metrics import OtelMetrics as OtelMetrics
    from ._tracing import Tracing as Tracing

__all__ = [
    "HttpListener",
    "JsonFormatter",
    "Metrics",
    "Observability",
    "OtelMetrics",
    "Readiness",
    "TraceContextFilter",
    "Tracing",
    "configure_logging",
    "current_trace_ids",
    "instrument",
]


def __getattr__(name: str) -> Any:
    # Tracing, Metrics and OtelMetrics import their libraries: only on first use.
    if name == "Tracing":
        from ._tracing import Tracing

        return Tracing
    if name == "Metrics":
        from ._metrics import Metrics

        return Metrics
    if name == "OtelMetrics":
        from ._otel_metrics import OtelMetrics

        return OtelMetrics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
