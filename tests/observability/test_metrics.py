"""Metrics: Go Micro's names and labels, errors by code, in-flight, /metrics scraped by a real Prometheus."""

from __future__ import annotations

from typing import Any

import pytest
import trio

pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")

from prometheus_client.parser import text_string_to_metric_families

import trimicro
from tests.conftest import Greeter
from tests.observability.conftest import http_get
from tests.protos.greeter_pb2 import Event, HelloRequest, HelloResponse
from trimicro.broker.memory import MemoryBroker
from trimicro.observability import instrument
from trimicro.observability._http import split_address
from trimicro.registry import MemoryRegistry
from trimicro.testing.prometheus import PrometheusNotFound, open_prometheus

pytestmark = pytest.mark.loopback


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def _calls(client: trimicro.Client, ok: int, bad: int) -> None:
    for _ in range(ok):
        await client.call("g", "Greeter.Hello", HelloRequest(name="x"), response_type=HelloResponse)
    for _ in range(bad):
        with pytest.raises(trimicro.MicroError):
            await client.call("g", "Greeter.Fail", HelloRequest(name="x"), response_type=HelloResponse)


def test_split_address_defaults_to_loopback() -> None:
    assert split_address(":9090") == ("127.0.0.1", 9090)
    assert split_address("0.0.0.0:9") == ("0.0.0.0", 9)
    assert split_address("[::1]:9") == ("::1", 9)
    with pytest.raises(ValueError):
        split_address("9090")


async def test_counts_latency_errors_in_flight() -> None:
    registry = MemoryRegistry()
    greeter = Greeter()
    svc = trimicro.Service("g", registry=registry, handlers=[greeter], broker=MemoryBroker(), argv=[])
    svc.subscribe("events", lambda msg, ctx: trio.lowlevel.checkpoint())
    obs = instrument(svc, metrics=True)
    assert obs.metrics is not None
    async with trimicro.open_service(service=svc):
        await _calls(svc.client, ok=3, bad=2)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(svc.client.call, "g", "Greeter.Gate", HelloRequest(name="x"))
            with trio.fail_after(5):
                await greeter.started.wait()
            during = samples(obs.metrics.exposition().decode())
            greeter.release.set()
        await svc.client.publish("events", Event(id="1"))
        stats = await svc.client.call("g", "Debug.Stats", {}, content_type="application/json")
        found = samples(obs.metrics.exposition().decode())
    hello = {"service": "g", "endpoint": "Greeter.Hello"}
    fail = {"service": "g", "endpoint": "Greeter.Fail"}
    assert value(found, "micro_request_total", status="success", **hello) == 3
    assert value(found, "micro_request_total", status="fail", **fail) == 2
    assert value(found, "micro_request_errors_total", code="400", **fail) == 2
    assert value(found, "micro_request_duration_seconds_count", status="success", **hello) == 3
    assert value(found, "micro_request_duration_seconds_bucket", status="success", le="+Inf", **hello) == 3
    assert value(found, "micro_client_request_total", status="success", **hello) == 3
    assert value(found, "micro_client_request_errors_total", code="400", **fail) == 2
    gate = {"service": "g", "endpoint": "Greeter.Gate"}
    assert value(during, "micro_requests_in_flight", **gate) == 1
    assert value(during, "micro_client_requests_in_flight", **gate) == 1
    assert value(found, "micro_requests_in_flight", **gate) == 0
    # Go Micro's subscriber/publisher convention: service="subscriber"/"publisher", endpoint=topic
    with trio.fail_after(5):
        while not value(samples(obs.metrics.exposition().decode()), "micro_request_total",
                        service="subscriber", endpoint="events", status="success"):  # fmt: skip
            await trio.sleep(0.01)
    assert (
        value(found, "micro_client_request_total", service="publisher", endpoint="events", status="success")
        == 1
    )
    assert stats["requests"] >= 6 and stats["errors"] == 2 and stats["in_flight"] >= 1
    # the selector's and client's own counters, read at scrape time
    assert ("micro_selector_ejections_total", frozenset()) in found
    assert value(found, "micro_client_retries_total") == stats["client"]["retries"]
    assert value(found, "micro_client_retries_throttled_total") == stats["client"]["retries_throttled"]
    assert 0 <= stats["p50_ms"] <= stats["p99_ms"]


async def test_metrics_endpoint_and_real_prometheus() -> None:
    registry = MemoryRegistry()
    svc = trimicro.Service("g", registry=registry, handlers=[Greeter()], metrics_address=":0", argv=[])
    async with trimicro.open_service(service=svc):
        assert svc.observability is not None and svc.observability.listener is not None
        address = svc.observability.listener.bound
        assert address.startswith("127.0.0.1:")
        await _calls(svc.client, ok=5, bad=1)
        status, body = await http_get(address, "/metrics")
        assert status == 200
        found = samples(body.decode())
        assert (
            value(found, "micro_request_total", service="g", endpoint="Greeter.Hello", status="success") == 5
        )
        assert (await http_get(address, "/nope"))[0] == 404
        try:
            async with open_prometheus([address], scrape_interval=0.2) as prom:
                with trio.fail_after(30):
                    while True:
                        result = await prom.query(
                            'micro_request_total{endpoint="Greeter.Hello",status="success"}'
                        )
                        if result:
                            break
                        await trio.sleep(0.1)
                assert result[0]["metric"]["service"] == "g"
                assert float(result[0]["value"][1]) == 5
                errors = await prom.query('sum(micro_request_errors_total{code="400"})')
                assert float(errors[0]["value"][1]) == 1
                [target] = await prom.targets()
                assert target["health"] == "up", target
        except PrometheusNotFound as exc:
            pytest.skip(str(exc))
