"""Structured logs: a JSON formatter, trace ids on every record, and ``log_level`` applied.

``log_format=json`` (``MICRO_LOG_FORMAT``) writes one JSON object a line (``time``, ``level``,
``logger``, ``message``, ``exc_info`` when there is one, and ``trace_id``/``span_id`` when the
record was emitted inside a traced call), which log pipelines parse without a grok rule; the ids join
log lines to their spans. :class:`TraceContextFilter` adds the ids to records (``%(trace_id)s`` works
in text formats too); it reads the current OpenTelemetry span only if OpenTelemetry is already
imported, so it costs nothing when tracing is off.

:func:`configure_logging` is what a Service does when it runs: it configures the ``trimicro`` logger
(level from ``log_level``, a stderr handler in the chosen format) *only* if the application has not
configured logging itself (no handlers on the root logger or on ``trimicro``): an application's own
setup always wins.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

__all__ = ["JsonFormatter", "TraceContextFilter", "configure_logging", "current_trace_ids"]

_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "critical": logging.CRITICAL,
}
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_MARK = "_trimicro_configured"
# LogRecord attributes that are not "extra" fields
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def current_trace_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` in hex of the current recording OpenTelemetry span, or None (also
    when OpenTelemetry was never imported: then nothing can be tracing)."""
    trace_mod = sys.modules.get("opentelemetry.trace")
    if trace_mod is None:
        return None
    ctx = trace_mod.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


class TraceContextFilter(logging.Filter):
    """Sets ``record.trace_id`` / ``record.span_id`` (empty strings outside a traced call)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "trace_id"):
            ids = current_trace_ids()
            record.trace_id, record.span_id = ids if ids is not None else ("", "")
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``extra=`` fields are kept; trace ids when a filter (or this
    formatter, if no filter ran) found them."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace_id = getattr(record, "trace_id", None)
        span_id = getattr(record, "span_id", None)
        if trace_id is None:
            ids = current_trace_ids()
            trace_id, span_id = ids if ids is not None else ("", "")
        if trace_id:
            out["trace_id"], out["span_id"] = trace_id, span_id
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out and key not in ("trace_id", "span_id"):
                out[key] = value if isinstance(value, str | int | float | bool | None) else repr(value)
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False)


def level_of(name: str) -> int:
    """A Go Micro level name (``trace|debug|info|warn|error|fatal``) as a logging level."""
    try:
        return _LEVELS[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown log level {name!r} (trace, debug, info, warn, error, fatal)") from None


def configure_logging(
    level: str = "info",
    fmt: str = "text",
    *,
    logger: logging.Logger | None = None,
    stream: Any = None,
    force: bool = False,
) -> bool:
    """Configure ``logger`` (default ``trimicro``) unless the application configured logging.

    Returns True if it did. Idempotent: a second call replaces the handler it added before."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log_format must be 'text' or 'json', not {fmt!r}")
    target = logger or logging.getLogger("trimicro")
    ours = [h for h in target.handlers if getattr(h, _MARK, False)]
    if not force and not ours and (logging.getLogger().handlers or target.handlers):
        return False
    for handler in ours:
        target.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    setattr(handler, _MARK, True)
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT))
    target.addHandler(handler)
    target.setLevel(level_of(level))
    target.propagate = False
    return True
