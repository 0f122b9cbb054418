"""Many concurrent calls on one GrpcTransport against a trimicro server (the port ``Service.run`` builds:
HTTP transport sniffing the HTTP/2 preface, GrpcServer behind it).

Regressions: (1) callers queued on a read lock behind a reader that waited for an idle stream never
woke, so ~100 held-open bidi streams never finished opening; (2) a stream's reader that started
before its first send found a free stream slot (beyond the server's MAX_CONCURRENT_STREAMS) saw EOF.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
import trio.testing

from tests.interop import Greeter, serve_grpc
from tests.protos import greeter_pb2 as pb
from trimicro.client import Client
from trimicro.config import Options
from trimicro.errors import MicroError
from trimicro.server import Router, Server
from trimicro.server._grpc import GrpcServer
from trimicro.transport.grpc import GrpcTransport
from trimicro.transport.http import HttpTransport

pytestmark = pytest.mark.loopback


@asynccontextmanager
async def one_port_server() -> AsyncIterator[tuple[str, GrpcServer]]:
    router = Router()
    router.handle(Greeter())
    server = Server("greeter", router, HttpTransport(), "127.0.0.1:0")
    grpc_server = GrpcServer(server)
    server.h2_handler = grpc_server.handle_connection
    async with trio.open_nursery() as nursery:
        address = await nursery.start(server.serve)
        try:
            yield address, grpc_server
        finally:
            nursery.cancel_scope.cancel()


async def hold_bidi_streams(client: Client, address: str, n: int) -> None:
    """``n`` Echo streams, all open at once (each idle after its first echo), then each echoes again."""
    opened = 0
    all_open = trio.Event()

    async def one(i: int) -> None:
        nonlocal opened
        async with client.stream(
            "greeter", "Greeter.Echo", response_type=pb.EchoMessage, address=address
        ) as s:
            await s.send(pb.EchoMessage(text="a", seq=i))
            assert (await s.receive()).seq == i
            opened += 1
            if opened == n:
                all_open.set()
            await all_open.wait()
            await s.send(pb.EchoMessage(text="b", seq=n + i))
            assert (await s.receive()).seq == n + i
            await s.close_send()
            assert [m async for m in s] == []

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)


async def many_unary(client: Client, address: str, n: int, greeting: str = "Hello") -> None:
    async def one(i: int) -> None:
        rsp = await client.call(
            "greeter", "Greeter.Hello", pb.HelloRequest(name=str(i)), response_type=pb.HelloResponse,
            address=address,
        )  # fmt: skip
        assert rsp.greeting == f"{greeting} {i}"

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)


@asynccontextmanager
async def grpc_client() -> AsyncIterator[tuple[Client, GrpcTransport]]:
    transport = GrpcTransport()
    client = Client(None, transport, Options(client_pool_size=1024))
    try:
        yield client, transport
    finally:
        await client.aclose()
        await transport.aclose()


async def test_200_held_bidi_streams_one_connection() -> None:
    async with one_port_server() as (address, grpc_server), grpc_client() as (client, transport):
        with trio.fail_after(20):
            await hold_bidi_streams(client, address, 200)
        assert transport.open_connections == 0  # the last stream closed the shared connection
        with trio.fail_after(5):
            await grpc_server.wait_idle()


async def test_500_concurrent_unary_one_connection() -> None:
    async with one_port_server() as (address, grpc_server), grpc_client() as (client, transport):
        with trio.fail_after(20):
            await many_unary(client, address, 500)  # > the server's 256 streams: callers wait for slots
        await client.aclose()  # the pool's idle sockets hold the connection until then
        assert transport.open_connections == 0
        with trio.fail_after(5):
            await grpc_server.wait_idle()


async def test_streams_beyond_the_servers_stream_limit_wait_for_a_slot() -> None:
    # 300 > MAX_CONCURRENT_STREAMS (256): the last 44 wait in their first send while their readers
    # already run; they must wait for the stream to open, not report EOF.
    async with one_port_server() as (address, _), grpc_client() as (client, _):

        async def one(i: int) -> None:
            async with client.stream(
                "greeter", "Greeter.Echo", response_type=pb.EchoMessage, address=address
            ) as s:
                await s.send(pb.EchoMessage(text="x", seq=i))
                assert (await s.receive()).seq == i
                await s.close_send()
                assert [m async for m in s] == []

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for i in range(300):
                    nursery.start_soon(one, i)


async def test_idle_streams_reading_do_not_block_another_stream() -> None:
    # Deterministic form of the hang: idle streams' readers wait (reading the socket for everyone)
    # for messages that never come; a busy stream's echoes must still get through. (With a read lock
    # handed over FIFO, the busy reader queued behind a second idle one and never woke.)
    async with serve_grpc() as (address, _, _), grpc_client() as (client, _):
        async with AsyncExitStack() as stack:
            for i in range(3):
                idle = await stack.enter_async_context(
                    client.stream("greeter", "Greeter.Echo", response_type=pb.EchoMessage, address=address)
                )
                await idle.send(pb.EchoMessage(text="x", seq=i))
                assert (await idle.receive()).seq == i
            await trio.testing.wait_all_tasks_blocked()
            with trio.fail_after(5):
                async with client.stream(
                    "greeter", "Greeter.Echo", response_type=pb.EchoMessage, address=address
                ) as busy:
                    for i in range(20):
                        await busy.send(pb.EchoMessage(text="y", seq=i))
                        assert (await busy.receive()).seq == i
                    await busy.close_send()


async def test_bad_metadata_is_a_clear_error_and_the_connection_survives() -> None:
    # Sent as is, a header with a newline made the server tear down the shared connection (GOAWAY).
    async with serve_grpc() as (address, _, _), grpc_client() as (client, _):
        async with client.stream(
            "greeter", "Greeter.Echo", response_type=pb.EchoMessage, address=address
        ) as s:
            with pytest.raises(MicroError) as info:
                await client.call(
                    "greeter", "Greeter.Hello", pb.HelloRequest(name="a"), address=address,
                    metadata={"X-Bad": "a\nb"}, retries=0,
                )  # fmt: skip
            assert info.value.code == 400 and "CR, LF or NUL" in info.value.detail
            await s.send(pb.EchoMessage(text="still", seq=1))
            assert (await s.receive()).seq == 1
            await s.close_send()
