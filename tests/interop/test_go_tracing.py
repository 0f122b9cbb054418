"""One trace across Python -> Go -> Python: trimicro's tracing and go-micro's wrapper/trace/opentelemetry.

The Go peer (tests/interop/go, INTEROP_OTEL=1) installs go-micro v5's own OpenTelemetry handler and
client wrappers with the W3C trace-context propagator; its Greeter.Hello relays to a Python greeter
(INTEROP_RELAY) and reports the trace id it ran under. Both Python services record spans in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import trimicro
from tests.interop._go import PyGreeter, go_flags, open_go, py_service
from tests.protos.greeter_pb2 import HelloRequest, HelloResponse
from trimicro.observability import instrument

pytestmark = pytest.mark.loopback


class Front:
    def __init__(self, target: str) -> None:
        self.target = target
        self.service: trimicro.Service | None = None

    async def Relay(self, req: HelloRequest, ctx: trimicro.Context) -> HelloResponse:
        assert self.service is not None
        rsp: HelloResponse = await self.service.client.call(
            self.target, "Greeter.Hello", req, response_type=HelloResponse
        )
        return rsp


@pytest.mark.parametrize("content_type", ["application/protobuf", "application/json"])
async def test_python_go_python_is_one_trace(
    go_interop: Path, shared_etcd: str, uniq: str, content_type: str
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    go_name, back_name = f"greeter-go-{uniq}", f"greeter-py-{uniq}"
    front = Front(go_name)
    a = py_service(f"front-py-{uniq}", shared_etcd, client_content_type=content_type)
    a.handle(front)
    front.service = a
    b = py_service(back_name, shared_etcd, PyGreeter(back_name))
    instrument(a, tracer_provider=provider)
    instrument(b, tracer_provider=provider)
    env = {"INTEROP_OTEL": "1", "INTEROP_RELAY": back_name}
    args = ["server", *go_flags(shared_etcd), "--server_address", "127.0.0.1:0", "--name", go_name]
    async with (
        open_go(go_interop, args, env=env) as go,
        trimicro.open_service(service=b),
        trimicro.open_service(service=a),
    ):
        await go.expect("started")
        with provider.get_tracer("test").start_as_current_span("root"):
            rsp = await a.client.call(
                a.name, "Front.Relay", HelloRequest(name="Ann"), response_type=HelloResponse
            )
        hello: dict[str, Any] = await go.expect("hello")
    assert rsp.greeting.startswith("Hello Ann / Hello Ann"), rsp.greeting
    spans = {(s.name, s.kind): s for s in exporter.get_finished_spans()}
    root = spans[("root", SpanKind.INTERNAL)]
    trace_id = format(root.context.trace_id, "032x")
    to_go = spans[(f"{go_name}/Greeter.Hello", SpanKind.CLIENT)]
    back = spans[(f"{back_name}/Greeter.Hello", SpanKind.SERVER)]
    # Go ran its handler in the trace we started, under a span of its own
    assert hello["trace_id"] == trace_id, (hello, trace_id)
    assert hello["span_id"] != format(to_go.context.span_id, "016x")
    assert hello["metadata"].get("Traceparent", "").split("-")[1] == trace_id
    # ... and its client carried the trace on to Python: same trace, parent is a Go span
    assert format(back.context.trace_id, "032x") == trace_id
    assert back.parent is not None and back.parent.is_remote
    python_span_ids = {s.context.span_id for s in exporter.get_finished_spans()}
    assert back.parent.span_id not in python_span_ids
    provider.shutdown()
