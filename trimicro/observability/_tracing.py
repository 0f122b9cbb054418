"""OpenTelemetry tracing: handler, client, subscriber and publish wrappers, W3C trace context.

Imported only when tracing is enabled (``tracing=true`` / ``MICRO_TRACING``, or
:func:`trimicro.observability.instrument`), because importing OpenTelemetry is the cost we refuse to
pay when it is off.

Spans follow the OpenTelemetry semantic conventions:

- a handler call is a SERVER span ``{rpc.service}/{rpc.method}`` with ``rpc.system`` (``go-micro``
  for mucp, ``grpc`` for gRPC), ``rpc.service`` (the micro service name), ``rpc.method``
  (``Handler.Method``), ``server.address``/``server.port``; a client call is
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

import re
from collections.abc import AsyncIterator, Callable, Mapping, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import Getter, Setter, TextMapPropagator
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .._metadata import MESSAGE_ID, canonical
from ..broker import BrokerMessage
from ..client import CallFunc, CallRequest, PublishFunc
from ..context import Context
from ..errors import MicroError, to_grpc_status
from ..server import HandlerFunc, Request, SubscriberCall, SubscriberMessage
from ._context import ContextOps, context_ops, detach_failed
from ._spans import DEFAULT_STATE, TUPLES, CallSpan, SpanMaker

__all__ = ["HeaderGetter", "HeaderSetter", "Tracing"]

INSTRUMENTATION = "trimicro"
#: per-endpoint (and, client side, per-node) attribute sets kept; past it the cache starts over
_CACHE_LIMIT = 4096
#: a span's name and its frozen attributes, made once per endpoint
_Named = tuple[str, Mapping[str, Any]]
#: the same for a server span, and whether its call is gRPC
_ServerNamed = tuple[str, Mapping[str, Any], bool]
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
_BAGGAGE = W3CBaggagePropagator()
_W3C_FIELDS = ({"traceparent", "tracestate"}, {"traceparent", "tracestate", "baggage"})
#: ``traceparent`` as version 00 writes it (lower-case hex, no blanks): most of what arrives
_TRACEPARENT_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
#: the trace flags of two lower-case hex digits, made once (TraceFlags(int(digits, 16)) cost 2.6k
#: instructions a call)
_FLAGS_BY_HEX = {f"{i:02x}": TraceFlags(i) for i in range(256)}
_new_tuple = tuple.__new__
#: any ``traceparent`` the API's propagator accepts (its pattern)
_TRACEPARENT_ANY = re.compile(r"^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:(-.*)|[ \t]*)$")


#: ``propagate.get_global_textmap()`` returns the module global ``set_global_textmap`` sets (its code
#: reads that one name): the call path reads it without the call (whether the fast path applies)
_TEXTMAP_GLOBAL = propagate.get_global_textmap.__code__.co_names == ("_HTTP_TEXT_FORMAT",) and hasattr(
    propagate, "_HTTP_TEXT_FORMAT"
)


def _is_w3c(propagator: TextMapPropagator) -> bool:
    """True for OpenTelemetry's default propagator (trace context + baggage) or trace context alone:
    then the call path parses and writes ``traceparent`` itself (see :class:`_Propagation`)."""
    return isinstance(propagator, CompositePropagator | TraceContextTextMapPropagator) and any(
        propagator.fields == f for f in _W3C_FIELDS
    )


class _Propagation:
    """W3C trace context on the call path, without the generic propagator machinery.

    Why: through ``propagate.extract``/``inject`` the composite propagator, its regex and the
    getter protocol cost more than the span itself (~60 of ~170 µs per traced call pair on a busy
    2-CPU box). When the global propagator is the default one, call headers (canonical names, as both
    our transports deliver them) are read and written directly; anything else (a B3 propagator, a
    ``Baggage`` header, baggage in the context) takes the generic path, so behaviour is the same."""

    def __init__(self, ops: ContextOps) -> None:
        self._ops = ops
        self._baggage_key = ops.baggage_key
        self._seen: TextMapPropagator | None = None
        self._fast = False

    def extract(self, header: Mapping[str, str]) -> tuple[otel_context.Context | None, SpanContext | None]:
        """The caller's context: (a Context, None) from the generic path; (None, the remote span
        context) or (None, None) from the fast one, which leaves making a Context to whoever needs
        one (:meth:`SpanMaker.start`'s ``remote``)."""
        prop = propagate._HTTP_TEXT_FORMAT if _TEXTMAP_GLOBAL else propagate.get_global_textmap()
        if prop is not self._seen:
            self._seen, self._fast = prop, _is_w3c(prop)
        if not self._fast or "Baggage" in header:
            return propagate.extract(header, getter=_GETTER), None
        value = header.get("Traceparent")
        if value is None:
            return None, None
        match = _TRACEPARENT_00.fullmatch(value)
        if match is not None:  # the common form, in one match
            trace_hex, span_hex, flags_hex = match.groups()
            trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
            if not trace_id or not span_id:
                return None, None
            state = header.get("Tracestate")
            if TUPLES and not state:  # (inline: what _span_context makes)
                flags = _FLAGS_BY_HEX[flags_hex]
                return None, _new_tuple(SpanContext, (trace_id, span_id, True, flags, DEFAULT_STATE, True))
            return None, self._span_context(trace_id, span_id, int(flags_hex, 16), state)
        return None, self._parse(value, header.get("Tracestate"))

    @staticmethod
    def _span_context(trace_id: int, span_id: int, flags: int, state: str | None) -> SpanContext:
        trace_state = TraceState.from_header([state]) if state else DEFAULT_STATE
        if TUPLES:  # nonzero, and 32 and 16 hex digits are in range: valid, the tuple SpanContext() makes
            return tuple.__new__(SpanContext, (trace_id, span_id, True, TraceFlags(flags), trace_state, True))
        return SpanContext(trace_id, span_id, True, TraceFlags(flags), trace_state)

    def _parse(self, value: str, state: str | None) -> SpanContext | None:
        """Any other ``traceparent`` (surrounding blanks, a later version with more fields), read by
        the API propagator's own rules; None where it would ignore it."""
        if len(value) > 512:  # the API's limit
            return None
        match = _TRACEPARENT_ANY.search(value)
        if match is None:
            return None
        version, trace_hex, span_hex, flags_hex, rest = match.groups()
        if version == "ff" or (version == "00" and rest):
            return None
        trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
        if not trace_id or not span_id:
            return None
        return self._span_context(trace_id, span_id, int(flags_hex, 16), state)

    def inject(self, header: dict[str, str], span: trace.Span, ctx: otel_context.Context) -> None:
        prop = propagate._HTTP_TEXT_FORMAT if _TEXTMAP_GLOBAL else propagate.get_global_textmap()
        if prop is not self._seen:
            self._seen, self._fast = prop, _is_w3c(prop)
        key = self._baggage_key
        if not self._fast or (ctx.get(key) if key is not None else self._ops.has_baggage(ctx)):
            # (the fields this propagator writes are its own: a caller's, forwarded with the incoming
            # metadata, would outlive them where it writes none, e.g. no tracestate for an empty state)
            for field in prop.fields:
                header.pop(canonical(field), None)
            propagate.inject(header, ctx, _SETTER)
            return
        # (a CallSpan's context is always set: read without the method call)
        sc: SpanContext = span._context if type(span) is CallSpan else span.get_span_context()  # type: ignore[assignment]
        if TUPLES and type(sc) is SpanContext:  # the fields without a property call each
            trace_id, span_id, _, flags, state, valid = sc
        else:
            trace_id, span_id, flags, state, valid = sc.trace_id, sc.span_id, sc.trace_flags, sc.trace_state, sc.is_valid
        if not valid:
            return
        # (both ids as one number's 24 bytes, in hex with a dash after the first 16: the same lower-case
        # digits as the format specs 032x and 016x, in a third of the time)
        ids = ((trace_id << 64) | span_id).to_bytes(24, "big").hex("-", -16)
        header["Traceparent"] = f"00-{ids}-{'01' if flags & 1 else '00'}"
        if state is not DEFAULT_STATE and state:
            header["Tracestate"] = state.to_header()
        else:
            header.pop("Tracestate", None)  # the caller's, forwarded with the incoming metadata


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
        if grpc:  # the server answers an unexpected exception with Micro's 500
            span.set_attribute("rpc.grpc.status_code", to_grpc_status(500))
    span.record_exception(exc)


def _record_cancelled(span: trace.Span, grpc: bool) -> None:
    """Cancelled: the caller's deadline, a departed peer, or shutdown."""
    span.set_status(Status(StatusCode.ERROR, "cancelled"))
    span.set_attribute("error.type", "cancelled")
    if grpc:
        span.set_attribute("rpc.grpc.status_code", 1)


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
    _maker: SpanMaker | None = attrs.field(init=False)
    _ops: ContextOps = attrs.field(factory=context_ops, init=False)
    _propagation: _Propagation = attrs.field(init=False)
    _server_attrs: dict[tuple[str, str], _ServerNamed] = attrs.field(factory=dict, init=False)
    _client_attrs: dict[tuple[str, str, str | None], _Named] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        provider = self.tracer_provider or trace.get_tracer_provider()
        self.tracer = provider.get_tracer(INSTRUMENTATION)
        self._maker = SpanMaker.of(self.tracer, self._ops)
        self._propagation = _Propagation(self._ops)

    def _freeze(self, attributes: dict[str, Any]) -> Mapping[str, Any]:
        """An attribute set made once and passed to every span it fits (see :mod:`._spans`)."""
        return self._maker.freeze(attributes) if self._maker is not None else attributes

    @property
    def _start(self) -> Callable[[str, otel_context.Context | None, SpanKind, Mapping[str, Any]], trace.Span]:
        """``start(name, parent, kind, attributes)``: the maker's, else the tracer's ``start_span``."""
        return self._maker.start if self._maker is not None else self.tracer.start_span

    def _start_child_generic(
        self,
        name: str,
        parent: otel_context.Context | None,
        kind: SpanKind,
        attributes: Mapping[str, Any],
        remote: SpanContext | None = None,
    ) -> trace.Span:
        """:meth:`SpanMaker.start`'s signature on the tracer's ``start_span``: ``remote`` (from
        :meth:`_Propagation.extract`) becomes the parent context the API's extract would make."""
        if remote is not None:
            parent = self._ops.with_span(NonRecordingSpan(remote))
        return self.tracer.start_span(name, parent, kind, attributes)

    # -- server --
    def _attrs_for_server(self, endpoint: str, content_type: str) -> _ServerNamed:
        """A server span's name, attributes and whether it is gRPC, made once per endpoint and content
        type (the handler looks them up itself first); gRPC's carry ``rpc.grpc.status_code`` 0, which a
        failure overwrites (so a successful call's span needs no attribute of its own)."""
        key = (endpoint, content_type)
        found = self._server_attrs.get(key)
        if found is None:
            grpc = content_type.startswith("application/grpc")
            attributes: dict[str, Any] = {
                "rpc.system": "grpc" if grpc else "go-micro",
                "rpc.service": self.service,
                "rpc.method": endpoint,
            }
            host, port = _split(self.address)
            if host:
                attributes["server.address"] = host
            if port is not None:
                attributes["server.port"] = port
            if grpc:
                attributes["rpc.grpc.status_code"] = 0
            if len(self._server_attrs) >= _CACHE_LIMIT:
                self._server_attrs.clear()
            found = self._server_attrs[key] = (f"{self.service}/{endpoint}", self._freeze(attributes), grpc)
        return found

    def _attrs_for_client(self, req: CallRequest, grpc: bool) -> _Named:
        """A client span's name and attributes, made once per service, endpoint and node (the call
        looks them up itself first)."""
        key = (req.service, req.endpoint, req.address)
        found = self._client_attrs.get(key)
        if found is None:
            attributes: dict[str, Any] = {
                "rpc.system": "grpc" if grpc else "go-micro",
                "rpc.service": req.service,
                "rpc.method": req.endpoint,
            }
            if req.address:
                host, port = _split(req.address)
                attributes["server.address"] = host
                if port is not None:
                    attributes["server.port"] = port
            if len(self._client_attrs) >= _CACHE_LIMIT:
                self._client_attrs.clear()
            name = f"{req.service}/{req.endpoint}"
            found = self._client_attrs[key] = (name, self._freeze(attributes))
        return found

    def handler_wrapper(self, next_handler: HandlerFunc) -> HandlerFunc:
        extract = self._propagation.extract
        maker = self._maker
        start = maker.start if maker is not None else self._start_child_generic
        with_span, attach, reset = self._ops.with_span, self._ops.attach, self._ops.reset
        server_attrs = self._server_attrs
        server_kind = SpanKind.SERVER

        async def handler(req: Request, ctx: Any) -> Any:
            parent, remote = extract(req.header)
            found = server_attrs.get((req.endpoint, req.content_type))
            if found is None:
                found = self._attrs_for_server(req.endpoint, req.content_type)
            name, attributes, grpc = found
            span = start(name, parent, server_kind, attributes, remote)
            # (parent None: the current context, which is where extract puts a remote parent)
            token = attach(with_span(span, parent))
            try:
                return await next_handler(req, ctx)
            except Exception as exc:
                _record_error(span, exc, grpc)
                raise
            except BaseException:  # cancelled: the caller's deadline or a departed peer
                _record_cancelled(span, grpc)
                raise
            finally:
                try:
                    reset(token)
                except Exception:
                    detach_failed()
                span.end()

        return handler

    # -- client --
    def call_wrapper(self, next_call: CallFunc) -> CallFunc:
        grpc = self.transport == "grpc"
        inject = self._propagation.inject
        start = self._start
        with_span, attach, reset = self._ops.with_span, self._ops.attach, self._ops.reset
        client_attrs = self._client_attrs
        client_kind = SpanKind.CLIENT

        async def call(req: CallRequest) -> Any:
            found = client_attrs.get((req.service, req.endpoint, req.address))
            name, attributes = found if found is not None else self._attrs_for_client(req, grpc)
            span = start(name, None, client_kind, attributes)
            ctx = with_span(span)
            inject(req.metadata, span, ctx)
            token = attach(ctx)
            try:
                return await next_call(req)
            except Exception as exc:
                _record_error(span, exc, grpc)
                raise
            except BaseException:
                _record_cancelled(span, False)
                raise
            finally:
                try:
                    reset(token)
                except Exception:
                    detach_failed()
                span.end()

        return call

    @asynccontextmanager
    async def stream_hook(self, req: CallRequest) -> AsyncIterator[None]:
        """A client stream's span, from the dial to the stream's end (:data:`trimicro.client.StreamHook`):
        its context goes out in the first frame's metadata, so the handler's span is its child."""
        grpc = self.transport == "grpc"
        attributes = {
            "rpc.system": "grpc" if grpc else "go-micro",
            "rpc.service": req.service,
            "rpc.method": req.endpoint,
        }
        span = self._start(f"{req.service}/{req.endpoint}", None, SpanKind.CLIENT, attributes)
        self._propagation.inject(req.metadata, span, self._ops.with_span(span))
        try:
            yield
        except Exception as exc:
            _record_error(span, exc, grpc)
            raise
        except BaseException:
            _record_cancelled(span, False)
            raise
        finally:
            span.end()

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
            ctx = self._ops.with_span(span)
            propagate.inject(message.header, ctx, _SETTER)
            token = self._ops.attach(ctx)
            try:
                await next_publish(topic, message)
            except Exception as exc:
                _record_error(span, exc, False)
                raise
            finally:
                self._ops.detach(token)
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
            token = self._ops.attach(self._ops.with_span(span, parent))
            try:
                await next_call(msg, ctx)
            except Exception as exc:
                _record_error(span, exc, False)
                raise
            finally:
                self._ops.detach(token)
                span.end()

        return deliver
