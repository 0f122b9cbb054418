"""Service lifecycle: ready means listening and registered; re-register; deregister; graceful stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import trio

import trimicro
from tests.conftest import Greeter
from tests.protos.greeter_pb2 import HelloRequest, HelloResponse, SlowRequest, SlowResponse


async def test_start_means_listening_and_registered(registry, greeter):
    service = trimicro.Service(
        "greeter", registry=registry, handlers=[greeter], argv=[], handle_signals=False
    )
    async with trio.open_nursery() as nursery:
        started = await nursery.start(service.run)
        assert started is service
        [record] = await registry.get_service("greeter")
        [node] = record.nodes
        assert node.id == service.id and node.id.startswith("greeter-")
        assert node.address == service.address
        assert node.metadata["protocol"] == "mucp"
        assert {"transport", "broker", "server", "registry"} <= set(node.metadata)
        names = [e.name for e in record.endpoints]
        assert "Greeter.Hello" in names and not any(n.startswith("Debug.") for n in names)
        host, port = service.address.rsplit(":", 1)
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.aclose()
        service.stop()
    assert await registry.get_service("greeter") == []


async def test_reregisters_before_ttl_expires(registry, greeter, autojump_clock):
    async with trimicro.open_service(
        "greeter", registry=registry, handlers=[greeter], register_ttl=3, register_interval=1
    ):
        await trio.sleep(10)  # well past the TTL: only re-registration keeps the record
        [record] = await registry.get_service("greeter")
        assert len(record.nodes) == 1


async def test_options_from_env_and_flags(registry, monkeypatch):
    monkeypatch.setenv("MICRO_SERVER_VERSION", "2.0.0")
    monkeypatch.setenv("MICRO_SERVER_METADATA", "zone=a,tier=gold")
    monkeypatch.setenv("MICRO_CLIENT_REQUEST_TIMEOUT", "1500ms")
    service = trimicro.Service(
        registry=registry, argv=["--server_name", "from-flag", "--client_retries", "4"]
    )
    assert service.name == "from-flag"
    assert service.options.server_version == "2.0.0"
    assert service.options.server_metadata == {"zone": "a", "tier": "gold"}
    assert service.options.client_request_timeout == 1.5
    assert service.options.client_retries == 4
    assert trimicro.Service("x", argv=[], client_retries=7).options.client_retries == 7


async def test_unknown_plugin_is_a_clear_error(registry):
    service = trimicro.Service("greeter", registry="nope", argv=[], handle_signals=False)
    with pytest.raises(ValueError, match="unknown registry 'nope'"):
        await service.run()


async def test_graceful_stop_drains_in_flight_calls(registry, greeter):
    async with trimicro.open_client(registry=registry) as client:
        service = trimicro.Service(
            "greeter", registry=registry, handlers=[greeter], argv=[], handle_signals=False
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            result = {}

            async def in_flight():
                result["rsp"] = await client.call(
                    "greeter", "Greeter.Gate", HelloRequest(name="drain"), response_type=HelloResponse
                )

            nursery.start_soon(in_flight)
            await greeter.started.wait()
            service.stop()
            # Deregistration comes first, while the call is still running.
            with trio.fail_after(5):
                while await registry.get_service("greeter"):
                    await trio.sleep(0.01)
            greeter.release.set()
        assert result["rsp"].greeting == "Hello drain"


async def test_sigterm_stops_gracefully(tmp_path):
    """A real process: SIGTERM deregisters and exits 0."""
    script = tmp_path / "svc.py"
    script.write_text(
        textwrap.dedent(
            """
            import trio, trimicro
            class Greeter:
                async def Hello(self, req: dict, ctx) -> dict:
                    return {"greeting": "hi"}
            async def main():
                s = trimicro.Service("sig", registry="memory", handlers=[Greeter()], argv=[])
                async with trio.open_nursery() as n:
                    await n.start(s.run)
                    print("ready", flush=True)
                print("stopped", flush=True)
            trio.run(main)
            """
        )
    )
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        assert "stopped" in out
        assert proc.returncode == 0
    finally:
        proc.kill()


async def test_graceful_stop_new_calls_go_elsewhere(registry, nursery):
    """While node A drains an in-flight call, new calls already go to node B."""
    a_handler, b_handler = Greeter("a"), Greeter("b")
    a = trimicro.Service("greeter", registry=registry, handlers=[a_handler], argv=[], handle_signals=False)
    b = trimicro.Service("greeter", registry=registry, handlers=[b_handler], argv=[], handle_signals=False)
    async with trio.open_nursery() as a_nursery:
        await a_nursery.start(a.run)
        await nursery.start(b.run)
        async with trimicro.open_client(registry=registry, selector="roundrobin") as client:
            rsp = {}

            async def pinned_in_flight():
                rsp["a"] = await client.call(
                    "greeter", "Greeter.Gate", HelloRequest(name="slow"), response_type=HelloResponse,
                    address=a.address,
                )  # fmt: skip

            a_nursery.start_soon(pinned_in_flight)
            await a_handler.started.wait()
            a.stop()
            with trio.fail_after(5):
                while len((await registry.get_service("greeter"))[0].nodes) != 1:
                    await trio.sleep(0.01)
            await trio.sleep(0.01)  # the client's selector applies the delete event
            tags = [
                (
                    await client.call(
                        "greeter", "Greeter.Hello", HelloRequest(name="n"), response_type=HelloResponse
                    )
                ).greeting
                for _ in range(10)
            ]
            assert all(t.endswith("from b") for t in tags)
            a_handler.release.set()
    assert rsp["a"].greeting == "Hello slow"


async def test_drain_keeps_a_watched_long_call(registry, nursery):
    """A call running long enough to get a read-ahead watcher still finishes and replies during drain."""
    handler = Greeter()
    svc = trimicro.Service("greeter", registry=registry, handlers=[handler], argv=[], handle_signals=False)
    async with trio.open_nursery() as svc_nursery:
        await svc_nursery.start(svc.run)
        async with trimicro.open_client(registry=registry, client_retries=0) as client:
            # Warm the pool so the slow call reuses a kept-alive connection, as under load.
            await client.call("greeter", "Greeter.Hello", HelloRequest(), response_type=HelloResponse)
            result = {}

            async def slow():
                result["rsp"] = await client.call(
                    "greeter", "Greeter.Slow", SlowRequest(sleep_ms=300), response_type=SlowResponse
                )

            svc_nursery.start_soon(slow)
            await handler.started.wait()
            await trio.sleep(0.15)  # past the server's 50 ms watcher threshold
            svc.stop()
    assert result["rsp"].slept_ms == 300
