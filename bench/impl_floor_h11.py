"""The HTTP/1.1 floor: a minimal trio + h11 server and client, protobuf bodies, keep-alive.

``POST /Hello`` (Content-Length body) -> 200 with the HelloResponse. ``POST /Stream`` -> a chunked
200 whose chunks carry length-prefixed StreamResponses, one chunk per message (``/StreamCoalesced``:
chunks of ~16 KiB). This is the cost of h11 + trio with no framework on top.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import h11
import trio

from bench.impl_floor_tcp import COALESCE, frame
from tests.protos.greeter_pb2 import HelloRequest, HelloResponse, StreamRequest, StreamResponse

PEER_ERRORS: tuple[type[Exception], ...] = (h11.RemoteProtocolError,)


async def _next_event(conn: h11.Connection, stream: trio.abc.Stream) -> Any:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
            continue
        return event


async def _read_body(conn: h11.Connection, stream: trio.abc.Stream) -> bytes:
    parts = []
    while True:
        event = await _next_event(conn, stream)
        if isinstance(event, h11.Data):
            parts.append(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return b"".join(parts)


async def _connection(stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER)
    while True:
        event = await _next_event(conn, stream)
        if isinstance(event, (h11.ConnectionClosed, h11.PAUSED)) or event is None:
            return
        if not isinstance(event, h11.Request):
            return
        target = event.target
        body = await _read_body(conn, stream)
        if target == b"/Hello":
            out = HelloResponse(greeting="Hello " + HelloRequest.FromString(body).name).SerializeToString()
            headers = [("Content-Type", "application/protobuf"), ("Content-Length", str(len(out)))]
            await stream.send_all(
                conn.send(h11.Response(status_code=200, headers=headers))
                + conn.send(h11.Data(data=out))
                + conn.send(h11.EndOfMessage())
            )
        else:
            count = StreamRequest.FromString(body).count
            coalesce = target == b"/StreamCoalesced"
            headers = [("Content-Type", "application/protobuf"), ("Transfer-Encoding", "chunked")]
            await stream.send_all(conn.send(h11.Response(status_code=200, headers=headers)))
            pending = bytearray()
            for i in range(count):
                data = frame(2, StreamResponse(count=i, message="hello").SerializeToString())
                if coalesce:
                    pending += data
                    if len(pending) >= COALESCE:
                        await stream.send_all(conn.send(h11.Data(data=bytes(pending))))
                        pending.clear()
                else:
                    await stream.send_all(conn.send(h11.Data(data=data)))
            if pending:
                await stream.send_all(conn.send(h11.Data(data=bytes(pending))))
            await stream.send_all(conn.send(h11.EndOfMessage()))
        if conn.our_state is h11.MUST_CLOSE:
            return
        conn.start_next_cycle()


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


class _Conn:
    def __init__(self, stream: trio.SocketStream, host: str) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)
        self.host = host

    async def request(self, target: str, body: bytes) -> None:
        headers = [
            ("Host", self.host),
            ("Content-Type", "application/protobuf"),
            ("Content-Length", str(len(body))),
        ]
        c = self.conn
        await self.stream.send_all(
            c.send(h11.Request(method="POST", target=target, headers=headers))
            + c.send(h11.Data(data=body))
            + c.send(h11.EndOfMessage())
        )
        event = await _next_event(c, self.stream)
        assert isinstance(event, h11.Response) and event.status_code == 200, event


class H11Client:
    def __init__(self, address: str, *, coalesce: bool = False) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port, self.address = host, int(port), address
        self.idle: list[_Conn] = []
        self.all: list[_Conn] = []
        self.stream_target = "/StreamCoalesced" if coalesce else "/Stream"

    async def _get(self) -> _Conn:
        if self.idle:
            return self.idle.pop()
        conn = _Conn(await trio.open_tcp_stream(self.host, self.port), self.address)
        self.all.append(conn)
        return conn

    def _put(self, conn: _Conn) -> None:
        conn.conn.start_next_cycle()
        self.idle.append(conn)

    async def aclose(self) -> None:
        for c in self.all:
            await trio.aclose_forcefully(c.stream)

    async def unary(self, name: str) -> None:
        conn = await self._get()
        await conn.request("/Hello", HelloRequest(name=name).SerializeToString())
        rsp = HelloResponse.FromString(await _read_body(conn.conn, conn.stream))
        if len(rsp.greeting) != len(name) + 6:
            raise AssertionError("bad greeting")
        self._put(conn)

    async def server_stream(self, count: int, progress: list[int]) -> None:
        from bench.impl_floor_tcp import _LEN

        conn = await self._get()
        await conn.request(self.stream_target, StreamRequest(count=count).SerializeToString())
        buf = bytearray()
        while True:
            event = await _next_event(conn.conn, conn.stream)
            if isinstance(event, h11.EndOfMessage):
                break
            buf += event.data
            pos = 0
            while len(buf) - pos >= 5:
                n, _ = _LEN.unpack_from(buf, pos)
                if len(buf) - pos < 5 + n:
                    break
                StreamResponse.FromString(bytes(buf[pos + 5 : pos + 5 + n]))
                progress[0] += 1
                pos += 5 + n
            del buf[:pos]
        self._put(conn)

    @asynccontextmanager
    async def bidi(self) -> AsyncIterator[Callable[[int], Awaitable[None]]]:
        raise NotImplementedError
        yield

    async def hold_idle(self, n: int, ready: Callable[[], Awaitable[None]]) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(self.unary, "world")
        await ready()

    async def hold_streams(self, n: int, ready: Callable[[], Awaitable[None]]) -> None:
        raise NotImplementedError


@asynccontextmanager
async def open_client(address: str, coalesce: bool = False) -> AsyncIterator[Any]:
    client = H11Client(address, coalesce=coalesce)
    try:
        yield client
    finally:
        await client.aclose()
