"""A request that is not a gRPC call (a GET, or a POST without an ``application/grpc*``
content-type) is heard out before it is answered, for at most a moment (``_DISCARD_GRACE``), as an
HTTP server would. Frames the client sends on it meet an open stream, so the HTTP/2 engine judges
them (h2spec http2/5.1/8, 6.9/2, 8.1.2.6) instead of our reply and its NO_ERROR reset racing them."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import h2.events
import pytest
import trio

from tests.interop import serve_grpc
from tests.transport.test_h2_faults import RawClient
from trimicro.server import _grpc as grpc_server

pytestmark = pytest.mark.loopback

_BASE = [(":scheme", "http"), (":path", "/"), (":authority", "x")]


def _rst(sid: int, code: int) -> bytes:
    return struct.pack(">HBBBLL", 0, 4, 3, 0, sid, code)


def _frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, stream id, payload) of each whole frame in ``data``."""
    out, at = [], 0
    while at + 9 <= len(data):
        length = int.from_bytes(data[at : at + 3], "big")
        kind, sid = data[at + 3], int.from_bytes(data[at + 5 : at + 9], "big") & 0x7FFFFFFF
        if at + 9 + length > len(data):
            break
        out.append((kind, sid, data[at + 9 : at + 9 + length]))
        at += 9 + length
    return out


async def _receive_until(client: RawClient, done: Callable[[list[tuple[int, int, bytes]]], bool]) -> bytes:
    received = b""
    while not done(_frames(received)):
        data = await client.sock.receive_some(65536)
        assert data, f"connection closed early; got {_frames(received)!r}"
        received += data
    return received


def _reset_with(sid: int, code: int) -> Callable[[list[tuple[int, int, bytes]]], bool]:
    return lambda frames: (3, sid, code.to_bytes(4, "big")) in frames


async def _open(address: str, method: str, *extra: tuple[str, str]) -> tuple[RawClient, int]:
    """A raw connection with one request stream opened (HEADERS without END_STREAM)."""
    client = await RawClient.connect(address)
    sid = client.h2.get_next_available_stream_id()
    client.h2.send_headers(sid, [(":method", method), *_BASE, *extra])
    await client.flush()
    return client, sid


async def _close(client: RawClient, server: Any) -> None:
    """Hang up; the server must let go of the connection."""
    await client.sock.aclose()
    with trio.fail_after(5):
        await server.wait_idle()


async def test_415_comes_once_the_request_is_in() -> None:
    async with serve_grpc() as (address, server, _):
        client, sid = await _open(address, "POST", ("content-type", "text/plain"))
        client.h2.send_data(sid, b"hello", end_stream=True)
        await client.flush()
        with trio.fail_after(5):
            rsp = await client.until(sid, h2.events.ResponseReceived)
        assert dict(rsp.headers)[b":status"] == b"415"
        await _close(client, server)


async def test_body_contradicting_content_length_is_reset_not_answered() -> None:
    async with serve_grpc() as (address, server, _):
        # (a hand-written frame desynchronises h2's client state, so no further calls on it)
        client, sid = await _open(address, "POST", ("content-length", "1"))
        # hand-made DATA of 4 bytes: h2's state machine would refuse it
        await client.sock.send_all(struct.pack(">HBBBL", 0, 4, 0, 1, sid) + b"test")
        with trio.fail_after(5):
            received = await _receive_until(client, _reset_with(sid, 1))  # PROTOCOL_ERROR
        assert [f for f in _frames(received) if f[0] == 1] == []  # no reply HEADERS
        await _close(client, server)


async def test_data_after_the_clients_reset_is_stream_closed() -> None:
    # h2spec http2/5.1/8: HEADERS without END_STREAM, RST_STREAM, then DATA on the closed stream.
    async with serve_grpc() as (address, server, _):
        client, sid = await _open(address, "GET")
        await client.sock.send_all(_rst(sid, 8) + struct.pack(">HBBBL", 0, 4, 0, 0, sid) + b"test")
        with trio.fail_after(5):
            # a RST_STREAM or a GOAWAY naming STREAM_CLOSED, and no reply to the GET
            received = await _receive_until(
                client, lambda fs: _reset_with(sid, 5)(fs) or any(k == 7 and p[4:8] == b"\0\0\0\5" for k, _, p in fs)
            )
        assert [f for f in _frames(received) if f[0] == 1] == []
        await _close(client, server)


async def test_get_left_open_is_answered_after_the_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grpc_server, "_DISCARD_GRACE", 0.05)
    async with serve_grpc() as (address, server, _):
        client, sid = await _open(address, "GET")
        with trio.fail_after(5):
            rsp = await client.until(sid, h2.events.ResponseReceived)
            body = await client.until(sid, h2.events.DataReceived)
        assert dict(rsp.headers)[b":status"] == b"405" and dict(rsp.headers)[b"allow"] == b"POST"
        assert body.data == b"grpc: method GET not allowed; use POST\n"
        with trio.fail_after(5):
            await client.until(sid, h2.events.StreamEnded)
        await _close(client, server)


async def test_connection_lost_while_hearing_out_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    async with serve_grpc() as (address, server, _):
        client, _sid = await _open(address, "GET")
        await _close(client, server)
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
