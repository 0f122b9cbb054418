"""The HTTP/2 floor: a minimal trio + h2 gRPC-shaped server and client (no framework around them).

Requests and replies use gRPC's 5-byte message framing and ``:path /greeter.Greeter/<Method>``; one
h2 connection per client carries every call (a reader task routes events to per-stream channels).
Flow control is honoured (large windows, acknowledged as data is consumed). No deadlines, metadata,
limits or error statuses beyond ``grpc-status: 0``: the cost of h2 + trio.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import trio

from tests.protos.greeter_pb2 import EchoMessage, HelloRequest, HelloResponse, StreamRequest, StreamResponse

PEER_ERRORS: tuple[type[Exception], ...] = (h2.exceptions.ProtocolError,)
_HDR = struct.Struct(">BI")
WINDOW = 16 * 1024 * 1024
COALESCE = 16 * 1024


def grpc_frame(body: bytes) -> bytes:
    return _HDR.pack(0, len(body)) + body


def split_frames(buf: bytearray) -> list[bytes]:
    out = []
    pos = 0
    while len(buf) - pos >= 5:
        _, n = _HDR.unpack_from(buf, pos)
        if len(buf) - pos < 5 + n:
            break
        out.append(bytes(buf[pos + 5 : pos + 5 + n]))
        pos += 5 + n
    del buf[:pos]
    return out


class _Conn:
    """An h2 connection shared by tasks. One writer task sends what h2 buffered; the reader never
    writes itself (a reader blocked on a full socket while its peer does the same would deadlock)."""

    def __init__(self, stream: trio.abc.Stream, client_side: bool) -> None:
        self.stream = stream
        cfg = h2.config.H2Configuration(client_side=client_side, header_encoding=None)
        self.h2 = h2.connection.H2Connection(cfg)
        self.window = trio.Event()
        self.dirty = trio.Event()
        self.done = trio.Event()

    def kick(self) -> None:
        self.dirty.set()

    async def flush(self) -> None:
        """Wait until everything buffered so far is written (one write per call when alone)."""
        done = self.done
        self.dirty.set()
        await done.wait()

    async def writer(self) -> None:
        while True:
            await self.dirty.wait()
            self.dirty = trio.Event()
            done, self.done = self.done, trio.Event()
            data = self.h2.data_to_send()
            if data:
                await self.stream.send_all(data)
            done.set()

    def start(self) -> None:
        self.h2.initiate_connection()
        self.h2.update_settings(
            {
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 4096,  # a floor has no limits
            }
        )
        self.h2.increment_flow_control_window(WINDOW)

    async def send_data(self, sid: int, data: bytes, end: bool = False) -> None:
        view = memoryview(data)
        while view:
            window = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
            if window <= 0:
                woken = self.window  # taken before we yield, so a wake-up meanwhile counts
                self.kick()
                await woken.wait()
                continue
            chunk, view = view[:window], view[window:]
            self.h2.send_data(sid, bytes(chunk), end_stream=end and not view)
        if end and not data:
            self.h2.end_stream(sid)
        await self.flush()

    def wake(self) -> None:
        """The peer opened its window (WINDOW_UPDATE or a larger initial window): writers retry."""
        self.window.set()
        self.window = trio.Event()

    def ack(self, event: h2.events.DataReceived) -> None:
        if event.flow_controlled_length:
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)


_RESPONSE_HEADERS = [(b":status", b"200"), (b"content-type", b"application/grpc")]
_TRAILERS = [(b"grpc-status", b"0")]


async def _connection(tcp: trio.SocketStream) -> None:
    conn = _Conn(tcp, client_side=False)
    conn.start()
    paths: dict[int, bytes] = {}
    bufs: dict[int, bytearray] = {}
    answering: set[int] = set()  # Echo streams whose response headers went out

    async def stream_reply(sid: int, count: int) -> None:
        conn.h2.send_headers(sid, _RESPONSE_HEADERS)
        for i in range(count):
            await conn.send_data(
                sid, grpc_frame(StreamResponse(count=i, message="hello").SerializeToString())
            )
        conn.h2.send_headers(sid, _TRAILERS, end_stream=True)
        await conn.flush()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.writer)
        conn.kick()
        while True:
            data = await tcp.receive_some(65536)
            if not data:
                nursery.cancel_scope.cancel()
                return
            for event in conn.h2.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    paths[event.stream_id] = dict(event.headers)[b":path"]
                    bufs[event.stream_id] = bytearray()
                elif isinstance(event, h2.events.DataReceived):
                    conn.ack(event)
                    sid = event.stream_id
                    bufs[sid] += event.data
                    if paths[sid].endswith(b"/Echo"):
                        for body in split_frames(bufs[sid]):
                            if sid not in answering:
                                conn.h2.send_headers(sid, _RESPONSE_HEADERS)
                                answering.add(sid)
                            msg = EchoMessage.FromString(body)
                            conn.h2.send_data(sid, grpc_frame(msg.SerializeToString()))
                elif isinstance(event, h2.events.StreamEnded):
                    sid = event.stream_id
                    path = paths.pop(sid)
                    msgs = split_frames(bufs.pop(sid))
                    if path.endswith(b"/Hello"):
                        req = HelloRequest.FromString(msgs[0])
                        out = HelloResponse(greeting="Hello " + req.name).SerializeToString()
                        conn.h2.send_headers(sid, _RESPONSE_HEADERS)
                        nursery.start_soon(_finish, conn, sid, grpc_frame(out))
                    elif path.endswith(b"/Stream"):
                        nursery.start_soon(stream_reply, sid, StreamRequest.FromString(msgs[0]).count)
                    else:  # Echo: the client is done
                        if sid not in answering:
                            conn.h2.send_headers(sid, _RESPONSE_HEADERS)
                        answering.discard(sid)
                        conn.h2.send_headers(sid, _TRAILERS, end_stream=True)
                elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
                    conn.wake()
                elif isinstance(event, h2.events.StreamReset):
                    paths.pop(event.stream_id, None)
                    bufs.pop(event.stream_id, None)
            conn.kick()


async def _finish(conn: _Conn, sid: int, body: bytes) -> None:
    await conn.send_data(sid, body)
    conn.h2.send_headers(sid, _TRAILERS, end_stream=True)
    await conn.flush()


async def _guarded(stream: trio.SocketStream) -> None:
    """A peer that vanishes ends its connection, never the server."""
    try:
        await _connection(stream)
    except* (trio.BrokenResourceError, trio.ClosedResourceError, *PEER_ERRORS):
        pass


async def serve(announce: Callable[[int], None]) -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, _guarded, 0, host="127.0.0.1"))
        announce(listeners[0].socket.getsockname()[1])


class _ClientConn(_Conn):
    def __init__(self, stream: trio.abc.Stream, authority: bytes) -> None:
        super().__init__(stream, client_side=True)
        self.authority = authority
        self.inbox: dict[int, trio.MemorySendChannel[bytes | None]] = {}
        self.bufs: dict[int, bytearray] = {}

    async def reader(self) -> None:
        while True:
            data = await self.stream.receive_some(65536)
            if not data:
                return
            for event in self.h2.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    self.ack(event)
                    buf = self.bufs[event.stream_id]
                    buf += event.data
                    for body in split_frames(buf):
                        self.inbox[event.stream_id].send_nowait(body)
                elif isinstance(event, h2.events.StreamEnded):
                    self.inbox.pop(event.stream_id).send_nowait(None)
                    self.bufs.pop(event.stream_id, None)
                elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
                    self.wake()
            self.kick()

    async def open(self, method: str) -> tuple[int, trio.MemoryReceiveChannel[bytes | None]]:
        sid = self.h2.get_next_available_stream_id()
        send, recv = trio.open_memory_channel[bytes | None](1_000_000)
        self.inbox[sid] = send
        self.bufs[sid] = bytearray()
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/greeter.Greeter/" + method.encode()),
            (b":authority", self.authority),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ]
        self.h2.send_headers(sid, headers)
        return sid, recv


class H2Client:
    def __init__(self, address: str, nursery: trio.Nursery) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port, self.address = host, int(port), address
        self.nursery = nursery
        self.conn: _ClientConn | None = None

    async def connect(self) -> _ClientConn:
        tcp = await trio.open_tcp_stream(self.host, self.port)
        conn = _ClientConn(tcp, self.address.encode())
        conn.start()
        self.nursery.start_soon(conn.writer)
        self.nursery.start_soon(conn.reader)
        await conn.flush()
        return conn

    async def start(self) -> None:
        self.conn = await self.connect()

    async def unary(self, name: str, conn: _ClientConn | None = None) -> None:
        conn = conn or self.conn
        assert conn is not None
        sid, recv = await conn.open("Hello")
        await conn.send_data(sid, grpc_frame(HelloRequest(name=name).SerializeToString()), end=True)
        body = await recv.receive()
        assert body is not None
        if len(HelloResponse.FromString(body).greeting) != len(name) + 6:
            raise AssertionError("bad greeting")
        assert await recv.receive() is None

    async def server_stream(self, count: int, progress: list[int]) -> None:
        conn = self.conn
        assert conn is not None
        sid, recv = await conn.open("Stream")
        await conn.send_data(sid, grpc_frame(StreamRequest(count=count).SerializeToString()), end=True)
        async for body in recv:
            if body is None:
                return
            StreamResponse.FromString(body)
            progress[0] += 1

    @asynccontextmanager
    async def bidi(self) -> AsyncIterator[Callable[[int], Awaitable[None]]]:
        conn = self.conn
        assert conn is not None
        sid, recv = await conn.open("Echo")

        async def ping(seq: int) -> None:
            await conn.send_data(sid, grpc_frame(EchoMessage(text="ping", seq=seq).SerializeToString()))
            body = await recv.receive()
            assert body is not None
            if EchoMessage.FromString(body).seq != seq:
                raise AssertionError("out of order")

        yield ping
        await conn.send_data(sid, b"", end=True)

    async def hold_idle(self, n: int, ready: Callable[[], Awaitable[None]]) -> None:
        for _ in range(n):
            await self.unary("world", await self.connect())
        await ready()

    async def hold_streams(self, n: int, ready: Callable[[], Awaitable[None]]) -> None:
        from contextlib import AsyncExitStack

        async with AsyncExitStack() as stack:
            for _ in range(n):
                ping = await stack.enter_async_context(self.bidi())
                await ping(0)
            await ready()


@asynccontextmanager
async def open_client(address: str, coalesce: bool = False) -> AsyncIterator[Any]:
    if coalesce:
        raise NotImplementedError("the h2 floor has no coalesced variant")
    async with trio.open_nursery() as nursery:
        client = H2Client(address, nursery)
        await client.start()
        yield client
        nursery.cancel_scope.cancel()
