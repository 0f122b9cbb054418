"""Tracing, metrics and health probes on two services: front calls greeter.

    pip install 'trimicro[otel,metrics]'
    python examples/observability/observability.py            # calls, prints spans and metrics, exits
    python examples/observability/observability.py --linger 60 &  # ... then keeps serving for curl

Both services run in this process (one nursery each), found through an in-memory registry. Spans go
to OpenTelemetry's console exporter, one line each; ``/metrics`` and ``/health/*`` are served on
127.0.0.1 (``metrics_address=":9090"``-style, an OS-chosen port here so the example never collides).
"""

import argparse
import json
import sys

import trio
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

import trimicro


def one_line(span) -> str:  # type: ignore[no-untyped-def]
    parent = format(span.parent.span_id, "016x") if span.parent else "-"
    ctx = span.context
    return (
        f"span {span.name:<28} kind={span.kind.name:<6} trace={ctx.trace_id:032x} "
        f"span={ctx.span_id:016x} parent={parent} status={span.status.status_code.name}\n"
    )


class Greeter:
    async def Hello(self, req: dict, ctx: trimicro.Context) -> dict:
        if not req.get("name"):
            raise trimicro.errors.bad_request("greeter", "name is required")
        return {"greeting": f"Hello {req['name']}"}


class Front:
    def __init__(self) -> None:
        self.service: trimicro.Service | None = None

    async def Welcome(self, req: dict, ctx: trimicro.Context) -> dict:
        assert self.service is not None
        rsp = await self.service.client.call(
            "greeter", "Greeter.Hello", req, content_type="application/json"
        )
        return {"message": rsp["greeting"] + ", welcome!"}


async def get(address: str, path: str) -> tuple[int, str]:
    host, _, port = address.rpartition(":")
    async with await trio.open_tcp_stream(host, int(port)) as stream:
        await stream.send_all(f"GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n".encode())
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def main(linger: float, metrics_address: str) -> None:
    # The application owns the tracer provider (OpenTelemetry's usual setup); trimicro uses the global one.
    provider = TracerProvider(resource=Resource.create({"service.name": "observability-example"}))
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(formatter=one_line)))
    trace.set_tracer_provider(provider)

    registry = trimicro.registry.MemoryRegistry()
    front = Front()
    options = {"registry": registry, "tracing": True, "metrics_address": "127.0.0.1:0", "argv": []}
    greeter_svc = trimicro.Service("greeter", handlers=[Greeter()], **{**options, "metrics_address": metrics_address})
    front_svc = trimicro.Service("front", handlers=[front], **options)
    front.service = front_svc
    async with trimicro.open_service(service=greeter_svc), trimicro.open_service(service=front_svc):
        metrics = greeter_svc.observability.listener.bound
        print(f"greeter: calls on {greeter_svc.address}, /metrics and /health on http://{metrics}")
        for name in ("Ann", "Bob", ""):
            try:
                rsp = await front_svc.client.call(
                    "front", "Front.Welcome", {"name": name}, content_type="application/json"
                )
                print("reply:", rsp["message"])
            except trimicro.MicroError as err:
                print("error:", err.code, err.detail)

        status, body = await get(metrics, "/health/ready")
        print("GET /health/ready ->", status, json.loads(body)["status"])
        status, body = await get(metrics, "/metrics")
        print("GET /metrics ->", status)
        for line in body.splitlines():
            if line.startswith(("micro_request_total", "micro_request_errors_total")):
                print("  " + line)
        if linger:
            print(f"serving for {linger:.0f} s: curl http://{metrics}/metrics", flush=True)
            await trio.sleep(linger)
    provider.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--linger", type=float, default=0.0, help="keep serving this many seconds")
    parser.add_argument("--metrics-address", default="127.0.0.1:0", help="greeter's /metrics and /health")
    args = parser.parse_args(sys.argv[1:])
    trio.run(main, args.linger, args.metrics_address)
