"""The OpenTelemetry context operations of a traced call, straight on the context variable.

Why: every traced call sets its span in a context, attaches it, detaches it and reads the parent
span back, and through the API each of these is a chain of three to six Python calls
(``set_span_in_context`` -> ``set_value`` -> ``get_current`` -> the runtime's ``get_current`` ->
``ContextVar.get``): about 30 of the ~150 Python calls a traced call pair made. With the API's own
runtime, :class:`~opentelemetry.context.contextvars_context.ContextVarsRuntimeContext` (what
``OTEL_PYTHON_CONTEXT`` selects unless it names another), each one is a single operation on the
runtime's ``ContextVar``, which is what the API ends up doing anyway.

:func:`context_ops` looks once, when a wrapper is built: for any other runtime context, or an API
whose keys or runtime moved, it returns the API's own functions, so behaviour never depends on the
shortcut being available.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any

import attrs
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.context.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.trace import propagation as trace_propagation

__all__ = ["ContextOps", "context_ops", "detach_failed"]

logger = logging.getLogger(__name__)


@attrs.frozen
class ContextOps:
    """The context operations the call wrappers use (the API's, or the fast ones of :func:`context_ops`)."""

    #: ``with_span(span, context=None)``: ``context`` (the current one if None) with ``span`` set in it
    with_span: Callable[..., Context]
    #: ``attach(context)``: make it current; returns the token for ``detach``
    attach: Callable[[Context], Any]
    #: ``detach(token)``: restore what was current before ``attach`` (a failure is logged, not raised)
    detach: Callable[[Any], None]
    #: ``span_in(context=None)``: the span set in ``context`` (the current one if None), or the
    #: invalid span
    span_in: Callable[..., trace.Span]
    #: ``has_baggage(context)``: True if ``context`` carries any baggage entry
    has_baggage: Callable[[Context], bool]
    #: ``span_context_in(context=None)``: ``span_in(context).get_span_context()`` in one call
    span_context_in: Callable[..., trace.SpanContext]
    #: ``reset(token)``: ``detach`` without its safety net: it may raise where ``detach`` logs (a
    #: wrapper that calls it in a ``try`` saves a call; :func:`detach_failed` logs as detach would)
    reset: Callable[[Any], None]
    #: the key baggage sits under in a Context, when the fast operations are in use: a caller may
    #: read ``context.get(baggage_key)`` (truthy: some baggage, or something to hand to the API)
    #: instead of calling ``has_baggage``; None with the API's operations
    baggage_key: str | None = None


def detach_failed() -> None:
    """Log a failed ``reset`` as the API logs a failed detach (from an ``except`` block)."""
    logger.exception("Failed to detach context")


def _api_has_baggage(context: Context) -> bool:
    return bool(baggage.get_all(context))


def _api_span_context_in(context: Context | None = None) -> trace.SpanContext:
    return trace.get_current_span(context).get_span_context()


_API = ContextOps(
    with_span=trace.set_span_in_context,
    attach=otel_context.attach,
    detach=otel_context.detach,
    span_in=trace.get_current_span,
    has_baggage=_api_has_baggage,
    span_context_in=_api_span_context_in,
    reset=otel_context.detach,  # (never raises: it logs)
)


def context_ops() -> ContextOps:
    """The fast operations when the runtime context is the API's contextvars one, else the API's."""
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    span_key = getattr(trace_propagation, "_SPAN_KEY", None)
    baggage_key = getattr(baggage, "_BAGGAGE_KEY", None)
    if type(runtime) is not ContextVarsRuntimeContext or not isinstance(var, ContextVar):
        return _API
    if not isinstance(span_key, str) or not isinstance(baggage_key, str):
        return _API
    return _fast(var, span_key, baggage_key)


def _fast(var: ContextVar[Context], span_key: str, baggage_key: str) -> ContextOps:
    get = var.get
    reset = var.reset
    invalid = trace.INVALID_SPAN
    span_type = trace.Span

    def with_span(span: trace.Span, context: Context | None = None) -> Context:
        # what set_value makes (a new Context: the values and this one); a display is cheaper than
        # keyword arguments, even with the second copy
        return Context({**(get() if context is None else context), span_key: span})

    def detach(token: Token[Context]) -> None:
        try:
            reset(token)
        except Exception:  # as the API does: a token from another context is logged, not raised
            logger.exception("Failed to detach context")

    span_types: set[type] = set()  # the classes seen to be Spans: Span is an ABC, and its check is slow

    def span_in(context: Context | None = None) -> trace.Span:
        span = (get() if context is None else context).get(span_key)
        if span is None:  # no span: a root (and an ABC's isinstance check is slow)
            return invalid
        if type(span) in span_types:
            return span  # type: ignore[return-value]  # a Span: its class passed the check
        if isinstance(span, span_type):
            span_types.add(type(span))
            return span
        return invalid

    def has_baggage(context: Context) -> bool:
        entries = context.get(baggage_key)
        return isinstance(entries, dict) and bool(entries)

    invalid_context = invalid.get_span_context()

    def span_context_in(context: Context | None = None) -> trace.SpanContext:
        span = (get() if context is None else context).get(span_key)
        if span is None:  # no span: a root
            return invalid_context
        if type(span) in span_types:
            return span.get_span_context()  # type: ignore[attr-defined, no-any-return]  # a Span
        return span_in(context).get_span_context()

    return ContextOps(
        with_span=with_span,
        attach=var.set,
        detach=detach,
        span_in=span_in,
        has_baggage=has_baggage,
        span_context_in=span_context_in,
        reset=reset,
        baggage_key=baggage_key,
    )
