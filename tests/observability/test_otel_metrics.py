"""OpenTelemetry metrics: semconv RPC and messaging instruments, read back through the SDK's reader."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
import trio

pytest.importorskip("opentelemetry.sdk.metrics", reason="the otel extra is not installed")

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import trimicro
from tests.conftest import Greeter
from tests.protos.greeter_pb2 import Event, HelloRequest, HelloResponse
from trimicro.broker.memory import MemoryBroker
from trimicro.config import load_options
from trimicro.observability import _otel_metrics, instrument
from trimicro.observability._otel_metrics import BUCKETS, _Rpc
from trimicro.registry import MemoryRegistry, Node, Service
from trimicro.testing import free_port

pytestmark = pytest.mark.loopback


class Meters:
    """A meter provider whose instruments are read on demand (the SDK's in-memory reader)."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])

    def points(self) -> dict[str, list[Any]]:
        """Instrument name -> its data points, collected now."""
        out: dict[str, list[Any]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out

    def point(self, name: str, **attributes: Any) -> Any:
        """The one point of ``name`` whose attributes are exactly ``attributes`` (None: none such)."""
        found = [p for p in self.points().get(name, []) if dict(p.attributes) == attributes]
        assert len(found) <= 1, found
        return found[0] if found else None


@pytest.fixture
def meters() -> Iterator[Meters]:
    m = Meters()
    yield m
    m.provider.shutdown()


async def _calls(client: trimicro.Client, ok: int, bad: int) -> None:
    for _ in range(ok):
        await client.call("g", "Greeter.Hello", HelloRequest(name="x"), response_type=HelloResponse)
    for _ in range(bad):
        with pytest.raises(trimicro.MicroError):
            await client.call("g", "Greeter.Fail", HelloRequest(name="x"), response_type=HelloResponse)


@pytest.mark.parametrize("transport", ["http", "grpc"])
async def test_call_durations_errors_and_in_flight(meters: Meters, transport: str) -> None:
    greeter = Greeter()
    svc = trimicro.Service("g", registry=MemoryRegistry(), handlers=[greeter], transport=transport, argv=[])
    obs = instrument(svc, meter_provider=meters.provider)
    assert obs.otel_metrics is not None and obs.metrics is None and obs.tracing is None
    async with trimicro.open_service(service=svc):
        await _calls(svc.client, ok=3, bad=2)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(svc.client.call, "g", "Greeter.Gate", HelloRequest(name="x"))
            with trio.fail_after(5):
                await greeter.started.wait()
            grpc = transport == "grpc"
            system = "grpc" if grpc else "go-micro"
            gate = {"rpc.system": system, "rpc.service": "g", "rpc.method": "Greeter.Gate"}
            assert meters.point("rpc.server.active_requests", **gate).value == 1
            assert meters.point("rpc.client.active_requests", **gate).value == 1
            greeter.release.set()
    base = {"rpc.system": system, "rpc.service": "g"}
    ok = {**base, "rpc.method": "Greeter.Hello"} | ({"rpc.grpc.status_code": 0} if grpc else {})
    # a 400 is INVALID_ARGUMENT (3) on the gRPC wire
    bad = {**base, "rpc.method": "Greeter.Fail", "error.type": "400"} | (
        {"rpc.grpc.status_code": 3} if grpc else {}
    )
    for side in ("server", "client"):
        name = f"rpc.{side}.call.duration"
        hello, fail = meters.point(name, **ok), meters.point(name, **bad)
        assert hello is not None and fail is not None, (side, meters.points()[name])
        assert hello.count == 3 and fail.count == 2
        assert 0 < hello.sum < 10 and hello.min <= hello.max
        assert tuple(hello.explicit_bounds) == BUCKETS
        # success and failure are the only series of the endpoint: error counts are count(error.type)
        assert meters.point(name, **{**base, "rpc.method": "Greeter.Fail"}) is None
        assert meters.point(f"rpc.{side}.active_requests", **gate).value == 0
        assert meters.point(f"rpc.{side}.active_requests", **{**base, "rpc.method": "Greeter.Hello"}).value == 0


async def test_exceptions_and_cancellation_have_their_error_type(meters: Meters) -> None:
    svc = trimicro.Service("g", registry=MemoryRegistry(), handlers=[Greeter()], argv=[])
    instrument(svc, otel_metrics=True, meter_provider=meters.provider)
    async with trimicro.open_service(service=svc):
        with pytest.raises(trimicro.MicroError) as info:
            await svc.client.call("g", "Greeter.Crash", HelloRequest(name="x"), retries=0)
        assert info.value.code == 500
        with trio.move_on_after(0.2):  # the caller gives up: its side is "cancelled"
            await svc.client.call("g", "Greeter.Gate", HelloRequest(name="x"), retries=0)
        # the server's handler is cancelled when the connection goes (by the time the service stops)
    crash = {"rpc.system": "go-micro", "rpc.service": "g", "rpc.method": "Greeter.Crash"}
    assert meters.point("rpc.server.call.duration", **crash, **{"error.type": "ZeroDivisionError"}).count == 1
    assert meters.point("rpc.client.call.duration", **crash, **{"error.type": "500"}).count == 1
    assert meters.point("rpc.client.call.duration", **_gate(), **{"error.type": "cancelled"}).count == 1
    assert meters.point("rpc.client.active_requests", **_gate()).value == 0
    assert meters.point("rpc.server.call.duration", **_gate(), **{"error.type": "cancelled"}).count == 1
    assert meters.point("rpc.server.active_requests", **_gate()).value == 0


def _gate() -> dict[str, str]:
    return {"rpc.system": "go-micro", "rpc.service": "g", "rpc.method": "Greeter.Gate"}


async def test_deliveries_and_publishes(meters: Meters) -> None:
    done = trio.Event()

    async def bad(msg: Event, ctx: trimicro.Context) -> None:
        done.set()
        raise trimicro.errors.bad_request("sub", "no")

    svc = trimicro.Service("g", registry=MemoryRegistry(), broker=MemoryBroker(), argv=[])
    svc.subscribe("events", lambda msg, ctx: trio.lowlevel.checkpoint())
    svc.subscribe("bad", bad)
    instrument(svc, meter_provider=meters.provider)
    async with trimicro.open_service(service=svc):
        for _ in range(2):
            await svc.client.publish("events", Event(id="1"))
        await svc.client.publish("bad", Event(id="2"))
        system = svc.options.broker
        process = {
            "messaging.system": system,
            "messaging.destination.name": "events",
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.consumer.group.name": "g",
        }
        failed = {**process, "messaging.destination.name": "bad", "error.type": "400"}
        with trio.fail_after(10):  # deliveries run in the subscriber's own tasks
            while True:
                delivered = meters.point("messaging.process.duration", **process)
                rejected = meters.point("messaging.process.duration", **failed)
                if delivered is not None and delivered.count == 2 and rejected is not None:
                    break
                await trio.sleep(0.01)
    assert rejected.count == 1 and done.is_set()
    publish = {
        "messaging.system": system,
        "messaging.destination.name": "events",
        "messaging.operation.name": "publish",
        "messaging.operation.type": "send",
    }
    assert meters.point("messaging.client.operation.duration", **publish).count == 2
    assert tuple(meters.point("messaging.client.operation.duration", **publish).explicit_bounds) == BUCKETS


async def test_selector_ejections_and_retries_are_observable(meters: Meters) -> None:
    """A registered node that refuses connections: calls to it fail over, and it is ejected."""
    registry = MemoryRegistry()
    svc = trimicro.Service(
        "g", registry=registry, handlers=[Greeter()], selector_consecutive_failures=1, argv=[]
    )
    instrument(svc, meter_provider=meters.provider)
    async with trimicro.open_service(service=svc):
        dead = Node("dead", f"127.0.0.1:{free_port()}", {"protocol": "mucp"})
        await registry.register(Service("g", "latest", nodes=[dead]))
        for _ in range(40):  # random picks: the dead node comes up (p of never: 2^-40)
            await svc.client.call("g", "Greeter.Hello", HelloRequest(name="x"), response_type=HelloResponse)
            if svc.client.stats()["retries"]:
                break  # now, before successes refill the retry budget (a full one is not reported)
        selector, client = svc.client.selector.stats(), svc.client.stats()
        points = meters.points()
    assert selector["ejections"] >= 1 and client["retries"] >= 1
    [ejections] = points["micro.selector.ejections"]
    assert ejections.value == selector["ejections"]
    [retries] = points["micro.client.retries"]
    assert retries.value == client["retries"]
    [throttled] = points["micro.client.retries_throttled"]
    assert throttled.value == client["retries_throttled"] == 0
    assert {p.attributes["rpc.service"]: p.value for p in points["micro.selector.ejected_nodes"]} == {"g": 1}
    [tokens] = points["micro.client.retry_tokens"]
    assert tokens.attributes == {"rpc.service": "g"} and tokens.value == client["retry_tokens"]["g"]
    for name in ("micro.selector.reinstated", "micro.selector.probes", "micro.client.hedges",
                 "micro.client.attempt_timeouts", "micro.client.pushbacks"):  # fmt: skip
        assert len(points[name]) == 1, name


def test_endpoint_cache_keeps_calls_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("trimicro.observability._otel_metrics._CACHE_LIMIT", 2)
    rpc = _Rpc.create(MeterProvider().get_meter("t"), "server")
    busy = rpc.endpoint("s", "A.Busy", False)
    busy.in_flight = 1
    rpc.endpoint("s", "A.Idle", False)
    rpc.endpoint("s", "A.New", False)  # over the limit: the idle one goes, the busy one stays
    assert rpc.endpoint("s", "A.Busy", False) is busy
    assert [o.attributes["rpc.method"] for o in rpc.active(None)] == ["A.Busy", "A.New"]  # type: ignore[arg-type]


def _recorded(fast: bool, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Each duration point (and its exemplars) after the same records, with or without the fast path."""
    if not fast:
        monkeypatch.setattr(_otel_metrics, "_recorder", lambda h: (h.record, _otel_metrics._identity))
    meters = Meters()
    rpc = _Rpc.create(meters.provider.get_meter("t"), "server")
    ok = rpc.endpoint("s", "A.Ok", True)
    sampled = SpanContext(0x1234, 0x5678, False, TraceFlags(1))
    with trace.use_span(NonRecordingSpan(sampled)):  # the SDK's default filter keeps exemplars of sampled spans
        for amount in (0.001, 0.02, 0.3, 4.0, 12.0):
            rpc._record(amount, ok.ok)
    rpc._record(0.5, ok.failure(trimicro.MicroError("x", 404, "no"), rpc._clean))
    rpc._record(0.7, ok.failure(ValueError("bad"), rpc._clean))
    points = meters.points()["rpc.server.call.duration"]
    meters.provider.shutdown()
    monkeypatch.undo()
    return sorted(
        (
            {
                "attributes": dict(p.attributes),
                "count": p.count,
                "sum": p.sum,
                "min": p.min,
                "max": p.max,
                "buckets": list(p.bucket_counts),
                "exemplars": sorted((e.value, e.trace_id, e.span_id) for e in p.exemplars),
            }
            for p in points
        ),
        key=repr,
    )


def test_durations_recorded_past_record_are_what_record_makes(monkeypatch: pytest.MonkeyPatch) -> None:
    # _recorder hands the SDK's consumer what Histogram.record would, minus cleaning the same
    # attributes again: the exported points, buckets and exemplars are the same.
    fast, slow = _recorded(True, monkeypatch), _recorded(False, monkeypatch)
    assert fast == slow
    assert [p["count"] for p in fast] == [1, 1, 5]
    assert any(p["exemplars"] and p["exemplars"][0][1] == 0x1234 for p in fast)


def test_recorder_falls_back_to_record_off_the_sdk(caplog: pytest.LogCaptureFixture) -> None:
    from opentelemetry.metrics import NoOpMeterProvider

    histogram = NoOpMeterProvider().get_meter("t").create_histogram("h")
    record, clean = _otel_metrics._recorder(histogram)
    assert record == histogram.record and clean is _otel_metrics._identity
    # the SDK's own histogram, a negative amount: the SDK's warning, nothing recorded
    meters = Meters()
    rpc = _Rpc.create(meters.provider.get_meter("t"), "client")
    assert rpc._record != rpc.duration.record
    rpc._record(-1.0, rpc.endpoint("s", "A.B", False).ok)
    assert "non-negative" in caplog.text
    assert "rpc.client.call.duration" not in meters.points()
    meters.provider.shutdown()


def test_option_flag_and_env() -> None:
    assert load_options(env={"MICRO_OTEL_METRICS": "true"}).otel_metrics is True
    assert load_options(env={"MICRO_OTEL_METRICS": "0"}).otel_metrics is False
    assert load_options(argv=["--otel_metrics", "yes"], env={}).otel_metrics is True
    assert load_options(env={}).otel_metrics is False
    with pytest.raises(ValueError, match="not a boolean"):
        load_options(env={"MICRO_OTEL_METRICS": "maybe"})


async def test_the_option_installs_the_wrappers(monkeypatch: pytest.MonkeyPatch) -> None:
    """``MICRO_OTEL_METRICS=true`` alone: the service records on the global meter provider."""
    monkeypatch.setenv("MICRO_OTEL_METRICS", "true")
    monkeypatch.delenv("OTEL_METRICS_EXPORTER", raising=False)
    svc = trimicro.Service("g", registry=MemoryRegistry(), handlers=[Greeter()], argv=[])
    async with trimicro.open_service(service=svc):
        await _calls(svc.client, ok=1, bad=0)
        assert svc.observability is not None and svc.observability.otel_metrics is not None
        assert svc.observability.metrics is None and svc.observability.tracing is None
    off = trimicro.Service("g", registry=MemoryRegistry(), handlers=[Greeter()], otel_metrics=False, argv=[])
    async with trimicro.open_service(service=off):
        assert off.observability is None


def test_missing_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # type: ignore[arg-type]
    monkeypatch.delitem(sys.modules, "trimicro.observability._otel_metrics")
    svc = trimicro.Service("g", registry=MemoryRegistry(), handlers=[Greeter()], argv=[])
    with pytest.raises(ImportError, match=r"otel_metrics needs OpenTelemetry: pip install 'trimicro\[otel\]'"):
        instrument(svc, otel_metrics=True)
    assert svc.observability is None


def test_console_exporter_from_the_environment() -> None:
    """``OTEL_METRICS_EXPORTER=console``: no code, the SDK's reader exports (at the latest on exit)."""
    code = textwrap.dedent(
        """
        import trio, trimicro
        from tests.conftest import Greeter
        from tests.protos.greeter_pb2 import HelloRequest, HelloResponse

        async def main():
            reg = trimicro.registry.MemoryRegistry()
            async with trimicro.open_service("g", registry=reg, handlers=[Greeter()]) as svc:
                await svc.client.call("g", "Greeter.Hello", HelloRequest(name="x"), response_type=HelloResponse)
                assert svc.observability.otel_metrics is not None

        trio.run(main)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MICRO_", "OTEL_"))}
    env |= {"MICRO_OTEL_METRICS": "true", "OTEL_METRICS_EXPORTER": "console", "OTEL_SERVICE_NAME": "svc-x"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert out.returncode == 0, out.stderr
    for text in ('"rpc.server.call.duration"', '"rpc.client.call.duration"', '"service.name": "svc-x"',
                 '"rpc.method": "Greeter.Hello"'):  # fmt: skip
        assert text in out.stdout, (text, out.stdout[-2000:])
