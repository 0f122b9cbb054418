"""Attacks on the HTTP/1.1 mucp listener, performed on loopback, each bounded in time and count.

Each test is one defence of docs/security.md: request smuggling framings are refused and the
connection closed; malformed ``Timeout`` headers get a 400, not a dead connection; a silent or
half-preface connection, and a trickled body, are closed by their timeouts; a flood of idle
connections beyond ``server_max_connections`` is refused at accept, logged once, and the listener
keeps serving.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

import trimicro
from tests.conftest import Greeter
from tests.server.test_conformance import _read_response, _request
from tests.transport.test_http import REQ, raw, read_until_eof, rsp, serving
from trimicro.config import Options, load_options
from trimicro.transport.http import HttpTransport, default_max_connections

JSON_HELLO = {"Content-Type": "application/json", "Micro-Endpoint": "Greeter.Hello"}


@pytest.fixture
async def service(registry: Any, nursery: trio.Nursery) -> AsyncIterator[trimicro.Service]:
    svc = trimicro.Service(
        "greeter",
        registry=registry,
        handlers=[Greeter()],
        argv=[],
        handle_signals=False,
        server_header_timeout=0.5,
        server_body_timeout=0.5,
    )
    await nursery.start(svc.run)
    yield svc
    svc.stop()


async def _open(service: trimicro.Service) -> trio.SocketStream:
    host, port = service.address.rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


async def _all_until_eof(stream: trio.SocketStream) -> bytes:
    with trio.fail_after(5):
        return await read_until_eof(stream)


async def _still_serving(service: trimicro.Service) -> None:
    stream = await _open(service)
    await stream.send_all(_request(JSON_HELLO, b'{"name":"ok"}'))
    _, _, body = await _read_response(stream, bytearray())
    assert json.loads(body) == {"greeting": "Hello ok"}
    await stream.aclose()


SMUGGLED = _request(JSON_HELLO, b'{"name":"smuggled"}')


@pytest.mark.parametrize(
    "head",
    [
        # CL.TE: a proxy framing by Content-Length forwards the tail as part of this body.
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nMicro-Endpoint: Greeter.Hello\r\n"
        b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n",
        # TE.CL, the header order swapped
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n"
        b"Micro-Endpoint: Greeter.Hello\r\nContent-Length: %d\r\n\r\n",
        # chunked on HTTP/1.0, which has no chunked coding
        b"POST / HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\nMicro-Endpoint: Greeter.Hello\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
        # two different Content-Length values
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: %d\r\n\r\n",
    ],
)
async def test_ambiguous_framing_is_400_and_close_and_the_tail_is_never_served(
    service: trimicro.Service, head: bytes
) -> None:
    chunked = b"0\r\n\r\n"
    first = head % (len(chunked) + len(SMUGGLED)) if b"%d" in head else head
    stream = await _open(service)
    await stream.send_all(first + chunked + SMUGGLED)
    data = await _all_until_eof(stream)
    assert data.count(b"HTTP/1.1 200 OK") == 1, data  # one error reply, then closed
    assert b'"code":400' in data.replace(b" ", b"") and b"smuggled" not in data
    await stream.aclose()
    await _still_serving(service)


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "9" * 400, "garbage", "1e400s"])
async def test_malformed_timeout_header_is_a_clear_400_and_the_connection_stays_usable(
    service: trimicro.Service, value: str
) -> None:
    stream = await _open(service)
    buf = bytearray()
    await stream.send_all(_request({**JSON_HELLO, "Timeout": value}, b'{"name":"x"}'))
    _, headers, _ = await _read_response(stream, buf)
    err = json.loads(headers["micro-error"])
    assert err["code"] == 400 and err["id"] == "go.micro.server"
    assert "Timeout" in err["detail"]
    # the same connection still serves
    await stream.send_all(_request(JSON_HELLO, b'{"name":"ok"}'))
    _, _, body = await _read_response(stream, buf)
    assert json.loads(body) == {"greeting": "Hello ok"}
    await stream.aclose()


async def test_trickled_body_is_408_within_the_body_timeout(service: trimicro.Service) -> None:
    start = trio.current_time()
    stream2 = await _open(service)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += b"Micro-Endpoint: Greeter.Hello\r\nContent-Length: 1000\r\n\r\n"
    await stream2.send_all(head)
    got = bytearray()

    async def trickle() -> None:
        for _ in range(50):  # one byte per 0.05 s: every read is well within server_idle_timeout
            await stream2.send_all(b" ")
            await trio.sleep(0.05)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trickle)
            try:
                while chunk := await stream2.receive_some():
                    got += chunk
            except trio.BrokenResourceError:
                pass
            nursery.cancel_scope.cancel()
    assert b'"code":408' in bytes(got).replace(b" ", b"")
    assert trio.current_time() - start < 2.0  # body_timeout 0.5 s (+ linger), not 50 * 0.05 s
    await stream2.aclose()
    await _still_serving(service)


async def _no_h2(stream: trio.abc.Stream, initial: bytes) -> None:
    raise AssertionError("a partial preface must never reach the h2 handler")


@pytest.mark.parametrize("sent", [b"", b"PRI * HTTP/2.0\r\n", b"POST / HT"])
async def test_silent_or_partial_first_bytes_are_closed_after_header_timeout(sent: bytes) -> None:
    transport = HttpTransport(header_timeout=0.3, idle_timeout=300.0)
    async with serving(transport=transport, h2_handler=_no_h2) as listener:
        stream = await raw(listener)
        start = trio.current_time()
        await stream.send_all(sent)
        with trio.fail_after(5):
            data = await read_until_eof(stream)
        assert 0.25 <= trio.current_time() - start < 3.0  # header_timeout, not idle_timeout (300 s)
        assert data in (b"", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nMicro-Error: 408\r\n\r\n")
        await stream.aclose()


async def test_connection_flood_beyond_max_connections_is_refused_logged_once_and_served_after(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = HttpTransport(max_connections=5)
    caplog.set_level(logging.WARNING, logger="trimicro.transport.http")
    async with serving(transport=transport) as listener:
        held = []
        for i in range(5):
            s = await raw(listener)
            await s.send_all(REQ % (0, b"%d" % i, b""))
            assert await s.receive_some() == rsp(b"%d" % i, b"")
            held.append(s)
        refused = []
        for _ in range(30):  # bounded flood
            s = await raw(listener)
            with trio.fail_after(5):
                assert await read_until_eof(s) == b""  # accepted and closed at once
            refused.append(s)
        assert listener.refused == 30 and listener.open_connections == 5
        lines = [r for r in caplog.records if "server_max_connections" in r.getMessage()]
        assert len(lines) == 1  # rate-limited: one line per 10 s, counting what was refused
        for s in refused:
            await s.aclose()
        await held.pop().aclose()
        with trio.fail_after(5):
            while listener.open_connections >= 5:
                await trio.sleep(0.01)
        s = await raw(listener)
        await s.send_all(REQ % (2, b"n", b"ok"))
        assert await s.receive_some() == rsp(b"n", b"ok")
        await s.aclose()
        for s in held:
            await s.aclose()


def test_default_max_connections_leaves_descriptors_in_reserve() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    n = default_max_connections()
    assert 16 <= n <= 10_000
    if soft != resource.RLIM_INFINITY:
        assert n <= soft - 100 or n == 16


@pytest.mark.parametrize(("option", "value"), [("server_body_timeout", 0), ("server_max_connections", -1)])
def test_new_options_are_validated_naming_the_option(option: str, value: int) -> None:
    with pytest.raises(ValueError, match=option):
        load_options({option: value}, env={})


def test_options_reach_the_transport() -> None:
    from trimicro.transport.http import from_options

    t = from_options(Options(server_body_timeout=7.0, server_max_connections=42))
    assert (t.body_timeout, t.max_connections) == (7.0, 42)
