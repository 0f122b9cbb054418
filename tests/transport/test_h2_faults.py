"""Faults on the gRPC/HTTP/2 server, driven by a raw h2 client we fully control.

Each test checks three things: the misbehaving stream gets a clear gRPC status (or reset), another
stream on the same connection is unaffected, and afterwards no stream or connection is left open.
"""

from __future__ import annotations

import struct
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
import trio
import trio.testing

from tests.interop import serve_grpc
from tests.protos import greeter_pb2 as pb

pytestmark = pytest.mark.loopback


def frame(payload: bytes, flag: int = 0, length: int | None = None) -> bytes:
    return struct.pack(">BI", flag, len(payload) if length is None else length) + payload


class RawClient:
    """A minimal HTTP/2 client: we decide what to send, when to read and whether to acknowledge."""

    def __init__(self, sock: trio.SocketStream, *, window: int = 65535) -> None:
        self.sock = sock
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.h2.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
        )
        self.events: list[Any] = []

    @classmethod
    async def connect(cls, address: str, **kw: Any) -> RawClient:
        host, _, port = address.rpartition(":")
        client = cls(await trio.open_tcp_stream(host, int(port)), **kw)
        client.h2.initiate_connection()
        await client.flush()
        return client

    async def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            await self.sock.send_all(data)

    async def call(
        self, path: str, body: bytes, *, end: bool = True, extra: list[tuple[str, str]] | None = None
    ) -> int:
        sid = self.h2.get_next_available_stream_id()
        headers = [
            (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "x"),
            ("content-type", "application/grpc"), ("te", "trailers"), *(extra or []),
        ]  # fmt: skip
        self.h2.send_headers(sid, headers)
        if body or end:
            self.h2.send_data(sid, body, end_stream=end)
        await self.flush()
        return sid

    async def until(self, sid: int, kind: type, *, ack: bool = True) -> Any:
        """Read until an event of ``kind`` arrives on ``sid``; returns it."""
        while True:
            for ev in self.events:
                if isinstance(ev, kind) and getattr(ev, "stream_id", None) == sid:
                    self.events.remove(ev)
                    return ev
            data = await self.sock.receive_some(65536)
            if not data:
                raise EOFError
            for ev in self.h2.receive_data(data):
                if ack and isinstance(ev, h2.events.DataReceived):
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                self.events.append(ev)
            await self.flush()

    async def trailers(self, sid: int) -> dict[bytes, bytes]:
        ev = await self.until(sid, h2.events.TrailersReceived)
        return dict(ev.headers)

    async def status(self, sid: int) -> tuple[int, str]:
        """grpc-status of ``sid``, from trailers or a trailers-only response."""
        rsp = await self.until(sid, h2.events.ResponseReceived)
        headers = dict(rsp.headers)
        if b"grpc-status" not in headers:
            headers = await self.trailers(sid)
        return int(headers[b"grpc-status"]), headers.get(b"grpc-message", b"").decode()


async def hello_ok(client: RawClient) -> None:
    sid = await client.call("/greeter.Greeter/Hello", frame(pb.HelloRequest(name="ok").SerializeToString()))
    assert await client.status(sid) == (0, "")


async def test_malformed_frame_and_oversized_frame() -> None:
    async with serve_grpc(max_message_size=1024) as (address, server, _):
        client = await RawClient.connect(address)
        bad_flag = await client.call("/greeter.Greeter/Hello", frame(b"abc", flag=7))
        status, message = await client.status(bad_flag)
        assert status == 13 and "invalid compressed flag" in message
        too_big = await client.call("/greeter.Greeter/Hello", frame(b"", length=2000), end=False)
        status, message = await client.status(too_big)
        assert status == 8 and "exceeds the limit" in message
        truncated = await client.call("/greeter.Greeter/Hello", frame(b"ab", length=10))
        status, message = await client.status(truncated)
        assert status == 13 and "ended inside a message" in message
        await hello_ok(client)  # the connection keeps serving
        await client.sock.aclose()
        with trio.fail_after(5):
            await server.wait_idle()


async def test_unknown_method_and_not_grpc() -> None:
    async with serve_grpc() as (address, server, _):
        client = await RawClient.connect(address)
        sid = await client.call("/greeter.Greeter/Nope", frame(b""))
        status, message = await client.status(sid)
        assert status == 12 and "unknown method" in message
        sid = await client.call("no-slash", frame(b""))
        assert (await client.status(sid))[0] == 12
        await hello_ok(client)
        await client.sock.aclose()
        with trio.fail_after(5):
            await server.wait_idle()


async def test_client_reset_cancels_handler_only_for_that_stream() -> None:
    async with serve_grpc() as (address, server, greeter):
        client = await RawClient.connect(address)
        sid = await client.call(
            "/greeter.Greeter/Stream", frame(pb.StreamRequest(count=-1).SerializeToString())
        )
        await client.until(sid, h2.events.DataReceived)  # the handler is running
        client.h2.reset_stream(sid, 8)
        await client.flush()
        await hello_ok(client)  # same connection, still serving
        with trio.fail_after(5):
            while greeter.cancelled == 0:
                await trio.testing.wait_all_tasks_blocked(0.01)
        assert greeter.cancelled == 1 and server.open_connections == 1
        await client.sock.aclose()
        with trio.fail_after(5):
            await server.wait_idle()


async def test_peer_disappears_mid_stream() -> None:
    async with serve_grpc() as (address, server, greeter):
        client = await RawClient.connect(address)
        sids = []
        for _ in range(3):
            sid = await client.call(
                "/greeter.Greeter/Stream", frame(pb.StreamRequest(count=-1).SerializeToString())
            )
            await client.until(sid, h2.events.DataReceived)
            sids.append(sid)
        assert server.open_streams == 3 and server.open_connections == 1
        await client.sock.aclose()
        with trio.fail_after(5):
            await server.wait_idle()
        assert greeter.cancelled == 3


async def test_client_that_never_reads_is_bounded_by_flow_control() -> None:
    async with serve_grpc() as (address, server, greeter):
        client = await RawClient.connect(address, window=65535)
        # 100k messages of ~1 KiB would be ~100 MB if the server buffered them.
        sid = await client.call(
            "/greeter.Greeter/Stream", frame(pb.StreamRequest(count=100_000).SerializeToString())
        )
        other = await RawClient.connect(address)
        await hello_ok(other)  # other connections are unaffected
        # Let the server run until it can make no more progress, without reading anything.
        for _ in range(5):
            await trio.testing.wait_all_tasks_blocked(0.05)
        sent = greeter.streamed
        assert 0 < sent * 1029 <= 65535 + 1100, sent
        assert server.open_streams == 1
        # Now read: the stream drains, the window opens and the handler continues.
        first = await client.until(sid, h2.events.DataReceived)
        assert first.data
        client.h2.reset_stream(sid, 8)
        await client.flush()
        await client.sock.aclose()
        await other.sock.aclose()
        with trio.fail_after(5):
            await server.wait_idle()
        assert greeter.cancelled == 1


async def test_slow_handler_backpressures_client() -> None:
    """A handler that does not receive holds the client at the stream window, not in server memory."""

    class Stalled:
        def __init__(self) -> None:
            self.gate = trio.Event()
            self.got = 0

        async def Echo(self, stream: Any, ctx: Any) -> None:
            await self.gate.wait()
            async for _ in stream:
                self.got += 1

    handler = Stalled()
    async with serve_grpc(handler) as (address, server, _):
        client = await RawClient.connect(address)
        sid = await client.call("/Stalled/Echo", b"", end=False)
        payload = frame(b"z" * 1000)
        sent = 0
        # Write until the server's stream window (1 MiB) is shut; h2 refuses beyond it.
        while client.h2.local_flow_control_window(sid) >= len(payload):
            client.h2.send_data(sid, payload)
            sent += 1
            await client.flush()
        await trio.testing.wait_all_tasks_blocked(0.05)
        assert sent * len(payload) <= 1024 * 1024
        handler.gate.set()
        # The handler consumes, the server acknowledges, and the window reopens.
        while client.h2.local_flow_control_window(sid) < len(payload):
            data = await client.sock.receive_some(65536)
            client.events.extend(client.h2.receive_data(data))
        client.h2.end_stream(sid)
        await client.flush()
        assert (await client.status(sid))[0] == 0
        assert handler.got == sent
        await client.sock.aclose()
        with trio.fail_after(5):
            await server.wait_idle()


def raw_frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return struct.pack(">HBBBL", n >> 8, n & 0xFF, ftype, flags, sid) + payload


async def test_client_goaway_lets_inflight_calls_finish() -> None:
    """A client's GOAWAY names the last *server*-started stream (0): the server's in-flight calls,
    all client-started, must still be answered, and nothing may stay counted afterwards."""
    async with serve_grpc() as (address, server, greeter):
        client = await RawClient.connect(address)
        sid = await client.call(
            "/greeter.Greeter/Slow", frame(pb.SlowRequest(sleep_ms=50).SerializeToString())
        )
        await greeter.started.wait()
        # GOAWAY(last=0, NO_ERROR) written behind h2's back, so our raw client can still read
        await client.sock.send_all(raw_frame(7, 0, 0, struct.pack(">LL", 0, 0)))
        with trio.fail_after(5):
            assert await client.status(sid) == (0, "")
        await client.sock.aclose()
        with trio.fail_after(5):
            await server.wait_idle()


async def test_rapid_reset_is_bounded_by_the_stream_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Streams opened and reset at once ("rapid reset", CVE-2023-44487) free their HTTP/2 slots
    before their handler tasks have even started: the tasks themselves must be bounded, and a
    stream reset while it waits for a slot never starts one."""
    from trimicro.transport._h2conn import MAX_STREAMS
    from trimicro.transport._h2server import H2ServerConn
    from trimicro.transport._http2 import PREFACE, encode_headers

    started = peak = 0
    orig = H2ServerConn._run_stream

    async def counting(conn: Any, st: Any) -> None:
        nonlocal started, peak
        started += 1
        peak = max(peak, conn.handlers)  # spawned and not yet finished, this one included
        await orig(conn, st)

    monkeypatch.setattr(H2ServerConn, "_run_stream", counting)
    headers = encode_headers(
        [(b":method", b"POST", False), (b":scheme", b"http", False), (b":path", b"/greeter.Greeter/Slow", False),
         (b"content-type", b"application/grpc", False)]
    )  # fmt: skip
    n = 2000
    attack = (
        PREFACE
        + raw_frame(4, 0, 0)
        + b"".join(
            raw_frame(1, 4, 2 * i + 1, headers) + raw_frame(3, 0, 2 * i + 1, struct.pack(">L", 8))
            for i in range(n)
        )
    )
    async with serve_grpc() as (address, server, _):
        host, _, port = address.rpartition(":")
        sock = await trio.open_tcp_stream(host, int(port))
        await sock.send_all(attack)
        # Past the reset budget (docs/grpc.md "Hardening") the server says GOAWAY(ENHANCE_YOUR_CALM)
        # and closes: read to the close.
        received = b""
        with trio.fail_after(10):
            while True:
                try:
                    data = await sock.receive_some(1 << 16)
                except trio.BrokenResourceError:
                    break
                if not data:
                    break
                received += data
        assert struct.pack(">BBL", 7, 0, 0) in received and struct.pack(">L", 11) in received
        await sock.aclose()
        with trio.fail_after(10):
            await server.wait_idle()
        assert started < n and peak <= MAX_STREAMS  # the rest were refused, then GOAWAY
        client = await RawClient.connect(address)  # and the server still serves
        await hello_ok(client)
        await client.sock.aclose()


async def test_drain_sends_goaway_and_finishes_inflight_calls() -> None:
    """A draining server says GOAWAY (NO_ERROR, last = the newest stream it took), as Go's does, so
    clients move new calls elsewhere at once; the calls in flight still get their answers, and the
    connection closes once they are done."""
    from trimicro.client import Client
    from trimicro.transport.grpc import GrpcTransport

    async with serve_grpc() as (address, grpc_server, greeter):
        transport = GrpcTransport()
        client = Client(None, transport)
        raw = await RawClient.connect(address)  # an idle connection: closed at once on drain
        await hello_ok(raw)
        async with trio.open_nursery() as nursery:
            replies: list[Any] = []

            async def slow() -> None:
                replies.append(
                    await client.call(
                        "greeter",
                        "Greeter.Slow",
                        pb.SlowRequest(sleep_ms=100),
                        response_type=pb.SlowResponse,
                        address=address,
                    )
                )

            nursery.start_soon(slow)
            await greeter.started.wait()
            (conn,) = transport._conns.values()
            with trio.fail_after(5):
                await grpc_server.server.drain(5.0)
        assert [r.slept_ms for r in replies] == [100]
        assert conn.goaway and not conn.usable  # new calls would dial a new connection
        with trio.fail_after(5):
            while await raw.sock.receive_some(65536):  # GOAWAY, then the server closes
                pass
            await grpc_server.wait_idle()  # both connections closed by the server
        await raw.sock.aclose()
        await client.aclose()


@pytest.mark.parametrize("code", [8, 0])
async def test_client_reset_after_its_request_cancels_the_handler(code: int) -> None:
    """RST_STREAM after the request's END_STREAM, even with NO_ERROR, means "stop": the handler
    is cancelled (only a *client* receiving RST(NO_ERROR) after a full answer keeps that answer)."""
    async with serve_grpc() as (address, server, greeter):
        client = await RawClient.connect(address)
        sid = await client.call(
            "/greeter.Greeter/Stream", frame(pb.StreamRequest(count=-1).SerializeToString())
        )
        await client.until(sid, h2.events.DataReceived)
        client.h2.reset_stream(sid, code)
        await client.flush()
        await hello_ok(client)
        with trio.fail_after(5):
            while greeter.cancelled != 1 or server.open_streams:
                await trio.testing.wait_all_tasks_blocked(0.01)
        await client.sock.aclose()


async def test_connection_accepted_while_draining_gets_goaway() -> None:
    """A client that reconnects after our GOAWAY lands on a server still draining: that connection
    is told GOAWAY at once too (and closed), rather than having each call refused."""
    from trimicro.client import Client
    from trimicro.errors import MicroError, TransportError
    from trimicro.transport.grpc import GrpcTransport

    async with serve_grpc() as (address, grpc_server, greeter):
        busy, late = Client(None, GrpcTransport()), GrpcTransport()
        slept: list[int] = []

        async def slow() -> None:
            rsp = await busy.call(
                "greeter",
                "Greeter.Slow",
                pb.SlowRequest(sleep_ms=300),
                response_type=pb.SlowResponse,
                address=address,
            )
            slept.append(rsp.slept_ms)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow)
            await greeter.started.wait()
            nursery.start_soon(grpc_server.server.drain, 5.0)
            await trio.testing.wait_all_tasks_blocked()
            with trio.fail_after(5), pytest.raises((MicroError, TransportError)) as info:
                await Client(None, late).call(
                    "greeter", "Greeter.Hello", pb.HelloRequest(name="late"), response_type=pb.HelloResponse,
                    address=address, retries=0,
                )  # fmt: skip
            assert "GOAWAY" in str(info.value)  # not a refused stream
        assert slept == [300]  # the call in flight is still answered
        await busy.aclose()
        await late.aclose()
        with trio.fail_after(5):
            await grpc_server.wait_idle()


async def test_peer_flooding_pings_without_reading_is_disconnected() -> None:
    """PING acks we must queue for a peer that never reads are capped; past the cap the connection
    is closed (GOAWAY ENHANCE_YOUR_CALM, best effort), not left with a reader stuck behind a writer."""
    import socket

    from trimicro.transport._http2 import PREFACE

    async with serve_grpc() as (address, server, _):
        host, _, port = address.rpartition(":")
        sock = await trio.open_tcp_stream(host, int(port))
        sock.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.send_all(PREFACE + raw_frame(4, 0, 0))
        pings = raw_frame(6, 0, 0, b"12345678") * 4096
        with trio.fail_after(10), pytest.raises((trio.BrokenResourceError, OSError)):
            for _ in range(1000):  # ~70 MB at most; the server gives up long before
                await sock.send_all(pings)
        with trio.fail_after(5):
            await server.wait_idle()
        await sock.aclose()
