"""Structured logs: JSON lines with trace ids during a call; log_level configures the trimicro logger."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import trimicro
from tests.protos.greeter_pb2 import HelloRequest, HelloResponse
from trimicro.observability import JsonFormatter, TraceContextFilter, configure_logging, instrument
from trimicro.registry import MemoryRegistry

app_log = logging.getLogger("tests.observability.handler")


class Chatty:
    async def Hello(self, req: HelloRequest, ctx: trimicro.Context) -> HelloResponse:
        app_log.info("hello %s", req.name, extra={"user": "alice"})
        return HelloResponse(greeting="hi")


async def test_json_lines_carry_the_trace_ids(spans: Any) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(JsonFormatter())
    app_log.addHandler(handler)
    app_log.setLevel(logging.INFO)
    try:
        svc = trimicro.Service("g", registry=MemoryRegistry(), handlers=[Chatty()], argv=[])
        instrument(svc, tracer_provider=spans.provider)
        async with trimicro.open_service(service=svc):
            await svc.client.call("g", "Chatty.Hello", HelloRequest(name="bob"), response_type=HelloResponse)
        app_log.info("outside")
    finally:
        app_log.removeHandler(handler)
    inside, outside = (json.loads(line) for line in out.getvalue().splitlines())
    server = next(s for s in spans.finished() if s.kind.name == "SERVER")
    assert inside["message"] == "hello bob" and inside["level"] == "info" and inside["user"] == "alice"
    assert inside["trace_id"] == format(server.context.trace_id, "032x")
    assert inside["span_id"] == format(server.context.span_id, "016x")
    assert "trace_id" not in outside and outside["message"] == "outside"


def test_configure_logging_only_when_unconfigured() -> None:
    target = logging.getLogger("tests.observability.fresh")
    out = io.StringIO()
    assert configure_logging("warn", "json", logger=target, stream=out, force=True)
    target.info("dropped")
    target.warning("kept")
    assert [json.loads(line)["message"] for line in out.getvalue().splitlines()] == ["kept"]
    assert target.level == logging.WARNING
    # a second call replaces our handler instead of adding another
    assert configure_logging("debug", "text", logger=target, stream=out)
    assert len(target.handlers) == 1 and target.level == logging.DEBUG
    target.handlers.clear()
    # an application handler means hands off
    app = logging.getLogger("tests.observability.app")
    app.addHandler(logging.NullHandler())
    try:
        assert not configure_logging("debug", "json", logger=app)
    finally:
        app.handlers.clear()


def test_log_options() -> None:
    opts = trimicro.config.load_options(env={"MICRO_LOG_FORMAT": "json", "MICRO_TRACING": "true",
                                             "MICRO_METRICS_ADDRESS": ":9090"})  # fmt: skip
    assert (opts.log_format, opts.tracing, opts.metrics_address) == ("json", True, ":9090")
    assert trimicro.config.load_options(env={"MICRO_TRACING": "0"}).tracing is False
