"""Tracing: one trace across a Python -> Python call chain (mucp and gRPC) and across pub/sub."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import trimicro
from tests.conftest import Greeter
from tests.protos.greeter_pb2 import Event, HelloRequest, HelloResponse
from trimicro.broker.http import HttpBroker
from trimicro.broker.memory import MemoryBroker
from trimicro.broker.nats import NatsBroker
from trimicro.observability import _tracing, instrument
from trimicro.observability._context import context_ops
from trimicro.registry import MemoryRegistry
from trimicro.testing.nats import NatsServerNotFound, open_nats_server

pytestmark = pytest.mark.loopback


class Front:
    """Service A's handler: calls service B while handling a call (the chain under test)."""

    def __init__(self) -> None:
        self.service: trimicro.Service | None = None

    async def Relay(self, req: HelloRequest, ctx: trimicro.Context) -> HelloResponse:
        assert self.service is not None
        rsp: HelloResponse = await self.service.client.call(
            "b", "Greeter.Hello", req, response_type=HelloResponse
        )
        return HelloResponse(greeting="via a: " + rsp.greeting)

    async def RelayFail(self, req: HelloRequest, ctx: trimicro.Context) -> HelloResponse:
        assert self.service is not None
        rsp: HelloResponse = await self.service.client.call(
            "b", "Greeter.Fail", req, response_type=HelloResponse
        )
        return rsp


def _ids(span: Any) -> tuple[int, int, int | None]:
    parent = span.parent.span_id if span.parent is not None else None
    return span.context.trace_id, span.context.span_id, parent


@pytest.mark.parametrize("transport", ["http", "grpc"])
async def test_call_chain_is_one_trace(spans: Any, transport: str) -> None:
    registry = MemoryRegistry()
    front = Front()
    a = trimicro.Service("a", registry=registry, handlers=[front], transport=transport, argv=[])
    b = trimicro.Service("b", registry=registry, handlers=[Greeter()], transport=transport, argv=[])
    front.service = a
    instrument(a, tracer_provider=spans.provider)
    instrument(b, tracer_provider=spans.provider)
    async with trimicro.open_service(service=b), trimicro.open_service(service=a):
        tracer = spans.provider.get_tracer("test")
        with tracer.start_as_current_span("root"):
            rsp = await a.client.call("a", "Front.Relay", HelloRequest(name="x"), response_type=HelloResponse)
    assert rsp.greeting == "via a: Hello x"
    root = spans.named("root")
    by_kind = {(s.name, s.kind): s for s in spans.finished()}
    a_client = by_kind[("a/Front.Relay", SpanKind.CLIENT)]
    a_server = by_kind[("a/Front.Relay", SpanKind.SERVER)]
    b_client = by_kind[("b/Greeter.Hello", SpanKind.CLIENT)]
    b_server = by_kind[("b/Greeter.Hello", SpanKind.SERVER)]
    chain = [root, a_client, a_server, b_client, b_server]
    assert len({s.context.trace_id for s in chain}) == 1
    for parent, child in itertools.pairwise(chain):
        assert _ids(child)[2] == parent.context.span_id, (parent.name, child.name)
    system = "grpc" if transport == "grpc" else "go-micro"
    assert a_server.attributes["rpc.system"] == system
    assert b_client.attributes["rpc.system"] == system
    assert b_server.attributes["rpc.service"] == "b"
    assert b_server.attributes["rpc.method"] == "Greeter.Hello"
    assert b_server.attributes["server.address"] == b.address.rpartition(":")[0]
    assert b_server.attributes["server.port"] == int(b.address.rpartition(":")[2])
    assert b_server.status.status_code is StatusCode.UNSET
    assert b_server.parent.is_remote and not b_client.parent.is_remote


async def test_errors_mark_spans(spans: Any) -> None:
    registry = MemoryRegistry()
    front = Front()
    a = trimicro.Service("a", registry=registry, handlers=[front], argv=[])
    b = trimicro.Service("b", registry=registry, handlers=[Greeter()], argv=[])
    front.service = a
    instrument(a, tracer_provider=spans.provider)
    instrument(b, tracer_provider=spans.provider)
    async with trimicro.open_service(service=b), trimicro.open_service(service=a):
        with pytest.raises(trimicro.MicroError) as info:
            await a.client.call("a", "Front.RelayFail", HelloRequest(name="x"), response_type=HelloResponse)
    assert info.value.code == 400
    for span in spans.finished():
        assert span.status.status_code is StatusCode.ERROR, span.name
        assert span.attributes["error.type"] == "400"
    assert len({s.context.trace_id for s in spans.finished()}) == 1
    server = next(s for s in spans.finished() if s.name == "b/Greeter.Fail" and s.kind is SpanKind.SERVER)
    assert any(e.name == "exception" for e in server.events)


async def test_incoming_traceparent_from_a_foreign_client(spans: Any) -> None:
    """A caller that only sends ``Traceparent`` metadata (as Go Micro's otel wrapper writes it)."""
    registry = MemoryRegistry()
    b = trimicro.Service("b", registry=registry, handlers=[Greeter()], argv=[])
    instrument(b, tracer_provider=spans.provider)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with trimicro.open_service(service=b), trimicro.open_client(registry=registry) as client:
        await client.call("b", "Greeter.Hello", HelloRequest(name="x"), metadata={"Traceparent": parent})
    [span] = spans.finished()
    assert format(span.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert format(span.parent.span_id, "016x") == "b7ad6b7169203331"


BrokerFactory = Callable[[], Any]


@pytest.fixture(params=["memory", "http", "nats"])
async def make_broker(request: pytest.FixtureRequest) -> AsyncIterator[BrokerFactory]:
    if request.param == "memory":
        shared = MemoryBroker()
        yield lambda: shared
    elif request.param == "http":
        yield lambda: HttpBroker()
    else:
        try:
            async with open_nats_server() as server:
                yield lambda: NatsBroker([server.address])
        except NatsServerNotFound as exc:
            pytest.skip(str(exc))


async def test_pubsub_keeps_the_trace(spans: Any, make_broker: BrokerFactory) -> None:
    registry = MemoryRegistry()
    got: list[tuple[Event, str]] = []
    arrived = trio.Event()

    async def on_event(msg: Event, ctx: trimicro.Context) -> None:
        span = trace.get_current_span()
        got.append((msg, format(span.get_span_context().trace_id, "032x")))
        arrived.set()

    pub = trimicro.Service("pub", registry=registry, broker=make_broker(), argv=[])
    sub = trimicro.Service("sub", registry=registry, broker=make_broker(), argv=[])
    sub.subscribe("events", on_event)
    instrument(pub, tracer_provider=spans.provider)
    instrument(sub, tracer_provider=spans.provider)
    async with trimicro.open_service(service=sub), trimicro.open_service(service=pub):
        with spans.provider.get_tracer("test").start_as_current_span("root"):
            await pub.client.publish("events", Event(id="1", message="hi"))
        with trio.fail_after(10):
            await arrived.wait()
    root, publish, process = spans.named("root"), spans.named("publish events"), spans.named("process events")
    assert publish.kind is SpanKind.PRODUCER and process.kind is SpanKind.CONSUMER
    assert publish.parent.span_id == root.context.span_id
    assert process.parent.span_id == publish.context.span_id
    assert process.context.trace_id == root.context.trace_id
    assert got[0][1] == format(root.context.trace_id, "032x")
    assert process.attributes["messaging.destination.name"] == "events"
    assert process.attributes["messaging.operation.type"] == "process"
    assert publish.attributes["messaging.system"] == pub.options.broker


def test_nothing_imported_when_disabled() -> None:
    """Without the options, a service makes calls without importing OpenTelemetry or prometheus."""
    code = textwrap.dedent(
        """
        import sys, trio, trimicro
        from tests.conftest import Greeter
        from tests.protos.greeter_pb2 import HelloRequest, HelloResponse

        async def main():
            reg = trimicro.registry.MemoryRegistry()
            async with trimicro.open_service("g", registry=reg, handlers=[Greeter()]) as svc:
                await svc.client.call("g", "Greeter.Hello", HelloRequest(name="x"), response_type=HelloResponse)
                assert svc.observability is None

        trio.run(main)
        bad = [m for m in sys.modules if m.startswith(("opentelemetry", "prometheus_client"))]
        assert not bad, bad
        print("ok")
        """
    )
    env_clean = {k: v for k, v in __import__("os").environ.items() if not k.startswith("MICRO_")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env_clean, check=False
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_traceparent_flags_are_go_compatible() -> None:
    """Only the sampled flag goes out: OTel Go <= 1.35 drops a traceparent with flags 03."""
    from trimicro.observability._tracing import HeaderGetter, HeaderSetter

    carrier: dict[str, str] = {}
    HeaderSetter().set(carrier, "traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03")
    assert carrier == {"Traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    HeaderSetter().set(carrier, "tracestate", "k=v")
    assert carrier["Tracestate"] == "k=v"
    assert HeaderGetter().get({"TRACEPARENT": "x"}, "traceparent") == ["x"]
    assert HeaderGetter().get({}, "traceparent") is None


@pytest.mark.parametrize("transport", ["http", "grpc"])
async def test_client_streams_have_a_span_the_handlers_is_a_child_of(spans: Any, transport: str) -> None:
    from tests.interop import Greeter as StreamingGreeter
    from tests.protos.greeter_pb2 import EchoMessage

    registry = MemoryRegistry()
    b = trimicro.Service("b", registry=registry, handlers=[StreamingGreeter()], transport=transport, argv=[])
    instrument(b, tracer_provider=spans.provider)
    async with trimicro.open_service(service=b):
        tracer = spans.provider.get_tracer("test")
        with tracer.start_as_current_span("root"):
            async with b.client.stream("b", "Greeter.Echo", response_type=EchoMessage) as s:
                await s.send(EchoMessage(text="t", seq=1))
                assert (await s.receive()).seq == 1
                await s.close_send()
            with pytest.raises(trimicro.MicroError) as info:
                async with b.client.stream("b", "Greeter.Echo", response_type=EchoMessage) as s:
                    await s.send(EchoMessage(text="fail", seq=2))
                    await s.receive()
    # (the service has stopped: its drain waited for the handlers, whose spans end with them)
    assert info.value.code == 409
    root = spans.named("root")
    echo = [s for s in spans.finished() if s.name == "b/Greeter.Echo"]
    clients = sorted((s for s in echo if s.kind is SpanKind.CLIENT), key=lambda s: s.start_time)
    servers = {_ids(s)[2]: s for s in echo if s.kind is SpanKind.SERVER}
    assert len(clients) == 2 and len(servers) == 2
    for client_span in clients:
        assert _ids(client_span)[2] == root.context.span_id
        assert client_span.context.trace_id == root.context.trace_id
        assert client_span.context.span_id in servers  # the handler's span is the client span's child
    ok, failed = clients
    assert ok.status.status_code is StatusCode.UNSET
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "409"
    assert ok.attributes["rpc.system"] == ("grpc" if transport == "grpc" else "go-micro")


_HEX32 = st.sampled_from(
    ["0af7651916cd43dd8448eb211c80319c", "0" * 32, "0AF7651916CD43DD8448EB211C80319C", "0af765", "1" * 33]
)
_HEX16 = st.sampled_from(["b7ad6b7169203331", "0" * 16, "B7AD6B7169203331", "b7ad", "zzzzzzzzzzzzzzzz"])


@given(
    version=st.sampled_from(["00", "01", "cc", "ff", "0g", "0"]),
    trace_hex=_HEX32,
    span_hex=_HEX16,
    flags=st.sampled_from(["00", "01", "03", "ff", "1", "xy"]),
    tail=st.sampled_from(["", "-extra", "-"]),
    blanks=st.sampled_from(["", " ", "\t", " \t"]),
    state=st.sampled_from([None, "", "vendor=x", "a=1,b=2", "=bad"]),
)
@settings(max_examples=300, deadline=None)
def test_the_fast_extract_reads_traceparent_as_the_api_does(
    version: str, trace_hex: str, span_hex: str, flags: str, tail: str, blanks: str, state: str | None
) -> None:
    """The call path parses ``Traceparent`` itself (``_Propagation.extract``); the API's W3C
    propagator is the oracle: same span context, or none where it finds none."""
    value = f"{blanks}{version}-{trace_hex}-{span_hex}-{flags}{tail}{blanks}"
    header = {"Traceparent": value}
    if state is not None:
        header["Tracestate"] = state
    context, remote = _tracing._Propagation(context_ops()).extract(header)
    assert context is None  # the fast path: a span context, no Context
    carrier = {k.lower(): v for k, v in header.items()}
    expected = trace.get_current_span(TraceContextTextMapPropagator().extract(carrier)).get_span_context()
    if not expected.is_valid:
        assert remote is None
    else:
        assert remote is not None
        assert remote == expected
        assert remote.trace_flags == expected.trace_flags and remote.is_remote
        assert remote.trace_state == expected.trace_state


@given(
    trace_id=st.sampled_from([1, 0x0AF7651916CD43DD8448EB211C80319C, (1 << 128) - 1, 1 << 64, (1 << 64) - 1]),
    span_id=st.sampled_from([1, 0xB7AD6B7169203331, (1 << 64) - 1, 1 << 32]),
    flags=st.sampled_from([0, 1, 3]),
    state=st.sampled_from([None, "vendor=x", "a=1,b=2"]),
)
@settings(max_examples=100, deadline=None)
def test_the_fast_inject_writes_traceparent_as_the_api_does(
    trace_id: int, span_id: int, flags: int, state: str | None
) -> None:
    """``_Propagation.inject`` writes ``Traceparent`` itself; the API's W3C propagator is the oracle
    (leading zeros, the largest ids), with the flags cut to the sampled bit as ``HeaderSetter`` does."""
    trace_state = trace.TraceState.from_header([state]) if state else None
    sc = trace.SpanContext(trace_id, span_id, False, trace.TraceFlags(flags), trace_state)
    span = trace.NonRecordingSpan(sc)
    ops = context_ops()
    ctx = ops.with_span(span)
    header = {"Tracestate": "from=caller"}  # forwarded metadata: replaced, or dropped without a state
    _tracing._Propagation(ops).inject(header, span, ctx)
    expected: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(expected, ctx, _tracing._SETTER)
    assert header == expected


def test_baggage_and_other_propagators_take_the_generic_path() -> None:
    """Baggage in the context or in the header, or a global propagator other than W3C's: the API's
    propagate.inject/extract run, so what they would write and read is what the call carries."""
    from opentelemetry import baggage, propagate
    from opentelemetry.baggage.propagation import W3CBaggagePropagator

    ops = context_ops()
    propagation = _tracing._Propagation(ops)
    sc = trace.SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, False, trace.TraceFlags(1))
    span = trace.NonRecordingSpan(sc)
    header = {"Tracestate": "from=caller"}  # the caller's, forwarded: not this span's (it has none)
    propagation.inject(header, span, ops.with_span(span, baggage.set_baggage("user", "ada")))
    assert header["Baggage"] == "user=ada" and header["Traceparent"].startswith("00-0af7651916cd43dd")
    assert "Tracestate" not in header
    context, remote = propagation.extract(header)
    assert remote is None and context is not None  # the generic path: a Context, with the baggage
    assert baggage.get_baggage("user", context) == "ada"
    assert trace.get_current_span(context).get_span_context().span_id == 0xB7AD6B7169203331
    before = propagate.get_global_textmap()
    propagate.set_global_textmap(W3CBaggagePropagator())  # baggage only: no trace context goes out
    try:
        header = {}
        propagation.inject(header, span, ops.with_span(span))
        assert header == {}
        context, remote = propagation.extract({"Traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
        assert remote is None and context is not None
        assert not trace.get_current_span(context).get_span_context().is_valid
    finally:
        propagate.set_global_textmap(before)
    header = {}
    propagation.inject(header, span, ops.with_span(span))  # the W3C one again: the fast path
    assert header == {"Traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
