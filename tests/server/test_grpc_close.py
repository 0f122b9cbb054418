"""Closing a connection does not reset it under the peer's feet: the server half-closes and reads
what the peer still sends (bounded) before closing, so unread input cannot make the kernel answer
with a TCP reset that destroys our last frames before the peer reads them (h2spec http2/7/1: a
GOAWAY with an unknown error code, then a PING, met "connection reset by peer")."""

from __future__ import annotations

import struct

import pytest
import trio

from tests.interop import serve_grpc
from trimicro.transport import _http2 as h2p

pytestmark = pytest.mark.loopback


def _frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return struct.pack(">HBBBL", len(payload) >> 8, len(payload) & 0xFF, ftype, flags, sid) + payload


async def test_peer_goaway_with_error_then_ping_sees_a_clean_close() -> None:
    async with serve_grpc() as (address, server, _):
        host, _, port = address.rpartition(":")
        sock = await trio.open_tcp_stream(host, int(port))
        await sock.send_all(h2p.PREFACE + _frame(4, 0, 0))  # preface, empty SETTINGS
        # GOAWAY with an unknown error code, then frames still in flight when the server acts on
        # it (an unknown frame type, ignored, large enough not to fit in the server's first read)
        await sock.send_all(
            _frame(7, 0, 0, struct.pack(">LL", 0, 0xFF)) + _frame(0xBB, 0, 0, bytes(1 << 19))
        )
        await trio.sleep(0.2)  # before the fix, the kernel's reset has arrived by now
        received = b""
        with trio.fail_after(5):
            while chunk := await sock.receive_some(65536):  # ConnectionResetError before the fix
                received += chunk
        assert received  # its SETTINGS (and maybe more) arrived intact, then a clean end
        await sock.aclose()
        with trio.fail_after(5):
            await server.wait_idle()
