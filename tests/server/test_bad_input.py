"""Bad input gets a clear error or a closed connection, and the server keeps serving."""

from __future__ import annotations

import json

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trimicro
from tests.conftest import Greeter
from tests.server.test_conformance import _read_response, _request


@pytest.fixture
async def service(registry, nursery):
    svc = trimicro.Service(
        "greeter",
        registry=registry,
        handlers=[Greeter()],
        argv=[],
        handle_signals=False,
        server_max_body_size=1024,
        server_header_timeout=0.5,
    )
    await nursery.start(svc.run)
    yield svc
    svc.stop()


async def _open(service):
    host, port = service.address.rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


async def _still_serving(service):
    stream = await _open(service)
    await stream.send_all(
        _request({"Content-Type": "application/json", "Micro-Endpoint": "Greeter.Hello"}, b'{"name":"ok"}')
    )
    _, _, body = await _read_response(stream, bytearray())
    assert json.loads(body) == {"greeting": "Hello ok"}
    await stream.aclose()


async def _error_then_closed(stream) -> dict:
    buf = bytearray()
    _, headers, _ = await _read_response(stream, buf)
    with trio.fail_after(5):
        while await stream.receive_some():
            pass
    return json.loads(headers["micro-error"])


async def test_malformed_http(service):
    stream = await _open(service)
    await stream.send_all(b"this is not http\r\n\r\n")
    err = await _error_then_closed(stream)
    assert err["code"] == 400 and err["id"] == "go.micro.server"
    await _still_serving(service)


async def test_undecodable_body(service):
    stream = await _open(service)
    await stream.send_all(
        _request({"Content-Type": "application/json", "Micro-Endpoint": "Greeter.Hello"}, b"{not json")
    )
    _, headers, _ = await _read_response(stream, bytearray())
    err = json.loads(headers["micro-error"])
    assert err["code"] == 400
    await stream.send_all(_request({"Micro-Endpoint": "Greeter.Hello"}, b"\xff\xff\xff"))  # bad protobuf
    _, headers, _ = await _read_response(stream, bytearray())
    assert json.loads(headers["micro-error"])["code"] == 400
    await stream.aclose()
    await _still_serving(service)


async def test_wrong_content_type_keeps_connection(service):
    stream = await _open(service)
    await stream.send_all(
        _request({"Content-Type": "text/x-nonsense", "Micro-Endpoint": "Greeter.Hello"}, b"hi")
    )
    _, headers, _ = await _read_response(stream, bytearray())
    err = json.loads(headers["micro-error"])
    assert err["code"] == 400 and "text/x-nonsense" in err["detail"]
    await stream.send_all(
        _request({"Content-Type": "application/json", "Micro-Endpoint": "Greeter.Hello"}, b"{}")
    )
    _, _, body = await _read_response(stream, bytearray())
    assert json.loads(body) == {"greeting": "Hello "}
    await stream.aclose()


async def test_oversized_body(service):
    stream = await _open(service)
    await stream.send_all(
        _request({"Content-Type": "application/json", "Micro-Endpoint": "Greeter.Hello"}, b"x" * 5000)
    )
    err = await _error_then_closed(stream)
    assert err["code"] == 413
    await _still_serving(service)


async def test_connection_dropped_mid_body(service):
    stream = await _open(service)
    await stream.send_all(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nMicro-Endpoint: Greeter.Hello\r\n\r\n{"
    )
    await stream.aclose()
    await _still_serving(service)


async def test_slow_client_header_timeout(service):
    stream = await _open(service)
    await stream.send_all(b"POST / HTTP/1.1\r\nHost: x\r\n")  # and then nothing
    err = await _error_then_closed(stream)
    assert err["code"] == 408
    await _still_serving(service)


async def test_handler_exception_is_500_not_a_dead_server(service):
    stream = await _open(service)
    await stream.send_all(
        _request({"Content-Type": "application/json", "Micro-Endpoint": "Greeter.Crash"}, b"{}")
    )
    _, headers, _ = await _read_response(stream, bytearray())
    err = json.loads(headers["micro-error"])
    assert err["code"] == 500 and "ZeroDivisionError" in err["detail"]
    await stream.aclose()
    await _still_serving(service)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(garbage=st.binary(min_size=1, max_size=300))
async def test_fuzz_random_bytes_never_kill_the_server(garbage):
    async with trimicro.open_service(
        "fuzz", registry=trimicro.registry.MemoryRegistry(), handlers=[Greeter()], server_header_timeout=0.2
    ) as svc:
        stream = await _open(svc)
        try:
            await stream.send_all(garbage)
            with trio.move_on_after(1):
                while await stream.receive_some():
                    pass
        except trio.BrokenResourceError:
            pass
        await stream.aclose()
        await _still_serving(svc)


async def test_a_misspelt_json_field_is_a_400_naming_it(service):
    """``{"nam": "x"}`` must not run the handler with an empty name (the conftest Greeter takes a
    HelloRequest); the connection keeps serving."""
    stream = await _open(service)
    await stream.send_all(
        _request({"Content-Type": "application/json", "Micro-Endpoint": "Greeter.Hello"}, b'{"nam":"x"}')
    )
    _, headers, _ = await _read_response(stream, bytearray())
    err = json.loads(headers["micro-error"])
    assert err["code"] == 400 and "nam" in err["detail"]
    await stream.aclose()
    await _still_serving(service)
