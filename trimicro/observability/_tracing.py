"""OpenTelemetry tracing: handler, client, subscriber and publish wrappers, W3C trace context.

Imported only when tracing is enabled (``tracing=true`` / ``MICRO_TRACING``, or
:func:`trimicro.observability.instrument`), because importing OpenTelemetry is the cost we refuse to
pay when it is off.

Spans follow the OpenTelemetry semantic conventions:

- a handler call is a SERVER span ``{rpc.service}/{rpc.method}`` with ``rpc.system`` (``go-micro``
  for mucp, ``grpc`` for gRPC), ``rpc.service`` (the micro service name), ``rpc.method``
  (``Handler.Method``), ``server.address``/``server.port``, ``network.peer.address``; a client call is
  the CLIENT span of the same name. An error sets status ERROR, ``error.type`` (the Micro error code,
  or the exception type) and, for gRPC, ``rpc.grpc.status_code``;
- a publish is a PRODUCER span ``publish {topic}``, a delivery a CONSUMER span ``process {topic}``
  (``messaging.system`` = broker name, ``messaging.destination.name``, ``messaging.operation.type``,
  ``messaging.message.id``).

Context travels as W3C ``traceparent``/``tracestate`` (whatever the global propagator is, by default
trace context + baggage) in call metadata, which mucp sends as the header ``Traceparent`` and gRPC as
the ``traceparent`` metadata key, and in broker message headers, so a trace crosses Go Micro services
that use go-micro's ``wrapper/trace/opentelemetry`` (it writes the same ``Traceparent`` metadata).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

import attrs
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.trace import SpanKind, Status, StatusCode

from .._metadata import MESSAGE_ID, canonical
from ..broker import BrokerMessage
from ..client import CallFunc, CallRequest, PublishFunc
from ..context import Context
from ..errors import MicroError
from ..server import HandlerFunc, Request, SubscriberCall, SubscriberMessage

__all__ = ["HeaderGetter", "HeaderSetter", "Tracing"]

INSTRUMENTATION = "trimicro"
_GRPC_STATUS = {
    400: 3, 401: 16, 403: 7, 404: 5, 408: 4, 409: 6, 429: 8, 499: 1, 500: 13, 501: 12, 503: 14, 504: 4,
}  # fmt: skip


class HeaderGetter(Getter[Mapping[str, str]]):
    """Reads propagation fields from canonical-name headers (``Traceparent``), any case accepted:
    broker headers come from whatever wrote them."""

    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(canonical(key))
        if value is None:
            value = carrier.get(key)
            if value is None:
                low = key.lower()
                for k, v in carrier.items():
                    if k.lower() == low:
                        value = v
                        break
                else:
                    return None
        return [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier)


class HeaderSetter(Setter[MutableMapping[str, str]]):
    """Writes propagation fields with canonical names, as Go Micro's wrapper does (``Traceparent``).

    ``traceparent`` keeps only the *sampled* trace flag: recent Python SDKs also set W3C level 2's
    *random* flag (flags ``03``), and OpenTelemetry Go up to at least 1.35 (what go-micro v5.30 pulls
    in) rejects a version-00 traceparent whose flags exceed 2, so a Go peer would start a new trace.
    The random bit is only a hint; dropping it loses nothing."""

    def set(self, carrier: MutableMapping[str, str], key: str, value: str) -> None:
        if key == "traceparent" and len(value) == 55 and value[-2:] not in ("00", "01"):
            try:
                value = value[:-2] + format(int(value[-2:], 16) & 0x01, "02x")
            except ValueError:
                pass
        carrier[canonical(key)] = value


_GETTER = HeaderGetter()
_SETTER = HeaderSetter()


def _split(address: str) -> tuple[str, int | None]:
    host, sep, port = address.rpartition(":")
    if not sep:
        return address, None
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return address, None


def _record_error(span: trace.Span, exc: BaseException, grpc: bool) -> None:
    if isinstance(exc, MicroError):
        span.set_status(Status(StatusCode.ERROR, exc.detail or exc.status))
        span.set_attribute("error.type", str(exc.code))
        if grpc:
            span.set_attribute("rpc.grpc.status_code", _GRPC_STATUS.get(exc.code, 2))
    else:
        span.set_status(Status(StatusCode.ERROR, str(exc)))
        span.set_attribute("error.type", type(exc).__qualname__)
    span.record_exception(exc)


@attrs.define(eq=False)
class Tracing:
    """The wrappers of one service. ``tracer_provider`` None: the global one (``trace.set_tracer_provider``).

    ``address`` (the server's advertised ``host:port``) fills ``server.address`` on server spans once
    known; ``transport`` ("http" or "grpc") picks the client's ``rpc.system``; ``broker`` names
    ``messaging.system``."""

    service: str
    tracer_provider: Any = None
    transport: str = "http"
    broker: str = ""
    address: str = ""
    tracer: trace.Tracer = attrs.field(init=False)
    _server_attrs: dict[tuple[str, bool], dict[str, Any]] = attrs.field(factory=dict, init=False)
    _client_attrs: dict[tuple[str, str], dict[str, Any]] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        provider = self.tracer_provider or trace.get_tracer_provider()
        self.tracer = provider.get_tracer(INSTRUMENTATION)

    # -- server --
    def _attrs_for_server(self, endpoint: str, grpc: bool) -> dict[str, Any]:
        key = (endpoint, grpc)
        found = self._server_attrs.get(key)
        if found is None:
            found = {
                "rpc.system": "grpc" if grpc else "go-micro",
                "rpc.service": self.service,
                "rpc.method": endpoint,
            }
            host, port = _split(self.address)
            if host:
                found["server.address"] = host
            if port is not None:
                found["server.port"] = port
            self._server_attrs[key] = found
        return found

    def handler_wrapper(self, next_handler: HandlerFunc) -> HandlerFunc:
        tracer = self.tracer

        async def handler(req: Request, ctx: Any) -> Any:
            grpc = req.content_type.startswith("application/grpc")
            parent = propagate.extract(req.header, getter=_GETTER)
            span = tracer.start_span(
                f"{self.service}/{req.endpoint}",
                parent,
                SpanKind.SERVER,
                self._attrs_for_server(req.endpoint, grpc),
            )
            remote = getattr(ctx, "remote", "")
            if remote:
                span.set_attribute("network.peer.address", _split(remote)[0])
            token = otel_context.attach(trace.set_span_in_context(span, parent))
            try:
                result = await next_handler(req, ctx)
            except Exception as exc:
                _record_error(span, exc, grpc)
                raise
            except BaseException:  # cancelled: the caller's deadline or a departed peer
                span.set_status(Status(StatusCode.ERROR, "cancelled"))
                span.set_attribute("error.type", "cancelled")
                raise
            finally:
                otel_context.detach(token)
                span.end()
            if grpc:
                span.set_attribute("rpc.grpc.status_code", 0)
            return result

        return handler

    # -- client --
    def call_wrapper(self, next_call: CallFunc) -> CallFunc:
        tracer = self.tracer
        grpc = self.transport == "grpc"

        async def call(req: CallRequest) -> Any:
            key = (req.service, req.endpoint)
            attributes = self._client_attrs.get(key)
            if attributes is None:
                attributes = self._client_attrs[key] = {
                    "rpc.system": "grpc" if grpc else "go-micro",
                    "rpc.service": req.service,
                    "rpc.method": req.endpoint,
                }
            span = tracer.start_span(f"{req.service}/{req.endpoint}", None, SpanKind.CLIENT, attributes)
            if req.address:
                host, port = _split(req.address)
                span.set_attribute("server.address", host)
                if port is not None:
                    span.set_attribute("server.port", port)
            ctx = trace.set_span_in_context(span)
            propagate.inject(req.metadata, ctx, _SETTER)
            token = otel_context.attach(ctx)
            try:
                return await next_call(req)
            except Exception as exc:
                _record_error(span, exc, grpc)
                raise
            except BaseException:
                span.set_status(Status(StatusCode.ERROR, "cancelled"))
                span.set_attribute("error.type", "cancelled")
                raise
            finally:
                otel_context.detach(token)
                span.end()

        return call

    # -- pub/sub --
    def publish_wrapper(self, next_publish: PublishFunc) -> PublishFunc:
        tracer = self.tracer

        async def publish(topic: str, message: BrokerMessage) -> None:
            attributes: dict[str, Any] = {
                "messaging.system": self.broker or "micro",
                "messaging.destination.name": topic,
                "messaging.operation.type": "publish",
                "messaging.operation.name": "publish",
            }
            mid = message.header.get(MESSAGE_ID)
            if mid:
                attributes["messaging.message.id"] = mid
            span = tracer.start_span(f"publish {topic}", None, SpanKind.PRODUCER, attributes)
            ctx = trace.set_span_in_context(span)
            propagate.inject(message.header, ctx, _SETTER)
            token = otel_context.attach(ctx)
            try:
                await next_publish(topic, message)
            except Exception as exc:
                _record_error(span, exc, False)
                raise
            finally:
                otel_context.detach(token)
                span.end()

        return publish

    def subscriber_wrapper(self, next_call: SubscriberCall) -> SubscriberCall:
        tracer = self.tracer

        async def deliver(msg: SubscriberMessage, ctx: Context) -> None:
            parent = propagate.extract(msg.header, getter=_GETTER)
            attributes: dict[str, Any] = {
                "messaging.system": self.broker or "micro",
                "messaging.destination.name": msg.topic,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.consumer.group.name": self.service,
            }
            if ctx.id:
                attributes["messaging.message.id"] = ctx.id
            span = tracer.start_span(f"process {msg.topic}", parent, SpanKind.CONSUMER, attributes)
            token = otel_context.attach(trace.set_span_in_context(span, parent))
            try:
                await next_call(msg, ctx)
            except Exception as exc:
                _record_error(span, exc, False)
                raise
            finally:
                otel_context.detach(token)
                span.end()

        return deliver
