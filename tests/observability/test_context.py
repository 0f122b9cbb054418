"""The call path's context operations (trimicro.observability._context): the API's results, directly."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from trimicro.observability import _context
from trimicro.observability._context import context_ops


def _span(n: int) -> trace.Span:
    return NonRecordingSpan(SpanContext(n, n, False, TraceFlags(1)))


def test_the_default_runtime_gets_the_fast_operations() -> None:
    ops = context_ops()
    assert ops is not _context._API


def test_the_fast_operations_give_what_the_api_gives() -> None:
    ops = context_ops()
    outer = baggage.set_baggage("k", "v")
    token = otel_context.attach(outer)
    try:
        a, b = _span(1), _span(2)
        assert ops.with_span(a) == trace.set_span_in_context(a)
        assert ops.with_span(b, outer) == trace.set_span_in_context(b, outer)
        assert ops.with_span(a) is not otel_context.get_current()  # a copy, as set_value makes
        assert ops.span_in() is trace.get_current_span() is trace.INVALID_SPAN
        assert ops.span_context_in() is trace.INVALID_SPAN.get_span_context()
        inner = ops.attach(ops.with_span(a))
        assert otel_context.get_current() == trace.set_span_in_context(a, outer)
        assert ops.span_in() is a and ops.span_in(ops.with_span(b)) is b
        assert ops.span_context_in() is a.get_span_context()
        assert ops.span_context_in(ops.with_span(b)) is b.get_span_context()
        assert ops.has_baggage(otel_context.get_current())
        ops.detach(inner)
        assert otel_context.get_current() is outer
        assert not ops.has_baggage(otel_context.Context())
        assert not ops.has_baggage(baggage.clear())
    finally:
        otel_context.detach(token)


def test_something_else_under_the_span_key_is_no_span() -> None:
    ops = context_ops()
    ctx = otel_context.set_value(trace.propagation._SPAN_KEY, "not a span")
    assert ops.span_in(ctx) is trace.get_current_span(ctx) is trace.INVALID_SPAN
    assert ops.span_context_in(ctx) == trace.INVALID_SPAN.get_span_context()


def test_a_failed_detach_is_logged_as_the_api_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    ops = context_ops()
    token = ops.attach(ops.with_span(_span(1)))
    ops.detach(token)
    with caplog.at_level(logging.ERROR):
        ops.detach(token)  # used twice: the contextvar refuses, nothing is raised
    assert "Failed to detach context" in caplog.text


def test_reset_raises_where_detach_logs_and_detach_failed_logs_the_same(caplog: pytest.LogCaptureFixture) -> None:
    """What the wrappers do in their ``finally``: ``reset`` in a ``try``, ``detach_failed`` on failure."""
    ops = context_ops()
    token = ops.attach(ops.with_span(_span(1)))
    ops.reset(token)
    with pytest.raises(RuntimeError), caplog.at_level(logging.ERROR):
        try:
            ops.reset(token)
        except RuntimeError:
            _context.detach_failed()
            raise
    assert "Failed to detach context" in caplog.text


def test_another_runtime_context_keeps_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    class Other:
        def get_current(self) -> Any: ...

    monkeypatch.setattr(otel_context, "_RUNTIME_CONTEXT", Other())
    assert context_ops() is _context._API
