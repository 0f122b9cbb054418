"""OpenTelemetry metrics: handler, client, subscriber and publish wrappers, named by the semconv.

Imported only when OpenTelemetry metrics are enabled (``otel_metrics=true`` / ``MICRO_OTEL_METRICS``,
or :func:`trimicro.observability.instrument` with ``otel_metrics=True`` or a ``meter_provider``).
It is the same information as the Prometheus metrics (:mod:`._metrics`), as OpenTelemetry
instruments, for deployments that ship metrics over OTLP instead of being scraped; the two may run
together.

Names and attributes follow the OpenTelemetry semantic conventions (RPC and messaging, the
seconds-based ``*.call.duration`` histograms that replaced the millisecond ``rpc.server.duration``):

- ``rpc.server.call.duration`` / ``rpc.client.call.duration`` (histogram, ``s``) with ``rpc.system``
  (``go-micro`` for mucp, ``grpc``), ``rpc.service``, ``rpc.method``, for gRPC ``rpc.grpc.status_code``
  (what the wire carries, :func:`trimicro.errors.to_grpc_status`), and on failure ``error.type`` (the
  Micro error code, the exception type, or ``cancelled``). The histogram's count is the request count
  and its count with ``error.type`` the error count, which is why there is no separate counter: each
  would be one more measurement per call;
- ``rpc.server.active_requests`` / ``rpc.client.active_requests`` (observable up-down counter,
  ``{request}``, ``rpc.system``/``rpc.service``/``rpc.method``): in flight. Not in the RPC semconv;
  named after ``http.server.active_requests``;
- ``messaging.process.duration`` (deliveries) and ``messaging.client.operation.duration`` (publishes),
  histograms in ``s`` with ``messaging.system``, ``messaging.destination.name``,
  ``messaging.operation.name``/``.type``, ``messaging.consumer.group.name`` and ``error.type``;
- the selector's outlier ejection and the client's retry counters, read from their ``stats()`` when
  the reader collects (as the Prometheus side reads them at scrape time): ``micro.selector.ejections``,
  ``.reinstated``, ``.probes`` (counters), ``micro.selector.ejected_nodes{rpc.service}``,
  ``micro.client.retries``, ``.retries_throttled``, ``.hedges``, ``.attempt_timeouts``, ``.pushbacks``
  (counters), ``micro.client.retry_tokens{rpc.service}`` (gauge).

Why in-flight is observable: the SDK spends ~7 µs per synchronous measurement (attribute validation
and hashing, on a 2-CPU box), so an up-down counter's two ``add`` calls would triple the per-call
cost. Instead each endpoint keeps a plain int, and the reader's callback reports it; a call pays one
histogram ``record`` and two integer updates per side. Attribute dicts are made once per endpoint.

Why durations skip ``Histogram.record``: since SDK 1.45 every measurement's attributes are cleaned
and validated again when it is made (about a third of a ``record``'s ~80 Python calls), yet ours are
the same few dicts for every call of an endpoint. :func:`_recorder` cleans each dict once (with
the SDK's own ``Measurement``) and hands the SDK's measurement consumer what ``record`` would, so
the aggregation, views, exemplars and cardinality limits are the SDK's. It is used only with the
SDK's histogram and a ``Measurement`` of the fields it expects; else ``record`` itself runs.

Callbacks may run on the SDK's export thread (the periodic reader's design): they only read ints
and copy dicts, and skip a collection rather than fail if a dict changes under them.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

import attrs
import trio
from opentelemetry import context as otel_context
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from ..broker import BrokerMessage
from ..client import CallFunc, CallRequest, PublishFunc
from ..context import Context
from ..errors import MicroError, to_grpc_status
from ..server import HandlerFunc, Request, SubscriberCall, SubscriberMessage

__all__ = ["OtelMetrics"]

INSTRUMENTATION = "trimicro"
#: the semconv's advice for RPC and messaging durations in seconds
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
#: attribute dicts cached per instrument; past it, idle entries are dropped (the SDK has its own
#: cardinality limit, 2000 attribute sets per instrument by default)
_CACHE_LIMIT = 4096

Attributes = dict[str, Any]


def _error_type(exc: BaseException) -> tuple[str, int]:
    """(``error.type``, gRPC status code) of a failure: as the tracing wrappers name it."""
    if isinstance(exc, MicroError):
        return str(exc.code), to_grpc_status(exc.code)
    if isinstance(exc, trio.Cancelled):
        return "cancelled", 1
    return type(exc).__qualname__, 2


#: record(amount, attributes), the attributes as :func:`_recorder`'s ``clean`` returned them
Recorder = Callable[[float, Attributes], None]
_MEASUREMENT_FIELDS: Final = ("value", "time_unix_nano", "instrument", "context", "attributes")


def _recorder(histogram: metrics.Histogram) -> tuple[Recorder, Callable[[Attributes], Attributes]]:
    """(record, clean) for ``histogram``: ``clean`` turns an attribute dict into what ``record``
    takes, once per dict; ``record`` is the SDK's ``Histogram.record`` without cleaning again,
    or ``histogram.record`` (and ``clean`` the identity) when this is not the SDK layout it knows."""
    try:
        from opentelemetry.sdk.metrics._internal.instrument import _Histogram
        from opentelemetry.sdk.metrics._internal.measurement import Measurement
    except ImportError:  # pragma: no cover - the SDK moved its internals
        return histogram.record, _identity
    consumer = getattr(histogram, "_measurement_consumer", None)
    enabled = getattr(histogram, "_is_enabled", None)
    if (
        type(histogram) is not _Histogram
        or not dataclasses.is_dataclass(Measurement)
        or tuple(f.name for f in dataclasses.fields(Measurement)) != _MEASUREMENT_FIELDS
        or not callable(getattr(consumer, "consume_measurement", None))
        or not callable(enabled)
    ):
        return histogram.record, _identity

    class Cleaned(Measurement):
        """A measurement whose attributes were cleaned when its endpoint was first seen."""

        def __post_init__(self) -> None:
            pass

    consume = consumer.consume_measurement  # type: ignore[union-attr]
    slow = histogram.record
    get_current = otel_context.get_current

    def record(amount: float, attributes: Attributes) -> None:
        if not enabled():  # the SDK's record does nothing then either
            return
        if amount < 0 or not math.isfinite(amount):
            slow(amount, attributes)  # the SDK's own warning
            return
        consume(Cleaned(amount, time.time_ns(), histogram, get_current(), attributes))

    def clean(attributes: Attributes) -> Attributes:
        return dict(Measurement(0, 0, histogram, otel_context.Context(), attributes).attributes or {})

    return record, clean


def _identity(attributes: Attributes) -> Attributes:
    return attributes


def _histogram(meter: metrics.Meter, name: str, description: str) -> metrics.Histogram:
    try:
        return meter.create_histogram(name, "s", description, explicit_bucket_boundaries_advisory=BUCKETS)
    except TypeError:  # opentelemetry-api before 1.23: no bucket advice, the SDK's default buckets
        return meter.create_histogram(name, "s", description)


@attrs.define(eq=False, slots=True)
class _Endpoint:
    """One (service, method, system) of one side: its attribute dicts and its in-flight count."""

    ok: Attributes  # a success (with rpc.grpc.status_code 0 for gRPC)
    base: Attributes  # rpc.system, rpc.service, rpc.method: the in-flight count's
    grpc: bool
    in_flight: int = 0
    failed: dict[str, Attributes] = attrs.field(factory=dict)

    def failure(self, exc: BaseException, clean: Callable[[Attributes], Attributes]) -> Attributes:
        error, status = _error_type(exc)
        found = self.failed.get(error)
        if found is None:
            found = {**self.base, "error.type": error}
            if self.grpc:
                found["rpc.grpc.status_code"] = status
            if len(self.failed) >= 64:  # exception type names are the only open-ended part
                self.failed.clear()
            found = self.failed[error] = clean(found)
        return found


@attrs.define(eq=False)
class _Rpc:
    """One side's duration histogram, and the endpoints its in-flight callback reports."""

    duration: metrics.Histogram
    _endpoints: dict[tuple[str, str, bool], _Endpoint] = attrs.field(factory=dict)
    _record: Recorder = attrs.field(init=False)
    _clean: Callable[[Attributes], Attributes] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._record, self._clean = _recorder(self.duration)

    @classmethod
    def create(cls, meter: metrics.Meter, side: str) -> _Rpc:
        what = "an incoming" if side == "server" else "an outgoing"
        rpc = cls(_histogram(meter, f"rpc.{side}.call.duration", f"Measures the duration of {what} RPC."))
        meter.create_observable_up_down_counter(
            f"rpc.{side}.active_requests", [rpc.active], "{request}", f"Number of {side} RPCs in progress."
        )
        return rpc

    def endpoint(self, service: str, method: str, grpc: bool) -> _Endpoint:
        key = (service, method, grpc)
        found = self._endpoints.get(key)
        if found is None:
            base: Attributes = {
                "rpc.system": "grpc" if grpc else "go-micro",
                "rpc.service": service,
                "rpc.method": method,
            }
            if len(self._endpoints) >= _CACHE_LIMIT:  # keep the ones with calls in flight
                self._endpoints = {k: v for k, v in self._endpoints.items() if v.in_flight}
            ok = {**base, "rpc.grpc.status_code": 0} if grpc else base
            found = self._endpoints[key] = _Endpoint(self._clean(ok), base, grpc)
        return found

    def active(self, options: CallbackOptions) -> Iterable[Observation]:
        try:
            endpoints = list(self._endpoints.values())
        except RuntimeError:  # changed size on the event loop's thread: skip this collection
            return []
        return [Observation(e.in_flight, e.base) for e in endpoints]

    async def observe(self, service: str, method: str, grpc: bool, call: Any, *args: Any) -> Any:
        endpoint = self.endpoint(service, method, grpc)
        endpoint.in_flight += 1
        start = time.perf_counter()
        try:
            result = await call(*args)
        except BaseException as exc:
            self._record(time.perf_counter() - start, endpoint.failure(exc, self._clean))
            raise
        finally:
            endpoint.in_flight -= 1
        self._record(time.perf_counter() - start, endpoint.ok)
        return result


@attrs.define(eq=False)
class _Messaging:
    """Deliveries or publishes: one duration histogram, attribute dicts per topic."""

    duration: metrics.Histogram
    operation: str  # "process" or "publish"
    system: str
    group: str = ""
    _ok: dict[str, Attributes] = attrs.field(factory=dict)
    _failed: dict[tuple[str, str], Attributes] = attrs.field(factory=dict)
    _record: Recorder = attrs.field(init=False)
    _clean: Callable[[Attributes], Attributes] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._record, self._clean = _recorder(self.duration)

    def ok(self, topic: str) -> Attributes:
        found = self._ok.get(topic)
        if found is None:
            found = {
                "messaging.system": self.system,
                "messaging.destination.name": topic,
                "messaging.operation.name": self.operation,
                "messaging.operation.type": "process" if self.operation == "process" else "send",
            }
            if self.group:
                found["messaging.consumer.group.name"] = self.group
            if len(self._ok) >= _CACHE_LIMIT:
                self._ok.clear()
            found = self._ok[topic] = self._clean(found)
        return found

    def failed(self, topic: str, exc: BaseException) -> Attributes:
        error = _error_type(exc)[0]
        found = self._failed.get((topic, error))
        if found is None:
            if len(self._failed) >= _CACHE_LIMIT:
                self._failed.clear()
            found = self._failed[(topic, error)] = self._clean({**self.ok(topic), "error.type": error})
        return found

    async def observe(self, topic: str, call: Any, *args: Any) -> None:
        start = time.perf_counter()
        try:
            await call(*args)
        except BaseException as exc:
            self._record(time.perf_counter() - start, self.failed(topic, exc))
            raise
        self._record(time.perf_counter() - start, self.ok(topic))


#: stats() key -> (instrument name, unit, description): counters, as the Prometheus side's _SELECTOR
_SELECTOR = {
    "ejections": ("micro.selector.ejections", "{node}", "Nodes the selector ejected from rotation."),
    "reinstated": ("micro.selector.reinstated", "{node}", "Ejected nodes put back into rotation."),
    "probes": ("micro.selector.probes", "{call}", "Calls sent to ejected nodes to probe them."),
}
_CLIENT = {
    "retries": ("micro.client.retries", "{attempt}", "Retried call attempts."),
    "retries_throttled": (
        "micro.client.retries_throttled",
        "{attempt}",
        "Retries refused because the retry budget was spent.",
    ),
    "hedges": ("micro.client.hedges", "{attempt}", "Hedged (speculative) call attempts."),
    "attempt_timeouts": (
        "micro.client.attempt_timeouts",
        "{attempt}",
        "Attempts that ran out of their per-attempt timeout.",
    ),
    "pushbacks": ("micro.client.pushbacks", "{attempt}", "Retries a server asked the client not to make."),
}


@attrs.define(eq=False)
class _Sources:
    """The selector's and client's own counters, read when the reader collects: the call path pays
    nothing for them. :meth:`OtelMetrics.watch` points it at a run's selector and client."""

    selector: Any = None
    client: Any = None

    @staticmethod
    def _stats(source: Any) -> dict[str, Any]:
        stats = getattr(source, "stats", None)
        if not callable(stats):
            return {}
        try:
            values = stats()
        except Exception:  # a dict changed under us (export thread) or a source's own trouble
            return {}
        return values if isinstance(values, dict) else {}

    def counter(self, which: str, key: str) -> Any:
        def read(options: CallbackOptions) -> Iterable[Observation]:
            value = self._stats(self.selector if which == "selector" else self.client).get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return [Observation(value)]
            return []

        return read

    def per_service(self, which: str, key: str) -> Any:
        def read(options: CallbackOptions) -> Iterable[Observation]:
            found = self._stats(self.selector if which == "selector" else self.client).get(key)
            if not isinstance(found, dict):
                return []
            return [
                Observation(len(v) if isinstance(v, list | tuple) else v, {"rpc.service": str(s)})
                for s, v in sorted(found.items())
            ]

        return read

    def register(self, meter: metrics.Meter) -> None:
        for which, table in (("selector", _SELECTOR), ("client", _CLIENT)):
            for key, (name, unit, doc) in table.items():
                meter.create_observable_counter(name, [self.counter(which, key)], unit, doc)
        meter.create_observable_up_down_counter(
            "micro.selector.ejected_nodes",
            [self.per_service("selector", "ejected")],
            "{node}",
            "Nodes out of rotation now.",
        )
        meter.create_observable_gauge(
            "micro.client.retry_tokens",
            [self.per_service("client", "retry_tokens")],
            "{token}",
            "Retry budget tokens left.",
        )


@attrs.define(eq=False)
class OtelMetrics:
    """The OpenTelemetry metric wrappers of one service. ``meter_provider`` None: the global one
    (``metrics.set_meter_provider``; until one is set, OpenTelemetry's proxy records nothing).

    ``transport`` ("http" or "grpc") picks the client's ``rpc.system``; ``broker`` names
    ``messaging.system``."""

    service: str
    meter_provider: Any = None
    transport: str = "http"
    broker: str = ""
    meter: metrics.Meter = attrs.field(init=False)
    server: _Rpc = attrs.field(init=False)
    client: _Rpc = attrs.field(init=False)
    deliveries: _Messaging = attrs.field(init=False)
    publishes: _Messaging = attrs.field(init=False)
    sources: _Sources = attrs.field(init=False, factory=_Sources)

    def __attrs_post_init__(self) -> None:
        provider = self.meter_provider or metrics.get_meter_provider()
        self.meter = meter = provider.get_meter(INSTRUMENTATION)
        self.server = _Rpc.create(meter, "server")
        self.client = _Rpc.create(meter, "client")
        system = self.broker or "micro"
        self.deliveries = _Messaging(
            _histogram(meter, "messaging.process.duration", "Duration of processing operation."),
            "process",
            system,
            self.service,
        )
        self.publishes = _Messaging(
            _histogram(meter, "messaging.client.operation.duration", "Duration of messaging operation."),
            "publish",
            system,
        )
        self.sources.register(meter)

    def watch(self, *, selector: Any = None, client: Any = None) -> None:
        """Report ``selector.stats()`` and ``client.stats()`` (a run's new ones replace the last)."""
        self.sources.selector, self.sources.client = selector, client

    # -- wrappers --
    def handler_wrapper(self, next_handler: HandlerFunc) -> HandlerFunc:
        side, service = self.server, self.service

        async def handler(req: Request, ctx: Any) -> Any:
            grpc = req.content_type.startswith("application/grpc")
            return await side.observe(service, req.endpoint, grpc, next_handler, req, ctx)

        return handler

    def call_wrapper(self, next_call: CallFunc) -> CallFunc:
        side, grpc = self.client, self.transport == "grpc"

        async def call(req: CallRequest) -> Any:
            return await side.observe(req.service, req.endpoint, grpc, next_call, req)

        return call

    def subscriber_wrapper(self, next_call: SubscriberCall) -> SubscriberCall:
        deliveries = self.deliveries

        async def deliver(msg: SubscriberMessage, ctx: Context) -> None:
            await deliveries.observe(msg.topic, next_call, msg, ctx)

        return deliver

    def publish_wrapper(self, next_publish: PublishFunc) -> PublishFunc:
        publishes = self.publishes

        async def publish(topic: str, message: BrokerMessage) -> None:
            await publishes.observe(topic, next_publish, topic, message)

        return publish
