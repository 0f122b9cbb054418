"""A non-gRPC request is answered (HTTP 415) before its body is read; the body is still read for a
moment, so a body that contradicts its content-length is reset with PROTOCOL_ERROR by the HTTP/2
engine (h2spec http2/8.1.2.6) instead of a NO_ERROR reset racing the client's DATA."""

from __future__ import annotations

import struct

import h2.events
import pytest
import trio

from tests.interop import serve_grpc
from tests.transport.test_h2_faults import RawClient

pytestmark = pytest.mark.loopback


async def test_body_after_the_415_is_still_checked() -> None:
    async with serve_grpc() as (address, server, _):
        # (a hand-written frame desynchronises h2's client state, so no further calls on it)
        client = await RawClient.connect(address)
        sid = client.h2.get_next_available_stream_id()
        client.h2.send_headers(
            sid,
            [(":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", "x"),
             ("content-length", "1")],
        )  # fmt: skip
        await client.flush()
        with trio.fail_after(5):
            rsp = await client.until(sid, h2.events.ResponseReceived)
            assert dict(rsp.headers)[b":status"] == b"415"
            await trio.sleep(0.05)  # the old code had reset the stream (NO_ERROR) by now
            # hand-made DATA: h2's state machine would refuse it and ignore the reset it causes
            await client.sock.send_all(struct.pack(">HBBBL", 0, 4, 0, 1, sid) + b"test")
            received = b""
            while struct.pack(">HBBBLL", 0, 4, 3, 0, sid, 1) not in received:
                received += await client.sock.receive_some(65536)  # RST_STREAM(PROTOCOL_ERROR)
        await client.sock.aclose()
        with trio.fail_after(5):
            await server.wait_idle()
