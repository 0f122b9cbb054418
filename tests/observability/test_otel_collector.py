"""A real OpenTelemetry Collector receives trimicro's traces and metrics over OTLP/HTTP.

otelcol-trimicro (tests/observability/otelcol: the collector's OTLP receiver and debug exporter,
built from the Go module proxy by build.sh) listens on loopback. A service configured only by the
standard environment (``MICRO_TRACING``, ``MICRO_OTEL_METRICS``, ``OTEL_*_EXPORTER=otlp``) makes a
call chain in a child process and exits; the SDK flushes at exit. The collector prints what arrived:
one trace id on the client and the server span (and the metrics' exemplars), the RPC semconv
metrics, the service name.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop._go import find_go
from trimicro.testing import free_port

pytestmark = pytest.mark.loopback

HERE = Path(__file__).resolve().parent / "otelcol"
_CONFIG = """
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
exporters:
  debug:
    verbosity: detailed
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
    metrics:
      receivers: [otlp]
      exporters: [debug]
"""

_SERVICE = textwrap.dedent(
    """
    import trio, trimicro
    from tests.conftest import Greeter
    from tests.protos.greeter_pb2 import HelloRequest, HelloResponse

    async def main():
        reg = trimicro.registry.MemoryRegistry()
        async with trimicro.open_service("collected", registry=reg, handlers=[Greeter()]) as svc:
            await svc.client.call("collected", "Greeter.Hello", HelloRequest(name="x"),
                                  response_type=HelloResponse)

    trio.run(main)
    """
)


@pytest.fixture(scope="module")
def collector_bin() -> Path:
    go = find_go()
    if go is None:
        pytest.skip("Go toolchain not found (needed to build the OpenTelemetry Collector)")
    result = subprocess.run(
        ["bash", str(HERE / "build.sh")], env=dict(os.environ, GO=go), capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return Path(result.stdout.strip().splitlines()[-1]) / "otelcol-trimicro"


@pytest.fixture
def collector(collector_bin: Path, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """(port, output file) of a running collector; stopped (SIGTERM, then kill) afterwards."""
    port = free_port()
    config = tmp_path / "otelcol.yaml"
    config.write_text(_CONFIG.format(port=port))
    out = tmp_path / "collector.log"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [str(collector_bin), "--config", f"file:{config}"], stdout=sink, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 30
            while "Everything is ready" not in out.read_text(errors="replace"):
                assert proc.poll() is None, out.read_text(errors="replace")[-3000:]
                assert time.monotonic() < deadline, "collector did not start in 30 s"
                time.sleep(0.05)  # polling an external process's readiness
            yield port, out
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_traces_and_metrics_reach_a_real_collector(collector: tuple[int, Path]) -> None:
    port, out = collector
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MICRO_", "OTEL_"))}
    env |= {
        "MICRO_TRACING": "true",
        "MICRO_OTEL_METRICS": "true",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_SERVICE_NAME": "collected-svc",
    }
    done = subprocess.run(
        [sys.executable, "-c", _SERVICE], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    want = ("Kind           : Server", "Kind           : Client", "rpc.server.call.duration",
            "rpc.client.call.duration", "service.name: Str(collected-svc)")  # fmt: skip
    deadline = time.monotonic() + 20
    text = ""
    while time.monotonic() < deadline:
        text = out.read_text(errors="replace")
        if all(w in text for w in want):
            break
        time.sleep(0.1)  # polling the collector's output file
    for w in want:
        assert w in text, (w, text[-3000:])
    assert text.count("Name           : collected/Greeter.Hello") == 2  # a client and a server span
    ids = set(re.findall(r"Trace ID\s*:\s*([0-9a-f]{32})", text))
    assert len(ids) == 1 and "0" * 32 not in ids, ids  # one trace: the server span continues the client's
