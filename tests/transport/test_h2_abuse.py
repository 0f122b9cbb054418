"""HTTP/2 abuse on loopback: each attack is performed against a real gRPC server, bounded in count
and time, and must end with GOAWAY (and the connection closed) while other callers keep working.

Assertions are on counts, GOAWAY codes and closes, never on timing; the canary calls made during
an attack are counted (they all succeed), their latency is not asserted.
"""

from __future__ import annotations

import math
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
import trio

from tests.interop import serve_grpc
from tests.transport.test_h2_faults import RawClient, hello_ok
from trimicro.transport import H2Policy
from trimicro.transport._http2 import ErrorCode, H2Protocol, H2ProtocolError
from trimicro.transport._http2.flood import FloodGuard, TokenBucket

pytestmark = pytest.mark.loopback

HEADERS = [
    (":method", "POST"), (":scheme", "http"), (":path", "/greeter.Greeter/Hello"), (":authority", "x"),
    ("content-type", "application/grpc"), ("te", "trailers"),
]  # fmt: skip


def _client() -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    return conn


async def _until_closed(sock: trio.SocketStream, conn: h2.connection.H2Connection) -> list[Any]:
    """Read (never writing, so no PING is acknowledged) until the server closes; the events."""
    events: list[Any] = []
    with trio.fail_after(20):
        while True:
            try:
                data = await sock.receive_some(65536)
            except trio.BrokenResourceError:
                break
            if not data:
                break
            try:
                events += conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                break
    return events


def _goaway(events: list[Any]) -> h2.events.ConnectionTerminated:
    ends = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert ends, events[-5:]
    return ends[0]


class _Canary:
    """Calls Hello every 100 ms on its own connection while an attack runs; counts what succeeded."""

    def __init__(self) -> None:
        self.ok = 0
        self.latencies: list[float] = []

    async def run(self, address: str) -> None:
        client = await RawClient.connect(address)
        try:
            while True:
                start = trio.current_time()
                await hello_ok(client)
                self.latencies.append(trio.current_time() - start)
                self.ok += 1
                await trio.sleep(0.1)
        finally:
            await client.sock.aclose()

    def report(self, name: str) -> None:
        if self.latencies:
            p50 = sorted(self.latencies)[len(self.latencies) // 2]
            print(f"{name}: canary {self.ok} calls, p50 {p50 * 1000:.1f} ms")


async def _attack(address: str, frames: Any, count: int) -> tuple[list[Any], int]:
    """Send ``count`` rounds of ``frames(conn, i)`` (flushing every 100), then read to the close."""
    host, _, port = address.rpartition(":")
    sock = await trio.open_tcp_stream(host, int(port))
    conn = _client()
    sent = 0
    try:
        await sock.send_all(conn.data_to_send())
        for i in range(count):
            frames(conn, i)
            sent += 1
            if i % 100 == 99:
                try:
                    await sock.send_all(conn.data_to_send())
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
        else:
            try:
                await sock.send_all(conn.data_to_send())
            except trio.BrokenResourceError:
                pass
        return await _until_closed(sock, conn), sent
    finally:
        await sock.aclose()


async def _with_canary(address: str, frames: Any, count: int, name: str) -> list[Any]:
    canary = _Canary()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(canary.run, address)
        await trio.sleep(0.2)
        events, _ = await _attack(address, frames, count)
        await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    canary.report(name)
    assert canary.ok >= 2
    return events


# -- the sans-IO budgets, directly --
def test_token_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(3, 2)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5) and not bucket.take(0.5)  # one token per half second
    assert bucket.take(10.0) and bucket.tokens == 2  # never more than the burst


def _server(guard: FloodGuard) -> H2Protocol:
    server = H2Protocol(client_side=False, guard=guard)
    server.initiate_connection()
    server.data_to_send()
    return server


@pytest.mark.parametrize("kind", ["reset", "settings", "ping"])
def test_guard_turns_floods_into_goaway(kind: str) -> None:
    now = [0.0]
    guard = FloodGuard(clock=lambda: now[0])
    server = _server(guard)
    client = _client()
    server.receive_data(client.data_to_send())
    with pytest.raises(H2ProtocolError) as info:
        for i in range(1000):
            if kind == "reset":
                sid = client.get_next_available_stream_id()
                client.send_headers(sid, HEADERS)
                client.reset_stream(sid)
            elif kind == "settings":
                client.update_settings({h2.settings.SettingCodes.MAX_FRAME_SIZE: 16384 + i})
            else:
                client.ping(i.to_bytes(8, "big"))
            server.receive_data(client.data_to_send())
    assert info.value.error_code == ErrorCode.ENHANCE_YOUR_CALM
    assert i < 250  # the burst, not the whole flood
    events = client.receive_data(server.data_to_send())
    assert _goaway(events).error_code == ErrorCode.ENHANCE_YOUR_CALM


def test_guard_refills_over_time() -> None:
    now = [0.0]
    server = _server(FloodGuard(clock=lambda: now[0]))
    client = _client()
    server.receive_data(client.data_to_send())
    for i in range(1000):  # 1000 resets at 100/s, the budget's rate, never trips it
        now[0] = i * 0.01
        sid = client.get_next_available_stream_id()
        client.send_headers(sid, HEADERS)
        client.reset_stream(sid)
        server.receive_data(client.data_to_send())
        server.data_to_send()
    assert server.guard.resets_seen == 1000 and not server.closed


def test_ping_strikes_and_forgiveness() -> None:
    now = [0.0]
    guard = FloodGuard(clock=lambda: now[0], min_ping_interval=10)
    for _ in range(3):
        guard.on_ping()  # first ping free, then 2 strikes
        guard.forgive_pings()  # ... forgiven by our DATA
    guard.on_ping()
    guard.on_ping()
    guard.on_ping()
    with pytest.raises(H2ProtocolError) as info:
        guard.on_ping()
    assert getattr(info.value, "debug_data", b"") == b"too_many_pings"


# -- on loopback --
async def test_rapid_reset_gets_goaway() -> None:
    def frames(conn: h2.connection.H2Connection, _: int) -> None:
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, HEADERS)
        conn.reset_stream(sid)

    async with serve_grpc() as (address, server, _):
        events = await _with_canary(address, frames, 5000, "rapid reset")
        assert _goaway(events).error_code == ErrorCode.ENHANCE_YOUR_CALM
        with trio.fail_after(5):
            await server.wait_idle()


async def test_settings_flood_gets_goaway() -> None:
    def frames(conn: h2.connection.H2Connection, i: int) -> None:
        conn.update_settings({h2.settings.SettingCodes.MAX_FRAME_SIZE: 16384 + i})

    async with serve_grpc() as (address, server, _):
        events = await _with_canary(address, frames, 5000, "settings flood")
        assert _goaway(events).error_code == ErrorCode.ENHANCE_YOUR_CALM
        with trio.fail_after(5):
            await server.wait_idle()


async def test_ping_flood_gets_goaway() -> None:
    def frames(conn: h2.connection.H2Connection, i: int) -> None:
        conn.ping(i.to_bytes(8, "big"))

    async with serve_grpc() as (address, server, _):
        events = await _with_canary(address, frames, 5000, "ping flood")
        end = _goaway(events)
        assert end.error_code == ErrorCode.ENHANCE_YOUR_CALM and end.additional_data == b"too_many_pings"
        with trio.fail_after(5):
            await server.wait_idle()


async def test_too_many_pings_under_min_time() -> None:
    def frames(conn: h2.connection.H2Connection, i: int) -> None:
        conn.ping(i.to_bytes(8, "big"))

    async with serve_grpc(policy=H2Policy(min_ping_interval=60)) as (address, _server, _):
        events, _ = await _attack(address, frames, 4)  # the fourth is the third strike
        end = _goaway(events)
        assert end.error_code == ErrorCode.ENHANCE_YOUR_CALM and end.additional_data == b"too_many_pings"


async def test_unfinished_header_block_times_out() -> None:
    def frames(conn: h2.connection.H2Connection, _: int) -> None:
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, HEADERS)

    async with serve_grpc(policy=H2Policy(header_timeout=0.3)) as (address, server, _):
        host, _, port = address.rpartition(":")
        sock = await trio.open_tcp_stream(host, int(port))
        conn = _client()
        frames(conn, 0)
        data = bytearray(conn.data_to_send())
        # clear END_HEADERS (0x4) on the HEADERS frame, the last frame queued
        head = data.rfind(bytes([0x01, 0x04, 0, 0, 0, 1]))
        assert head > 0
        data[head + 1] &= ~0x04
        await sock.send_all(bytes(data))
        events = await _until_closed(sock, conn)
        assert _goaway(events).error_code == ErrorCode.PROTOCOL_ERROR
        await sock.aclose()
        with trio.fail_after(5):
            await server.wait_idle()


async def test_idle_connection_gets_goaway_and_close() -> None:
    async with serve_grpc(policy=H2Policy(idle_timeout=0.3)) as (address, server, _):
        client = await RawClient.connect(address)
        await hello_ok(client)
        events = await _until_closed(client.sock, client.h2)
        assert _goaway(events).error_code == ErrorCode.NO_ERROR
        await client.sock.aclose()
        with trio.fail_after(5):
            await server.wait_idle()


async def test_keepalive_closes_a_peer_that_never_acks() -> None:
    policy = H2Policy(keepalive_time=0.3, keepalive_timeout=0.3, idle_timeout=math.inf)
    async with serve_grpc(policy=policy) as (address, server, _):
        host, _, port = address.rpartition(":")
        sock = await trio.open_tcp_stream(host, int(port))
        conn = _client()
        await sock.send_all(conn.data_to_send())
        events = await _until_closed(sock, conn)  # reads but never writes: no ACK
        assert any(isinstance(e, h2.events.PingReceived) for e in events)
        await sock.aclose()
        with trio.fail_after(5):
            await server.wait_idle()


async def test_keepalive_keeps_a_peer_that_acks() -> None:
    policy = H2Policy(keepalive_time=0.2, keepalive_timeout=0.5)
    async with serve_grpc(policy=policy) as (address, server, _):
        client = await RawClient.connect(address)
        pings = 0
        with trio.fail_after(10):
            while pings < 3:
                data = await client.sock.receive_some(65536)
                assert data
                pings += sum(isinstance(e, h2.events.PingReceived) for e in client.h2.receive_data(data))
                await client.flush()  # h2 acknowledges them
        await hello_ok(client)
        assert server.open_connections == 1
        await client.sock.aclose()
