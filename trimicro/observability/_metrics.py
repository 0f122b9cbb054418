"""Prometheus metrics: handler, client, subscriber and publish wrappers, named as Go Micro's.

Imported only when metrics are enabled (``metrics_address`` / ``MICRO_METRICS_ADDRESS``, or
:func:`trimicro.observability.instrument`): ``prometheus_client`` is the ``metrics`` extra.

Go Micro's ``wrapper/monitoring/prometheus`` (default name ``micro``) counts every handler call in
``micro_request_total{service, endpoint, status}`` and times it in
``micro_request_duration_seconds{service, endpoint, status}`` (status ``success``/``fail``, the
default buckets); its subscriber wrapper uses the same two with ``service="subscriber"`` and the topic
as ``endpoint``, its client wrapper ``service="publisher"`` for publishes. We keep those names and
labels, so Go Micro dashboards work unchanged, and add what it lacks:

- ``micro_request_errors_total{service, endpoint, code}``: failures by Micro error code (500 for an
  exception that is not a MicroError, 408 for a cancelled call);
- ``micro_requests_in_flight{service, endpoint}``;
- the client side as ``micro_client_request_total``, ``micro_client_request_duration_seconds``,
  ``micro_client_request_errors_total``, ``micro_client_requests_in_flight`` (same labels; the Go
  wrapper would put them in the server's metrics when both are installed under one name);
- the selector's outlier ejection and the client's retry counters, read from their ``stats()`` (the
  same numbers ``Debug.Stats`` shows) at scrape time: ``micro_selector_ejections_total``,
  ``micro_selector_reinstated_total``, ``micro_selector_probes_total``,
  ``micro_selector_ejected_nodes{service}``, ``micro_client_retries_total``,
  ``micro_client_retries_throttled_total`` (the retry budget said no), ``micro_client_hedges_total``,
  ``micro_client_attempt_timeouts_total``, ``micro_client_pushbacks_total``,
  ``micro_client_retry_tokens{service}``.

Each service has its own :class:`prometheus_client.CollectorRegistry` (with the process and GC
collectors), so two services in one process never collide; ``registry=`` shares one.

Per call: one dict lookup for the label children (cached), a counter increment and a histogram
observation; no allocation beyond the key tuple.
"""

from __future__ import annotations

import math
import time
from typing import Any

import attrs
import trio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    generate_latest,
    process_collector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..broker import BrokerMessage
from ..client import CallFunc, CallRequest, PublishFunc
from ..context import Context
from ..errors import MicroError
from ..server import HandlerFunc, Request, SubscriberCall, SubscriberMessage

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LABELS = ("service", "endpoint", "status")


def _code(exc: BaseException) -> str:
    if isinstance(exc, MicroError):
        return str(exc.code)
    if isinstance(exc, trio.Cancelled):
        return "408"
    return "500"


@attrs.define(eq=False)
class _Side:
    """The four metrics of one side (server or client)."""

    total: Counter
    duration: Histogram
    errors: Counter
    in_flight: Gauge
    _children: dict[tuple[str, str], tuple[Any, Any, Any, Any, Any]] = attrs.field(factory=dict)

    @classmethod
    def create(cls, prefix: str, what: str, registry: CollectorRegistry) -> _Side:
        return cls(
            Counter(
                f"{prefix}_request_total",
                f"How many go-micro {what} processed, partitioned by service, endpoint and status.",
                _LABELS,
                registry=registry,
            ),
            Histogram(
                f"{prefix}_request_duration_seconds",
                f"Histogram of go-micro {what} latencies in seconds, partitioned by service, endpoint and status.",
                _LABELS,
                registry=registry,
            ),
            Counter(
                f"{prefix}_request_errors_total",
                f"Failed go-micro {what}, partitioned by service, endpoint and Micro error code.",
                ("service", "endpoint", "code"),
                registry=registry,
            ),
            Gauge(
                f"{prefix}_requests_in_flight",
                f"go-micro {what} in progress, partitioned by service and endpoint.",
                ("service", "endpoint"),
                registry=registry,
            ),
        )

    def children(self, service: str, endpoint: str) -> tuple[Any, Any, Any, Any, Any]:
        """(ok counter, fail counter, ok histogram, fail histogram, in-flight gauge), cached."""
        key = (service, endpoint)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = (
                self.total.labels(service, endpoint, "success"),
                self.total.labels(service, endpoint, "fail"),
                self.duration.labels(service, endpoint, "success"),
                self.duration.labels(service, endpoint, "fail"),
                self.in_flight.labels(service, endpoint),
            )
        return found

    async def observe(self, service: str, endpoint: str, call: Any, *args: Any) -> Any:
        ok, fail, ok_h, fail_h, flight = self.children(service, endpoint)
        flight.inc()
        start = time.perf_counter()
        try:
            result = await call(*args)
        except BaseException as exc:
            fail.inc()
            fail_h.observe(time.perf_counter() - start)
            self.errors.labels(service, endpoint, _code(exc)).inc()
            raise
        finally:
            flight.dec()
        ok.inc()
        ok_h.observe(time.perf_counter() - start)
        return result


@attrs.define(eq=False)
class Metrics:
    """The wrappers and registry of one service; :meth:`exposition` is the ``/metrics`` body."""

    service: str
    registry: CollectorRegistry = attrs.field(factory=lambda: CollectorRegistry(auto_describe=True))
    namespace: str = "micro"
    process: bool = True
    server: _Side = attrs.field(init=False)
    client: _Side = attrs.field(init=False)
    sources: _Sources = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        ns = self.namespace
        self.server = _Side.create(ns, "requests", self.registry)
        self.client = _Side.create(f"{ns}_client", "client calls", self.registry)
        self.sources = _Sources(ns)
        self.registry.register(self.sources)
        if self.process:
            process_collector.ProcessCollector(registry=self.registry)
            gc_collector.GCCollector(registry=self.registry)

    # -- wrappers --
    def handler_wrapper(self, next_handler: HandlerFunc) -> HandlerFunc:
        side = self.server

        async def handler(req: Request, ctx: Any) -> Any:
            return await side.observe(req.service, req.endpoint, next_handler, req, ctx)

        return handler

    def call_wrapper(self, next_call: CallFunc) -> CallFunc:
        side = self.client

        async def call(req: CallRequest) -> Any:
            return await side.observe(req.service, req.endpoint, next_call, req)

        return call

    def subscriber_wrapper(self, next_call: SubscriberCall) -> SubscriberCall:
        side = self.server

        async def deliver(msg: SubscriberMessage, ctx: Context) -> None:
            await side.observe("subscriber", msg.topic, next_call, msg, ctx)

        return deliver

    def publish_wrapper(self, next_publish: PublishFunc) -> PublishFunc:
        side = self.client

        async def publish(topic: str, message: BrokerMessage) -> None:
            await side.observe("publisher", topic, next_publish, topic, message)

        return publish

    def watch(self, *, selector: Any = None, client: Any = None) -> None:
        """Export ``selector.stats()`` and ``client.stats()`` (a run's new ones replace the last)."""
        self.sources.selector, self.sources.client = selector, client

    # -- reading --
    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def summary(self) -> dict[str, Any]:
        """Server-side totals for ``Debug.Stats``: requests, errors, in flight, p50/p99 latency in ms
        (estimated from the histogram buckets; subscriber deliveries included)."""
        requests = errors = 0.0
        in_flight = 0.0
        buckets: dict[float, float] = {}
        for metric in self.server.total.collect():
            for s in metric.samples:
                if s.name.endswith("_total"):
                    requests += s.value
                    if s.labels.get("status") == "fail":
                        errors += s.value
        for metric in self.server.in_flight.collect():
            in_flight += sum(s.value for s in metric.samples)
        for metric in self.server.duration.collect():
            for s in metric.samples:
                if s.name.endswith("_bucket"):
                    le = float(s.labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + s.value
        out: dict[str, Any] = {"requests": int(requests), "errors": int(errors), "in_flight": int(in_flight)}
        for name, q in (("p50_ms", 0.5), ("p99_ms", 0.99)):
            value = _quantile(sorted(buckets.items()), q)
            if value is not None:
                out[name] = round(value * 1000, 3)
        return out


_SELECTOR = {
    "ejections": ("selector_ejections", "Nodes the selector ejected from rotation (outlier detection)."),
    "reinstated": ("selector_reinstated", "Ejected nodes put back into rotation."),
    "probes": ("selector_probes", "Calls sent to ejected nodes to probe them."),
}
_CLIENT = {
    "retries": ("client_retries", "Retried call attempts."),
    "retries_throttled": ("client_retries_throttled", "Retries refused because the retry budget was spent."),
    "hedges": ("client_hedges", "Hedged (speculative) call attempts."),
    "attempt_timeouts": ("client_attempt_timeouts", "Attempts that ran out of their per-attempt timeout."),
    "pushbacks": ("client_pushbacks", "Retries a server asked the client not to make."),
}


@attrs.define(eq=False)
class _Sources:
    """A custom collector: the selector's and client's own counters, read at scrape time, so the
    call path pays nothing for them."""

    namespace: str
    selector: Any = None
    client: Any = None

    def describe(self) -> list[Any]:
        return []  # unchecked collector: the families depend on what the sources report

    def collect(self) -> Any:
        ns = self.namespace
        for source, table, per_service in (
            (self.selector, _SELECTOR, ("ejected", "selector_ejected_nodes", "Nodes out of rotation now.")),
            (self.client, _CLIENT, ("retry_tokens", "client_retry_tokens", "Retry budget tokens left.")),
        ):
            stats = getattr(source, "stats", None)
            if not callable(stats):
                continue
            try:
                values = stats()
            except Exception:
                continue
            for key, (name, doc) in table.items():
                value = values.get(key)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    yield CounterMetricFamily(f"{ns}_{name}", doc, value=value)
            key, name, doc = per_service
            found = values.get(key)
            if isinstance(found, dict):
                gauge = GaugeMetricFamily(f"{ns}_{name}", doc, labels=["service"])
                for service, v in sorted(found.items()):
                    gauge.add_metric(
                        [str(service)], float(len(v)) if isinstance(v, list | tuple) else float(v)
                    )
                yield gauge


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus' ``histogram_quantile``: linear interpolation inside the bucket holding rank q."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower
            inside = count - below
            return lower + (upper - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = upper, count
    return lower
