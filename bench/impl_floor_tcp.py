"""The raw-TCP floor: trio streams carrying length-prefixed protobuf frames, nothing else.

Frame: 4-byte big-endian length, 1 kind byte, protobuf body. Kinds: 1 Hello, 2 Stream (one write per
message), 3 Stream with writes coalesced to 16 KiB, 4 Echo (one round trip). A stream ends with an
empty kind-0 frame. No deadlines, metadata, limits or errors: the cost of the bytes and of trio.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio

from tests.protos.greeter_pb2 import EchoMessage, HelloRequest, HelloResponse, StreamRequest, StreamResponse

_LEN = struct.Struct(">IB")
COALESCE = 16 * 1024
PEER_ERRORS: tuple[type[Exception], ...] = ()


def frame(kind: int, body: bytes) -> bytes:
    return _LEN.pack(len(body), kind) + body


class FrameReader:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def read(self) -> tuple[int, bytes] | None:
        buf = self.buf
        while True:
            if len(buf) >= 5:
                n, kind = _LEN.unpack_from(buf)
                if len(buf) >= 5 + n:
                    body = bytes(buf[5 : 5 + n])
                    del buf[: 5 + n]
                    return kind, body
            data = await self.stream.receive_some(65536)
            if not data:
                return None
            buf += data


async def _connection(stream: trio.SocketStream) -> None:
    reader = FrameReader(stream)
    while (got := await reader.read()) is not None:
        kind, body = got
        if kind == 1:
            req = HelloRequest.FromString(body)
            await stream.send_all(frame(1, HelloResponse(greeting="Hello " + req.name).SerializeToString()))
        elif kind == 4:
            await stream.send_all(frame(4, EchoMessage.FromString(body).SerializeToString()))
        elif kind in (2, 3):
            count = StreamRequest.FromString(body).count
            out = bytearray()
            for i in range(count):
                data = frame(2, StreamResponse(count=i, message="hello").SerializeToString())
                if kind == 2:
                    await stream.send_all(data)
                else:
                    out += data
                    if len(out) >= COALESCE:
                        await stream.send_all(out)
                        out = bytearray()
            out += frame(0, b"")
            await stream.send_all(out)


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
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.reader = FrameReader(stream)

    async def hello(self, name: str) -> None:
        await self.stream.send_all(frame(1, HelloRequest(name=name).SerializeToString()))
        got = await self.reader.read()
        assert got is not None
        if len(HelloResponse.FromString(got[1]).greeting) != len(name) + 6:
            raise AssertionError("bad greeting")


class TcpClient:
    """A pool of connections: a call takes an idle one or dials (like every other client here)."""

    def __init__(self, address: str, *, coalesce: bool = False) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port = host, int(port)
        self.idle: list[_Conn] = []
        self.all: list[_Conn] = []
        self.stream_kind = 3 if coalesce else 2

    async def _get(self) -> _Conn:
        if self.idle:
            return self.idle.pop()
        conn = _Conn(await trio.open_tcp_stream(self.host, self.port))
        self.all.append(conn)
        return conn

    async def aclose(self) -> None:
        for c in self.all:
            await trio.aclose_forcefully(c.stream)

    async def unary(self, name: str) -> None:
        conn = await self._get()
        await conn.hello(name)
        self.idle.append(conn)

    async def server_stream(self, count: int, progress: list[int]) -> None:
        conn = await self._get()
        await conn.stream.send_all(frame(self.stream_kind, StreamRequest(count=count).SerializeToString()))
        while (got := await conn.reader.read()) is not None and got[0] != 0:
            StreamResponse.FromString(got[1])
            progress[0] += 1
        self.idle.append(conn)

    @asynccontextmanager
    async def bidi(self) -> AsyncIterator[Callable[[int], Awaitable[None]]]:
        conn = await self._get()

        async def ping(seq: int) -> None:
            await conn.stream.send_all(frame(4, EchoMessage(text="ping", seq=seq).SerializeToString()))
            got = await conn.reader.read()
            assert got is not None
            if EchoMessage.FromString(got[1]).seq != seq:
                raise AssertionError("out of order")

        yield ping
        self.idle.append(conn)

    async def hold_idle(self, n: int, ready: Callable[[], Awaitable[None]]) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(self.unary, "world")
        await ready()

    async def hold_streams(self, n: int, ready: Callable[[], Awaitable[None]]) -> None:
        raise NotImplementedError


@asynccontextmanager
async def open_client(address: str, coalesce: bool = False) -> AsyncIterator[Any]:
    client = TcpClient(address, coalesce=coalesce)
    try:
        yield client
    finally:
        await client.aclose()
