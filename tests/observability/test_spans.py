"""Call spans (trimicro.observability._spans): what the SDK's start_span makes, at a fraction of the cost.

Each test makes the same span both ways, the SDK's ``Tracer.start_span`` and :class:`SpanMaker`, and
compares what the exporter receives; the rest pin the parts the maker decides itself (sampling,
copy-on-write attributes, limits, use after end) and its refusals.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

import trimicro
from tests.conftest import Greeter
from tests.protos.greeter_pb2 import HelloRequest, HelloResponse
from trimicro.observability import _spans, instrument
from trimicro.observability._spans import CallSpan, SpanMaker
from trimicro.registry import MemoryRegistry

ATTRS = {"rpc.system": "go-micro", "rpc.service": "greeter", "rpc.method": "Greeter.Hello", "server.port": 8080}


class Setup:
    def __init__(self, **provider: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(**provider)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("trimicro")
        maker = SpanMaker.of(self.tracer)
        assert maker is not None
        self.maker = maker

    def both(self, parent: Any = None, kind: SpanKind = SpanKind.SERVER) -> tuple[Any, Any]:
        """(the SDK's span, the maker's span), both started."""
        sdk = self.tracer.start_span("greeter/Greeter.Hello", parent, kind, ATTRS)
        ours = self.maker.start("greeter/Greeter.Hello", parent, kind, self.maker.freeze(ATTRS))
        return sdk, ours

    def exported(self) -> list[Any]:
        return list(self.exporter.get_finished_spans())


def _same(a: Any, b: Any) -> None:
    """Two exported spans alike in everything but their ids and times."""
    assert a.name == b.name and a.kind == b.kind
    assert dict(a.attributes) == dict(b.attributes)
    assert a.status.status_code == b.status.status_code and a.status.description == b.status.description
    assert [(e.name, dict(e.attributes)) for e in a.events] == [(e.name, dict(e.attributes)) for e in b.events]
    assert [(lk.context, dict(lk.attributes)) for lk in a.links] == [
        (lk.context, dict(lk.attributes)) for lk in b.links
    ]
    assert a.context.trace_flags == b.context.trace_flags
    assert a.context.trace_state == b.context.trace_state
    assert (a.parent is None) == (b.parent is None)
    if a.parent is not None:
        assert a.parent == b.parent
    assert a.resource is b.resource and a.instrumentation_scope == b.instrumentation_scope
    assert a.dropped_attributes == b.dropped_attributes and a.dropped_events == b.dropped_events
    assert a.dropped_links == b.dropped_links
    assert a.start_time and a.end_time and b.start_time and b.end_time


def _remote(sampled: bool, state: TraceState | None = None) -> Any:
    sc = SpanContext(0xABC, 0xDEF, True, TraceFlags(1 if sampled else 0), state)
    return trace.set_span_in_context(NonRecordingSpan(sc))


def test_a_root_span_matches_the_sdks() -> None:
    s = Setup()
    sdk, ours = s.both()
    assert isinstance(ours, CallSpan)
    for span in (sdk, ours):
        span.end()
    a, b = s.exported()
    _same(a, b)
    assert b is ours  # ended, the span is its own ReadableSpan
    assert a.to_json().count("\n") == b.to_json().count("\n")


def test_a_child_of_a_remote_parent_keeps_its_trace_and_state() -> None:
    s = Setup()
    sdk, ours = s.both(_remote(True, TraceState([("vendor", "x")])))
    for span in (sdk, ours):
        span.end()
    a, b = s.exported()
    _same(a, b)
    assert b.context.trace_id == 0xABC and b.parent.span_id == 0xDEF and b.parent.is_remote


def test_a_client_span_takes_the_current_span_as_parent() -> None:
    s = Setup()
    with s.tracer.start_as_current_span("root") as root:
        sdk, ours = s.both(None, SpanKind.CLIENT)
    for span in (sdk, ours):
        span.end()
    _, a, b = s.exported()  # the root ended first
    _same(a, b)
    assert b.parent.span_id == root.get_span_context().span_id


def test_an_unsampled_parent_gives_a_non_recording_span_in_its_trace() -> None:
    s = Setup()
    sdk, ours = s.both(_remote(False, TraceState([("k", "v")])))
    assert not ours.is_recording() and isinstance(ours, NonRecordingSpan)
    assert ours.get_span_context().trace_id == 0xABC
    assert ours.get_span_context().trace_flags == sdk.get_span_context().trace_flags
    assert ours.get_span_context().trace_state == sdk.get_span_context().trace_state
    assert s.exported() == []


@pytest.mark.parametrize(
    "sampler",
    [ALWAYS_OFF, ALWAYS_ON, ParentBased(ALWAYS_OFF), TraceIdRatioBased(0.0), ParentBased(TraceIdRatioBased(1.0))],
    ids=["always_off", "always_on", "parentbased_always_off", "ratio_0", "parentbased_ratio_1"],
)
@pytest.mark.parametrize("parent", [None, True, False], ids=["root", "sampled_parent", "unsampled_parent"])
def test_sampling_decides_as_the_sdk_does(sampler: Sampler, parent: bool | None) -> None:
    s = Setup(sampler=sampler)
    context = None if parent is None else _remote(parent)
    sdk, ours = s.both(context)
    assert ours.is_recording() == sdk.is_recording()
    assert ours.get_span_context().trace_flags.sampled == sdk.get_span_context().trace_flags.sampled
    for span in (sdk, ours):
        span.end()
    exported = s.exported()
    assert len(exported) in (0, 2)
    if exported:
        _same(*exported)


@pytest.mark.parametrize(
    "sampler",
    [ALWAYS_ON, ParentBased(ALWAYS_ON), ParentBased(ALWAYS_OFF), TraceIdRatioBased(1.0), TraceIdRatioBased(0.0)],
    ids=["always_on", "parentbased_always_on", "parentbased_always_off", "ratio_1", "ratio_0"],
)
@pytest.mark.parametrize("sampled", [True, False], ids=["sampled", "unsampled"])
def test_a_remote_parent_handed_over_as_a_span_context_is_the_same_parent(sampler: Sampler, sampled: bool) -> None:
    """``start(..., remote=)``, the server's fast path: the same span as from the Context the API's
    extract makes, and a processor's ``on_start`` still gets such a Context (made only for it)."""
    seen: list[Any] = []

    class Watch(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            seen.append(trace.get_current_span(parent_context).get_span_context())

    s = Setup(sampler=sampler)
    s.provider.add_span_processor(Watch())
    remote = SpanContext(0xABC, 0xDEF, True, TraceFlags(1 if sampled else 0), TraceState([("k", "v")]))
    sdk = s.tracer.start_span("a", trace.set_span_in_context(NonRecordingSpan(remote)), SpanKind.SERVER, ATTRS)
    ours = s.maker.start("a", None, SpanKind.SERVER, s.maker.freeze(ATTRS), remote)
    assert ours.is_recording() == sdk.is_recording()
    assert ours.get_span_context().trace_flags == sdk.get_span_context().trace_flags
    assert ours.get_span_context().trace_state == sdk.get_span_context().trace_state
    assert ours.get_span_context().trace_id == 0xABC
    for span in (sdk, ours):
        span.end()
    exported = s.exported()
    assert len(exported) in (0, 2)
    if exported:
        _same(*exported)
        assert exported[1].parent == remote
    assert seen == [remote] * len(exported)  # once per recording span (these samplers record = sample)


def test_a_dynamic_sampler_is_asked_with_the_remote_parents_context() -> None:
    asked: list[Any] = []

    class Watching(Sampler):
        def should_sample(self, parent_context: Any, trace_id: int, name: str, *args: Any, **kw: Any) -> Any:
            asked.append(trace.get_current_span(parent_context).get_span_context())
            return SamplingResult(Decision.RECORD_AND_SAMPLE)

        def get_description(self) -> str:
            return "watching"

    s = Setup(sampler=Watching())
    remote = SpanContext(0xABC, 0xDEF, True, TraceFlags(1), TraceState([("k", "v")]))
    s.maker.start("a", None, SpanKind.SERVER, s.maker.freeze(ATTRS), remote).end()
    assert asked == [remote]
    [span] = s.exported()
    assert span.parent == remote and span.context.trace_id == 0xABC


@pytest.mark.parametrize(
    "sampler",
    [TraceIdRatioBased(0.25), TraceIdRatioBased(0.5), ParentBased(TraceIdRatioBased(0.5))],
    ids=["ratio_0.25", "ratio_0.5", "parentbased_ratio_0.5"],
)
def test_a_trace_id_ratio_is_decided_in_place_as_the_sdk_decides_it(sampler: Sampler) -> None:
    """The ratio test is done in place (production's usual sampler, ``parentbased_traceidratio``):
    for a root, the sampler itself is the oracle for the trace id the span drew; for children of
    remote parents, the SDK's span of the same parent."""
    s = Setup(sampler=sampler)
    for _ in range(200):
        root = s.maker.start("a", None, SpanKind.CLIENT, s.maker.freeze(ATTRS))
        ctx = root.get_span_context()
        expected = sampler.should_sample(None, ctx.trace_id, "a").decision is Decision.RECORD_AND_SAMPLE
        assert root.is_recording() == expected == bool(ctx.trace_flags & 1)
        root.end()
    for trace_id in [1, 2**63, 2**64 - 1, 0xABC << 64 | 2**62, 3 << 64 | (2**64 // 3)]:
        for flags in (0, 1):
            parent = trace.set_span_in_context(NonRecordingSpan(SpanContext(trace_id, 0xDEF, True, TraceFlags(flags))))
            sdk, ours = s.both(parent)
            assert ours.is_recording() == sdk.is_recording(), (hex(trace_id), flags)
            assert ours.get_span_context().trace_flags == sdk.get_span_context().trace_flags
            for span in (sdk, ours):
                span.end()


def test_a_ratio_sampler_that_overrides_its_test_is_asked() -> None:
    asked: list[int] = []

    class Odd(TraceIdRatioBased):
        def should_sample(self, parent_context: Any, trace_id: int, name: str, *args: Any, **kw: Any) -> Any:
            asked.append(trace_id)
            return SamplingResult(Decision.RECORD_AND_SAMPLE if trace_id % 2 else Decision.DROP)

    s = Setup(sampler=Odd(0.0))
    span = s.maker.start("a", None, SpanKind.CLIENT, s.maker.freeze(ATTRS))
    assert asked == [span.get_span_context().trace_id]
    assert span.is_recording() == bool(asked[0] % 2)


def test_a_sampler_that_adds_attributes_is_asked_and_obeyed() -> None:
    class Tagging(Sampler):
        def should_sample(self, parent_context: Any, trace_id: int, name: str, *args: Any, **kw: Any) -> Any:
            attributes = dict(args[1] if len(args) > 1 else kw.get("attributes") or {})
            return SamplingResult(Decision.RECORD_AND_SAMPLE, {**attributes, "sampled.by": "tagging"})

        def get_description(self) -> str:
            return "tagging"

    s = Setup(sampler=Tagging())
    sdk, ours = s.both()
    for span in (sdk, ours):
        span.end()
    a, b = s.exported()
    _same(a, b)
    assert b.attributes["sampled.by"] == "tagging"


def test_writes_copy_the_shared_attributes_and_respect_limits() -> None:
    s = Setup(span_limits=SpanLimits(max_span_attributes=4, max_events=1, max_event_attributes=1))
    frozen = s.maker.freeze(ATTRS)
    sdk = s.tracer.start_span("a", None, SpanKind.SERVER, ATTRS)
    first = s.maker.start("a", None, SpanKind.SERVER, frozen)
    second = s.maker.start("a", None, SpanKind.SERVER, frozen)
    for span in (sdk, first):
        span.set_attribute("error.type", "400")  # a fifth: the limit drops the oldest, as the SDK does
        span.set_attribute("rpc.method", "Greeter.Other")
        span.add_event("one", {"a": 1, "b": 2})  # one attribute kept
        span.add_event("two", {"c": 3})  # max_events=1: the oldest goes
        span.end()
    second.end()
    a, one, two = s.exported()
    _same(a, one)
    assert one.attributes["rpc.method"] == "Greeter.Other" and one.attributes["error.type"] == "400"
    assert len(one.attributes) == 4 and one.dropped_attributes == 1
    assert [e.name for e in one.events] == ["two"] and one.dropped_events == 1
    assert dict(two.attributes) == ATTRS and dict(frozen) == ATTRS  # the shared set is untouched
    with pytest.raises(TypeError):
        frozen["x"] = 1  # type: ignore[index]


def test_status_exceptions_and_links_as_the_sdk_records_them() -> None:
    s = Setup()
    link = SpanContext(0x1, 0x2, True, TraceFlags(1))
    sdk, ours = s.both()
    for span in (sdk, ours):
        span.set_status(Status(StatusCode.ERROR, "boom"))
        span.set_status(StatusCode.UNSET)  # ignored
        try:
            raise ValueError("boom")
        except ValueError as exc:
            span.record_exception(exc, {"extra": 1})
        span.add_link(link, {"why": "retry"})
        span.add_link(trace.INVALID_SPAN_CONTEXT)  # invalid, no attributes: ignored
        span.update_name("renamed")
        span.end()
    a, b = s.exported()
    _same(a, b)
    assert b.name == "renamed" and b.status.description == "boom"
    (event,) = b.events
    assert event.attributes["exception.type"] == "ValueError" and "boom" in event.attributes["exception.stacktrace"]


def test_ok_is_final_and_use_after_end_is_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    s = Setup()
    span = s.maker.start("a", None, SpanKind.SERVER, s.maker.freeze(ATTRS))
    span.set_status(StatusCode.OK)
    span.set_status(StatusCode.ERROR, "late")
    span.end()
    with caplog.at_level(logging.WARNING, logger=_spans.__name__):
        span.set_attribute("x", 1)
        span.add_event("late")
        span.end()
    (exported,) = s.exported()
    assert exported.status.status_code is StatusCode.OK
    assert "x" not in exported.attributes and not exported.events
    assert len(caplog.records) == 3


def test_with_block_records_the_exception_as_the_sdks_span_does() -> None:
    s = Setup()
    sdk, ours = s.both()
    for span in (sdk, ours):
        with pytest.raises(KeyError), span:
            raise KeyError("k")
    a, b = s.exported()
    _same(a, b)


def test_processors_see_a_readable_span_on_start() -> None:
    seen: list[tuple[str, dict[str, Any], Any]] = []

    class Watch(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            seen.append((span.name, dict(span.attributes), parent_context))

    s = Setup()
    s.provider.add_span_processor(Watch())
    parent = _remote(True)
    s.maker.start("a", parent, SpanKind.SERVER, s.maker.freeze(ATTRS)).end()
    assert seen == [("a", ATTRS, parent)]


def test_no_maker_for_other_tracers() -> None:
    assert SpanMaker.of(trace.NoOpTracer()) is None
    assert SpanMaker.of(trace.ProxyTracerProvider().get_tracer("x")) is None
    disabled = TracerProvider()
    disabled._disabled = True  # what OTEL_SDK_DISABLED=true does
    assert SpanMaker.of(disabled.get_tracer("x")) is None


@pytest.mark.parametrize("fast", [True, False], ids=["maker", "start_span"])
async def test_a_call_makes_the_same_spans_either_way(
    spans: Any, fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not fast:
        monkeypatch.setattr(SpanMaker, "of", classmethod(lambda cls, tracer, ops=None: None))
    registry = MemoryRegistry()
    svc = trimicro.Service("b", registry=registry, handlers=[Greeter()], transport="grpc", argv=[])
    instrument(svc, tracer_provider=spans.provider)
    async with trimicro.open_service(service=svc):
        await svc.client.call("b", "Greeter.Hello", HelloRequest(name="x"), response_type=HelloResponse)
        with pytest.raises(trimicro.MicroError):
            await svc.client.call("b", "Greeter.Fail", HelloRequest(name="x"), response_type=HelloResponse)
    found = {(s.name, s.kind): s for s in spans.finished()}
    ok = found[("b/Greeter.Hello", SpanKind.SERVER)]
    failed = found[("b/Greeter.Fail", SpanKind.SERVER)]
    client = found[("b/Greeter.Hello", SpanKind.CLIENT)]
    assert isinstance(ok, CallSpan) is fast
    assert ok.attributes["rpc.grpc.status_code"] == 0 and ok.status.status_code is StatusCode.UNSET
    assert failed.attributes["rpc.grpc.status_code"] == 3 and failed.attributes["error.type"] == "400"
    assert client.attributes["rpc.system"] == "grpc"
    assert ok.parent.span_id == client.context.span_id


def test_a_processor_added_after_the_maker_sees_the_next_span() -> None:
    s = Setup()
    s.maker.start("before", None, SpanKind.SERVER, s.maker.freeze(ATTRS)).end()
    late = InMemorySpanExporter()
    s.provider.add_span_processor(SimpleSpanProcessor(late))
    s.maker.start("after", None, SpanKind.SERVER, s.maker.freeze(ATTRS)).end()
    assert [x.name for x in s.exported()] == ["before", "after"]
    assert [x.name for x in late.get_finished_spans()] == ["after"]


def test_another_kind_of_span_processor_gets_every_hook() -> None:
    """A provider whose processor is not the SDK's synchronous multi-processor (here the concurrent
    one): its own on_start and on_end run for every span, and the spans match the SDK's."""
    from opentelemetry.sdk.trace import ConcurrentMultiSpanProcessor

    s = Setup(active_span_processor=ConcurrentMultiSpanProcessor(num_threads=1))
    started: list[str] = []

    class Watch(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            started.append(span.name)

    s.provider.add_span_processor(Watch())
    for _ in range(2):
        sdk, ours = s.both()
        sdk.end()
        ours.end()
    first, second, third, fourth = s.exported()
    _same(first, second)
    _same(third, fourth)
    assert started == ["greeter/Greeter.Hello"] * 4
    assert s.maker._hooks.starts and s.maker._multi is _spans._NOT_MULTI
    s.provider.shutdown()


def test_processors_are_called_in_order_and_no_op_hooks_are_skipped() -> None:
    calls: list[str] = []

    class Quiet(SpanProcessor):  # on_start and _on_ending are the base class's docstring-only hooks
        def on_end(self, span: Any) -> None:
            calls.append("quiet.end")

    class Loud(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            calls.append("loud.start")

        def _on_ending(self, span: Any) -> None:
            calls.append("loud.ending")

        def on_end(self, span: Any) -> None:
            calls.append("loud.end")

    s = Setup()
    s.provider.add_span_processor(Quiet())
    s.provider.add_span_processor(Loud())
    s.maker.start("a", None, SpanKind.SERVER, s.maker.freeze(ATTRS)).end()
    assert calls == ["loud.start", "loud.ending", "quiet.end", "loud.end"]
    assert _spans._does_nothing(Quiet().on_start) and _spans._does_nothing(Quiet()._on_ending)
    assert not _spans._does_nothing(Loud().on_start)
    hooks = s.maker._hooks
    assert hooks is not None and len(hooks.starts) == 1 and len(hooks.endings) == 1 and len(hooks.ends) == 3


@pytest.mark.parametrize("sampled", [True, False], ids=["sampled", "record-only"])
def test_a_batch_processor_exports_what_the_sdks_would(sampled: bool) -> None:
    """The batch processor's ``on_end`` is replaced by its queue's ``emit`` for sampled spans only."""

    class RecordOnly(Sampler):
        def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
            return SamplingResult(Decision.RECORD_ONLY)

        def get_description(self) -> str:
            return "record-only"

    exporter = InMemorySpanExporter()
    provider = TracerProvider(**({} if sampled else {"sampler": RecordOnly()}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("trimicro")
    maker = SpanMaker.of(tracer)
    assert maker is not None
    assert maker._hooks is not None and maker._hooks.ends[0][1] is _spans._BATCH_ON_END
    tracer.start_span("sdk", None, SpanKind.SERVER, ATTRS).end()
    ours = maker.start("ours", None, SpanKind.SERVER, maker.freeze(ATTRS))
    assert ours.is_recording()
    ours.end()
    provider.force_flush()
    assert sorted(x.name for x in exporter.get_finished_spans()) == (["ours", "sdk"] if sampled else [])
    provider.shutdown()


def test_span_contexts_are_made_as_the_api_makes_them() -> None:
    assert _spans.TUPLES  # this SDK's layout: the fast path is what the suite tests
    s = Setup()
    span = s.maker.start("a", _remote(True, TraceState([("k", "v")])), SpanKind.SERVER, s.maker.freeze(ATTRS))
    sc = span.get_span_context()
    again = SpanContext(sc.trace_id, sc.span_id, sc.is_remote, sc.trace_flags, sc.trace_state)
    assert sc == again and sc.is_valid and not sc.is_remote and sc.trace_state == TraceState([("k", "v")])
    root = s.maker.start("b", None, SpanKind.SERVER, s.maker.freeze(ATTRS)).get_span_context()
    assert root.trace_state is _spans.DEFAULT_STATE and root.is_valid and root.trace_id and root.span_id


def test_another_id_generator_is_asked_for_the_ids() -> None:
    class Counting(IdGenerator):
        def __init__(self) -> None:
            self.n = 0

        def generate_span_id(self) -> int:
            self.n += 1
            return self.n

        def generate_trace_id(self) -> int:
            return 0x1234

    s = Setup(id_generator=Counting())
    span = s.maker.start("a", None, SpanKind.SERVER, s.maker.freeze(ATTRS))
    assert span.get_span_context().trace_id == 0x1234 and span.get_span_context().span_id == 1
