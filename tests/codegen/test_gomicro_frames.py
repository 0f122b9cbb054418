"""Go Micro compatibility of generated stream clients, checked on the raw bytes.

A raw trio TCP server on 127.0.0.1 plays a Go Micro server (handler name = proto service name): it
reads the mucp frames the generated client writes, asserts the routing frame Go Micro's stream router
expects (empty body, ``Micro-Stream`` header, ``Micro-Endpoint: Greeter.<Method>``), and answers
with plain 200 frames and an ``EOS`` frame, as wire/mucp.md describes.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import trio

import trimicro
from trimicro.registry.memory import MemoryRegistry

pytestmark = pytest.mark.loopback

Frame = tuple[dict[str, str], bytes]


@pytest.fixture(scope="module")
def greeter(generated: Path) -> Iterator[tuple[ModuleType, ModuleType]]:
    sys.path.insert(0, str(generated))
    try:
        yield importlib.import_module("cgtest.greeter_pb2"), importlib.import_module("cgtest.greeter_micro")
    finally:
        sys.path.remove(str(generated))


class RawConn:
    """Just enough HTTP/1.1 to read mucp request frames and write response frames (wire/mucp.md)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def _fill(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError
        self.buf += data

    async def read_frame(self) -> Frame:
        while b"\r\n\r\n" not in self.buf:
            await self._fill()
        head, _, _ = bytes(self.buf).partition(b"\r\n\r\n")
        del self.buf[: len(head) + 4]
        start, *lines = head.decode().split("\r\n")
        assert start == "POST / HTTP/1.1", start
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().title(), value.strip())
        size = int(headers["Content-Length"])
        while len(self.buf) < size:
            await self._fill()
        body = bytes(self.buf[:size])
        del self.buf[:size]
        return headers, body

    async def write_frame(self, headers: dict[str, str], body: bytes = b"") -> None:
        lines = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        await self.stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode() + body)


async def go_micro_server(
    serve: Callable[[RawConn], Awaitable[None]],
    client_side: Callable[[str], Awaitable[None]],
) -> None:
    """Run ``serve`` on the one connection ``client_side(address)`` makes, both bounded."""
    with trio.fail_after(10):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        done = trio.Event()

        async def accept_one() -> None:
            async with listeners[0]:
                stream = await listeners[0].accept()
            async with stream:
                await serve(RawConn(stream))
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept_one)
            await client_side(f"127.0.0.1:{port}")
            await done.wait()


def assert_routing_frame(frame: Frame, endpoint: str) -> dict[str, str]:
    headers, body = frame
    assert body == b"", "Go Micro's stream router discards the first frame's body; it must be empty"
    assert headers.get("Micro-Stream"), headers
    assert headers["Micro-Endpoint"] == endpoint
    assert headers["Micro-Service"] == "greeter"
    assert headers["Content-Type"] == "application/protobuf"
    return headers


def reply_headers(request: dict[str, str]) -> dict[str, str]:
    return {
        k: request[k] for k in ("Micro-Id", "Micro-Stream", "Micro-Endpoint", "Content-Type") if k in request
    }


async def test_server_stream_sends_empty_routing_frame_then_request(
    greeter: tuple[ModuleType, ModuleType],
) -> None:
    pb, gm = greeter

    async def serve(conn: RawConn) -> None:
        headers = assert_routing_frame(await conn.read_frame(), "Greeter.Stream")
        h2, body = await conn.read_frame()
        assert h2["Micro-Stream"] == headers["Micro-Stream"]
        assert pb.StreamRequest.FromString(body).count == 2
        rh = reply_headers(headers)
        for i in range(2):
            await conn.write_frame(rh, pb.StreamResponse(count=i).SerializeToString())
        await conn.write_frame({**rh, "Micro-Error": "EOS"})

    async def client_side(address: str) -> None:
        async with trimicro.open_client(registry=MemoryRegistry()) as client:
            async with gm.GreeterClient("greeter", client).Stream(
                pb.StreamRequest(count=2), address=address
            ) as s:
                assert [m.count async for m in s] == [0, 1]

    await go_micro_server(serve, client_side)


async def test_bidi_and_client_stream_routing_frames(greeter: tuple[ModuleType, ModuleType]) -> None:
    pb, gm = greeter

    async def serve_echo(conn: RawConn) -> None:
        headers = assert_routing_frame(await conn.read_frame(), "Greeter.Echo")
        rh = reply_headers(headers)
        while True:
            h, body = await conn.read_frame()
            if h.get("Micro-Error") == "EOS":
                break
            await conn.write_frame(rh, body)
        await conn.write_frame({**rh, "Micro-Error": "EOS"})

    async def echo_client(address: str) -> None:
        async with trimicro.open_client(registry=MemoryRegistry()) as client:
            async with gm.GreeterClient("greeter", client).Echo(address=address) as s:
                await s.send(pb.EchoMessage(text="hi", seq=7))
                back = await s.receive()
                assert (back.text, back.seq) == ("hi", 7)
                await s.close_send()
                assert [m async for m in s] == []

    await go_micro_server(serve_echo, echo_client)

    async def serve_sum(conn: RawConn) -> None:
        headers = assert_routing_frame(await conn.read_frame(), "Greeter.Sum")
        total = pb.Total()
        while True:
            h, body = await conn.read_frame()
            if h.get("Micro-Error") == "EOS":
                break
            total.sum += pb.Num.FromString(body).value
            total.count += 1
        rh = reply_headers(headers)
        await conn.write_frame(rh, total.SerializeToString())
        await conn.write_frame({**rh, "Micro-Error": "EOS"})

    async def sum_client(address: str) -> None:
        async with trimicro.open_client(registry=MemoryRegistry()) as client:
            async with gm.GreeterClient("greeter", client).Sum(address=address) as s:
                for v in (2, 3):
                    await s.send(pb.Num(value=v))
                await s.close_send()
                total = await s.receive()
                assert (total.sum, total.count) == (5, 2)

    await go_micro_server(serve_sum, sum_client)
