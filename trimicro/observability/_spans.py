"""Call spans for the OpenTelemetry SDK without its generic ``start_span``: the same spans, cheaper.

Why: the SDK's ``Tracer.start_span`` validates and copies the attributes of every span into a
locked ``BoundedAttributes``, builds bounded lists for events and links and a thread lock, and
re-validates on the way to the processors: ~38 µs a span on the 2-CPU bench box, a third of what
trimicro spends serving a whole call, so tracing with every span sampled cost 44% of mucp's unary
throughput. The spans of one endpoint carry the same attributes every call, so
:meth:`SpanMaker.freeze` validates them once and every span of the endpoint shares that frozen
mapping; a span copies it only when something adds an attribute (an error, a handler's own
``set_attribute``). The sampler, the id generator, the processors' ``on_start``/``on_end``, span
limits and the resource are the tracer's own, and what reaches the processors is the SDK's own
``ReadableSpan``, so exporters (OTLP, console, in-memory) see what ``start_span`` would have made.

:meth:`SpanMaker.of` returns None, and the wrappers use ``tracer.start_span``, unless the tracer is
the SDK's own ``Tracer`` with the parts this relies on, enabled, and with the SDK's internal metrics
off (they hook span creation): another SDK, a proxy tracer before a provider is set, or a future
SDK that moved these parts still works, at the generic cost.
"""

from __future__ import annotations

import logging
import random as _random
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import Any

import attrs
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, SynchronousMultiSpanProcessor
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, StaticSampler, TraceIdRatioBased
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.util import types

from ._context import ContextOps, context_ops

__all__ = ["DEFAULT_STATE", "TUPLES", "CallSpan", "SpanMaker"]

logger = logging.getLogger(__name__)
_UNSET = Status(StatusCode.UNSET)
_SAMPLE, _DROP, _RECORD_ONLY = Decision.RECORD_AND_SAMPLE, Decision.DROP, Decision.RECORD_ONLY
_getrandbits = _random.getrandbits
_new_tuple = tuple.__new__
_RANDOM = int(getattr(TraceFlags, "RANDOM_TRACE_ID", 0))  # W3C level 2's flag, SDKs from 1.39
#: the trace flags a new span can have (sampled | random), made once
_FLAGS = tuple(TraceFlags(i) for i in range(4))
#: the API's empty trace state, the one SpanContext() fills in
_API_STATE = getattr(trace.span, "DEFAULT_TRACE_STATE", None)
DEFAULT_STATE: TraceState = _API_STATE if isinstance(_API_STATE, TraceState) else TraceState()
#: the fields the SDK's ReadableSpan reads, which CallSpan provides
_READABLE_FIELDS = frozenset(
    {
        "_attributes",
        "_context",
        "_end_time",
        "_events",
        "_instrumentation_info",
        "_instrumentation_scope",
        "_kind",
        "_links",
        "_name",
        "_parent",
        "_resource",
        "_start_time",
        "_status",
    }
)
_DELEGATES = (
    "_root",
    "_remote_parent_sampled",
    "_remote_parent_not_sampled",
    "_local_parent_sampled",
    "_local_parent_not_sampled",
)


#: what a sampler decides without being asked: a Decision (always on / always off), the bound of a
#: trace-id ratio sampler (an int: sampled when the trace id's low 64 bits are below it), or None
_Fixed = Decision | int | None
_RATIO_LIMIT = (1 << 64) - 1


def _static(sampler: Any) -> _Fixed:
    """The decision of an always-on/always-off sampler, or the bound of a trace-id ratio one (each
    not overriding ``should_sample``), else None: ask the sampler."""
    if isinstance(sampler, StaticSampler) and type(sampler).should_sample is StaticSampler.should_sample:
        decision = getattr(sampler, "_decision", None)
        return decision if isinstance(decision, Decision) else None
    if (
        isinstance(sampler, TraceIdRatioBased)
        and type(sampler).should_sample is TraceIdRatioBased.should_sample
        and type(sampler).bound is TraceIdRatioBased.bound
        and getattr(sampler, "TRACE_ID_LIMIT", None) == _RATIO_LIMIT
    ):
        bound = sampler.bound
        return bound if type(bound) is int else None
    return None


def _parent_based(sampler: Any) -> tuple[_Fixed, ...] | None:
    """A parent-based sampler's five delegates' decisions (None where a delegate is not static), or
    None if ``sampler`` is not one: the SDK's default, ``parentbased_always_on``, is all static, and
    ``parentbased_traceidratio`` (production's usual choice) a ratio at the root."""
    if not isinstance(sampler, ParentBased) or type(sampler).should_sample is not ParentBased.should_sample:
        return None
    if not all(hasattr(sampler, name) for name in _DELEGATES):
        return None
    return tuple(_static(getattr(sampler, name)) for name in _DELEGATES)


def _tuple_layout() -> bool:
    """True if a SpanContext is the tuple (trace_id, span_id, is_remote, flags, state, is_valid)
    that the API's ``SpanContext.__new__`` builds: then :meth:`SpanMaker.start` reads and makes
    them as tuples, without a Python property call per field."""
    flags, state = TraceFlags(1), TraceState([("k", "v")])
    probe = SpanContext(3, 5, True, flags, state)
    made = tuple.__new__(SpanContext, (3, 5, True, flags, state, True))
    return (
        tuple(probe) == (3, 5, True, flags, state, True)
        and (made.trace_id, made.span_id, made.is_remote, made.trace_flags, made.trace_state, made.is_valid)
        == (3, 5, True, flags, state, True)
        and made == probe
    )


TUPLES = _tuple_layout()
#: the SDK's BatchSpanProcessor.on_end is "if the span is sampled, emit it to the batch queue"
_BATCH_ON_END = BatchSpanProcessor.on_end.__code__.co_names == (
    "context", "trace_flags", "sampled", "_batch_processor", "emit",
)  # fmt: skip


def _pass_only(self: Any, span: Any, parent_context: Any = None) -> None:
    pass


def _doc_only(self: Any, span: Any, parent_context: Any = None) -> None:
    """A docstring is all there is (the SDK's SpanProcessor base methods)."""


_NOTHING = frozenset({_pass_only.__code__.co_code, _doc_only.__code__.co_code})


def _does_nothing(method: Any) -> bool:
    """True for a method whose body is only ``pass`` or a docstring (the SDK's no-op ``on_start``
    and ``_on_ending`` hooks), so calling it can be skipped."""
    code = getattr(getattr(method, "__func__", None), "__code__", None)
    return code is not None and code.co_code in _NOTHING and not code.co_names


class _NotMulti:
    """Stands in for the tracer's processor when it is not a SynchronousMultiSpanProcessor: that
    processor's hooks never change, and with this in ``SpanMaker._multi`` the test of whether they
    did is the same attribute comparison either way."""

    _span_processors: object = object()


_NOT_MULTI = _NotMulti()


@attrs.frozen
class _Hooks:
    """One processor tuple's hooks, as :class:`SynchronousMultiSpanProcessor` would call them, without
    the no-op ones; a batch processor's ``on_end`` is its queue's ``emit`` for a sampled span (what it
    does) and nothing for another."""

    starts: tuple[Callable[..., None], ...]
    endings: tuple[Callable[[Any], None], ...]
    #: (callable, for sampled spans only) in the processors' order
    ends: tuple[tuple[Callable[[Any], None], bool], ...]
    #: when all there is to ending a span is one batch processor's emit (the usual set-up), that
    #: emit, which :meth:`CallSpan.end` calls for a sampled span itself
    only_emit: Callable[[Any], None] | None = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        single = TUPLES and not self.endings and len(self.ends) == 1 and self.ends[0][1]
        object.__setattr__(self, "only_emit", self.ends[0][0] if single else None)

    @classmethod
    def of(cls, processors: Sequence[Any]) -> _Hooks:
        starts, endings, ends = [], [], []
        for sp in processors:
            if not _does_nothing(sp.on_start):
                starts.append(sp.on_start)
            ending = getattr(sp, "_on_ending", None)
            if ending is not None and not _does_nothing(ending):
                endings.append(ending)
            emit = getattr(getattr(sp, "_batch_processor", None), "emit", None)
            if type(sp) is BatchSpanProcessor and _BATCH_ON_END and callable(emit):
                ends.append((emit, True))
            else:
                ends.append((sp.on_end, False))
        return cls(tuple(starts), tuple(endings), tuple(ends))


class SpanMaker:
    """Starts :class:`CallSpan` s with one SDK tracer's sampler, ids, limits and processors."""

    __slots__ = (
        "_decisions",
        "_flags_random",
        "_hooks",
        "_multi",
        "_parent_based",
        "_quick",
        "_random_ids",
        "_seen",
        "_span_context_in",
        "_static",
        "_with_span",
        "ids",
        "info",
        "limits",
        "processor",
        "resource",
        "sampler",
        "scope",
        "tracer",
    )

    def __init__(self, tracer: Any, ops: ContextOps | None = None) -> None:
        self.tracer = tracer
        self.sampler = tracer.sampler
        self.processor = tracer.span_processor
        self.ids = tracer.id_generator
        ops = ops or context_ops()
        self._span_context_in, self._with_span = ops.span_context_in, ops.with_span
        #: the SDK's default generator: its ids are drawn here, as it draws them (never 0)
        self._random_ids = type(self.ids) is RandomIdGenerator
        #: the processor tuple ``_hooks`` was made for (a provider's processors can be added later)
        self._seen: Any = None
        #: the tracer's processor when it is the SDK's synchronous multi-processor (the default)
        self._multi: Any = self.processor if type(self.processor) is SynchronousMultiSpanProcessor else _NOT_MULTI
        self._hooks = self._processor_hooks()
        self.resource = tracer.resource
        self.scope = tracer._instrumentation_scope
        self.info = getattr(tracer, "instrumentation_info", None)
        limits = getattr(tracer, "_span_limits", None)
        self.limits: SpanLimits = limits if isinstance(limits, SpanLimits) else SpanLimits()
        random_ids = getattr(self.ids, "is_trace_id_random", None)
        self._flags_random = _RANDOM if random_ids is not None and random_ids() else 0
        self._static = _static(self.sampler)
        self._parent_based = _parent_based(self.sampler)
        #: the sampler's decisions without being asked, by parent (root, remote sampled, remote not
        #: sampled, local sampled, local not sampled): ``_parent_based``, or ``_static`` for each
        self._decisions = self._parent_based or (self._static,) * 5
        #: start's short path applies: the SDK's default ids and the API's tuple layout
        self._quick = self._random_ids and TUPLES

    @classmethod
    def of(cls, tracer: Any, ops: ContextOps | None = None) -> SpanMaker | None:
        """A maker for ``tracer``, or None when only its ``start_span`` can make its spans."""
        if not isinstance(tracer, SdkTracer):
            return None
        needed = ("sampler", "span_processor", "id_generator", "resource", "_instrumentation_scope")
        if not all(hasattr(tracer, name) for name in needed):
            return None
        is_enabled = getattr(tracer, "_is_enabled", None)
        if is_enabled is not None and not is_enabled():
            return None
        if not set(vars(ReadableSpan("probe"))) <= _READABLE_FIELDS:  # an SDK with other fields
            return None
        if not hasattr(BoundedAttributes(), "_immutable"):  # how a span's attributes are frozen at end
            return None
        metrics = getattr(tracer, "_tracer_metrics", None)
        if metrics is not None and type(metrics).__name__ != "NoOpTracerMetrics":
            return None
        return cls(tracer, ops)

    def freeze(self, attributes: Mapping[str, Any]) -> Mapping[str, Any]:
        """``attributes`` validated (as the SDK's span would) once, to be shared by many spans: a
        read-only view of a plain dict, so comparing it with what the sampler returns runs in C."""
        limits = self.limits
        bounded = BoundedAttributes(
            limits.max_span_attributes,
            attributes,
            immutable=True,
            max_value_len=limits.max_span_attribute_length,
        )
        return MappingProxyType(dict(bounded))

    def start(
        self,
        name: str,
        parent: otel_context.Context | None,
        kind: SpanKind,
        attributes: Mapping[str, Any],
        remote: SpanContext | None = None,
    ) -> trace.Span:
        """What ``tracer.start_span(name, parent, kind, attributes)`` returns, for frozen ``attributes``.

        ``remote``, with ``parent`` None: the parent is this span context, as a server reads it from
        a request, in the current context. Why: the context holding it (a ``NonRecordingSpan`` in a
        copy of the current context) is what the SDK hands a dynamic sampler and the processors'
        ``on_start``; with the default sampler and processors nobody reads it, so it is only made
        when someone will."""
        parent_span = remote if remote is not None else self._span_context_in(parent)
        if not self._quick or type(parent_span) is not SpanContext:
            return self._start_any(name, parent, kind, attributes, remote, parent_span)
        # The SDK's default ids and the API's tuple layout (the usual set-up), in the fewest steps:
        # what _start_any does for them, with the sampler's decision read from _decisions.
        trace_id, _, is_remote, parent_flags, state, valid = parent_span
        decisions = self._decisions
        if valid:
            random, parent_or_none = parent_flags & _RANDOM, parent_span
            if is_remote:
                decision = decisions[1] if parent_flags & 1 else decisions[2]
            else:
                decision = decisions[3] if parent_flags & 1 else decisions[4]
        else:
            trace_id = _getrandbits(128)
            while not trace_id:
                trace_id = _getrandbits(128)
            random, parent_or_none, decision, state = self._flags_random, None, decisions[0], DEFAULT_STATE
        if type(decision) is int:  # a trace-id ratio: TraceIdRatioBased.should_sample's test
            decision = _SAMPLE if trace_id & _RATIO_LIMIT < decision else _DROP
        elif decision is None:  # a sampler that decides for itself
            if remote is not None and parent is None:
                parent = self._remote_context(remote)
            result = self.sampler.should_sample(parent, trace_id, name, kind, attributes, ())
            decision, state = result.decision, result.trace_state
            if state is None:
                state = DEFAULT_STATE
            if result.attributes != attributes:  # the sampler changed them
                attributes = self.freeze(result.attributes)
        span_id = _getrandbits(64)
        while not span_id:
            span_id = _getrandbits(64)
        flags = _FLAGS[1 | random] if decision is _SAMPLE else _FLAGS[random]
        context = _new_tuple(SpanContext, (trace_id, span_id, False, flags, state, True))
        if decision is not _SAMPLE and decision is not _RECORD_ONLY:
            return trace.NonRecordingSpan(context)
        span = CallSpan(self, name, context, parent_or_none, kind, attributes)
        if self._hooks.starts or self._multi._span_processors is not self._seen:
            self._on_start(span, parent, remote)
        return span

    def _start_any(
        self,
        name: str,
        parent: otel_context.Context | None,
        kind: SpanKind,
        attributes: Mapping[str, Any],
        remote: SpanContext | None,
        parent_span: SpanContext,
    ) -> trace.Span:
        """:meth:`start` for any id generator and span context layout."""
        if TUPLES and type(parent_span) is SpanContext:  # the fields without a property call each
            trace_id, _, is_remote, parent_flags, parent_state, valid = parent_span
        else:
            trace_id, is_remote, parent_flags = parent_span.trace_id, parent_span.is_remote, parent_span.trace_flags
            parent_state, valid = parent_span.trace_state, parent_span.is_valid
        random_ids = self._random_ids
        if valid:
            random = parent_flags & _RANDOM
            parent_or_none: SpanContext | None = parent_span
        else:
            if random_ids:
                trace_id = _random.getrandbits(128)
                while not trace_id:
                    trace_id = _random.getrandbits(128)
            else:
                trace_id = self.ids.generate_trace_id()
            random = self._flags_random
            parent_or_none = None
        delegates = self._parent_based  # the default sampler: its decision for this parent, inline
        if delegates is None:
            decision = self._static
        elif parent_or_none is None:
            decision = delegates[0]
        elif is_remote:
            decision = delegates[1] if parent_flags & 1 else delegates[2]
        else:
            decision = delegates[3] if parent_flags & 1 else delegates[4]
        if decision is not None:  # what the static sampler would say, without asking it
            if type(decision) is int:  # a trace-id ratio: TraceIdRatioBased.should_sample's test
                decision = _SAMPLE if trace_id & _RATIO_LIMIT < decision else _DROP
            trace_state = parent_state if parent_or_none is not None else None
        else:
            if remote is not None and parent is None:
                parent = self._remote_context(remote)
            result = self.sampler.should_sample(parent, trace_id, name, kind, attributes, ())
            decision, trace_state = result.decision, result.trace_state
            if result.attributes != attributes:  # the sampler changed them
                attributes = self.freeze(result.attributes)
        flags = _FLAGS[(1 if decision is Decision.RECORD_AND_SAMPLE else 0) | random]
        if random_ids and TUPLES:  # both ids drawn valid: the tuple SpanContext() would build
            span_id = _random.getrandbits(64)
            while not span_id:
                span_id = _random.getrandbits(64)
            state = trace_state if trace_state is not None else DEFAULT_STATE
            context: SpanContext = tuple.__new__(SpanContext, (trace_id, span_id, False, flags, state, True))
        else:
            context = SpanContext(trace_id, self.ids.generate_span_id(), False, flags, trace_state)
        if decision is not Decision.RECORD_AND_SAMPLE and decision is not Decision.RECORD_ONLY:
            return trace.NonRecordingSpan(context)
        span = CallSpan(self, name, context, parent_or_none, kind, attributes)
        if self._hooks.starts or self._multi._span_processors is not self._seen:
            self._on_start(span, parent, remote)
        return span

    def _on_start(self, span: CallSpan, parent: otel_context.Context | None, remote: SpanContext | None) -> None:
        """The processors' ``on_start`` (those of the processors there are now)."""
        hooks = self._hooks
        if self._multi._span_processors is not self._seen:
            hooks = self._processor_hooks()
        if hooks.starts:
            if remote is not None and parent is None:
                parent = self._remote_context(remote)
            for on_start in hooks.starts:
                on_start(span, parent_context=parent)

    def _remote_context(self, remote: SpanContext) -> otel_context.Context:
        """The context the API's extract would have made: the current one with ``remote`` set in it."""
        return self._with_span(trace.NonRecordingSpan(remote))

    def _processor_hooks(self) -> _Hooks:
        """The hooks of the processors the tracer has now (SynchronousMultiSpanProcessor replaces
        its tuple when one is added, which start and finish notice), or of the tracer's processor
        itself if it is another kind."""
        current = getattr(self._multi, "_span_processors", None)
        if isinstance(current, tuple):
            self._seen, self._hooks = current, _Hooks.of(current)
            return self._hooks
        processor, self._multi, self._seen = self.processor, _NOT_MULTI, _NOT_MULTI._span_processors
        ending = getattr(processor, "_on_ending", None)
        self._hooks = _Hooks((processor.on_start,), (ending,) if ending else (), ((processor.on_end, False),))
        return self._hooks

    def finish(self, span: CallSpan) -> None:
        hooks = self._hooks
        if self._multi._span_processors is not self._seen:
            hooks = self._processor_hooks()
        for on_ending in hooks.endings:
            on_ending(span)
        context = span.get_span_context()
        sampled = (context[3] if TUPLES else context.trace_flags) & 1
        for on_end, sampled_only in hooks.ends:
            if sampled or not sampled_only:
                on_end(span)


class CallSpan(trace.Span, ReadableSpan):
    """A recording span whose attributes start as a shared frozen mapping (copied on first write).

    It behaves as the SDK's span does (status rules, limits, ``record_exception``'s event, warnings
    on use after end), and like the SDK's span it is its own ``ReadableSpan``: the read side
    (``name``, ``attributes``, ``to_json`` ...) is the SDK's, over the fields it expects
    (:data:`_READABLE_FIELDS`, checked by :meth:`SpanMaker.of`), and once ended the span itself is
    what the processors' ``on_end`` get, as nothing can change it any more."""

    __slots__ = (
        "_attributes",
        "_context",
        "_end_time",
        "_kind",
        "_maker",
        "_name",
        "_parent",
        "_start_time",
    )

    # What most spans keep all their life, as class defaults: a span that adds an event or a link,
    # sets a status or copies its attributes keeps its own in its instance dict (the SDK's classes
    # above have no slots, so it has one). Four fewer stores for every span.
    _own: bool = False
    _events: Sequence[Event] = ()
    _links: Sequence[Link] = ()
    _status: Status = _UNSET

    def __init__(
        self,
        maker: SpanMaker,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: Mapping[str, Any],
    ) -> None:
        self._maker = maker
        self._name = name
        self._context = context
        self._parent = parent
        self._kind = kind
        self._attributes: Mapping[str, Any] = attributes
        self._start_time: int | None = time.time_ns()
        self._end_time: int | None = None

    # the per-tracer fields of ReadableSpan, from the maker rather than copied into every span
    # (read-only here: ReadableSpan only reads them)
    @property
    def _resource(self) -> Any:  # type: ignore[override]
        return self._maker.resource

    @property
    def _instrumentation_scope(self) -> Any:  # type: ignore[override]
        return self._maker.scope

    @property
    def _instrumentation_info(self) -> Any:  # type: ignore[override]
        return self._maker.info

    # -- the API --
    def get_span_context(self) -> SpanContext:
        return self._context  # type: ignore[return-value]  # always set here; Optional in ReadableSpan

    def is_recording(self) -> bool:
        return self._end_time is None

    def _ended(self, what: str) -> bool:
        if self._end_time is None:
            return False
        logger.warning("Tried calling %s on an ended span.", what)
        return True

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        if self._ended("set_attribute"):
            return
        own = self._attributes
        if not self._own or not isinstance(own, BoundedAttributes):
            limits = self._maker.limits
            own = BoundedAttributes(
                limits.max_span_attributes,
                self._attributes,
                immutable=False,
                max_value_len=limits.max_span_attribute_length,
            )
            self._attributes, self._own = own, True
        own[key] = value

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(self, name: str, attributes: types.Attributes = None, timestamp: int | None = None) -> None:
        if self._ended("add_event"):
            return
        limits = self._maker.limits
        events = self._events
        if not isinstance(events, BoundedList):  # the SDK's: drops the oldest, counts the drops
            events = self._events = BoundedList(limits.max_events)
        bounded = BoundedAttributes(
            limits.max_event_attributes,
            attributes,
            immutable=True,
            max_value_len=limits.max_attribute_length,
        )
        events.append(Event(name, bounded, timestamp if timestamp is not None else time.time_ns()))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if not (context and (context.is_valid or attributes or context.trace_state)):
            return
        if self._ended("add_link"):
            return
        limits = self._maker.limits
        links = self._links
        if not isinstance(links, BoundedList):
            links = self._links = BoundedList(limits.max_links)
        bounded = BoundedAttributes(
            limits.max_link_attributes,
            attributes,
            immutable=True,
            max_value_len=limits.max_attribute_length,
        )
        links.append(Link(context, bounded))

    def update_name(self, name: str) -> None:
        if not self._ended("update_name"):
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._ended("set_status"):
            return
        if self._status.status_code is StatusCode.OK:  # OK is final
            return
        if isinstance(status, Status):
            if status.status_code is not StatusCode.UNSET:
                self._status = status
        elif status is not StatusCode.UNSET:
            self._status = Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        event: dict[str, Any] = {
            "exception.type": f"{module}.{qualname}" if module and module != "builtins" else qualname,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(
                traceback.format_exception(type(exception), exception, exception.__traceback__)
            ),
            "exception.escaped": str(escaped),
        }
        if attributes:
            event.update(attributes)
        self.add_event("exception", event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            logger.warning("Calling end() on an ended span.")
            return
        self._end_time = end_time if end_time is not None else time.time_ns()
        if self._own:  # frozen from here on, as the SDK's span freezes its own (keeping the drop count)
            self._attributes._immutable = True  # type: ignore[attr-defined]
        maker = self._maker
        emit = maker._hooks.only_emit  # (None unless TUPLES)
        if (
            emit is not None
            and self._context[3] & 1  # type: ignore[index]  # sampled (a tuple, never None here)
            and maker._multi._span_processors is maker._seen
        ):
            emit(self)  # what finish would do, one call shorter
        else:
            maker.finish(self)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_val is not None and self.is_recording():
            self.record_exception(exc_val, escaped=True)
            self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        self.end()
