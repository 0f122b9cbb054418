"""trimicro's Client over GrpcTransport against trimicro's GrpcServer: all call kinds, cancellation,
server loss, multiplexing, TLS with ALPN h2, and no leaked connection or stream afterwards."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
import trio
import trio.testing

from tests.interop import serve_grpc
from tests.protos import greeter_pb2 as pb
from trimicro.client import Client
from trimicro.errors import MicroError, TransportError
from trimicro.transport.grpc import GrpcTransport, client_ssl_context

pytestmark = pytest.mark.loopback


@asynccontextmanager
async def grpc_client(**kw: object) -> AsyncIterator[tuple[Client, GrpcTransport]]:
    transport = GrpcTransport(**kw)  # type: ignore[arg-type]
    client = Client(None, transport)
    try:
        yield client, transport
    finally:
        await client.aclose()
        assert transport.open_connections == 0


async def test_unary_server_client_bidi() -> None:
    async with serve_grpc() as (address, server, _), grpc_client() as (client, transport):
        rsp = await client.call(
            "greeter",
            "Greeter.Hello",
            pb.HelloRequest(name="a"),
            response_type=pb.HelloResponse,
            address=address,
        )
        assert rsp.greeting == "Hello a"
        async with client.stream(
            "greeter",
            "Greeter.Stream",
            request=pb.StreamRequest(count=50),
            response_type=pb.StreamResponse,
            address=address,
        ) as s:
            await s.close_send()
            assert [m.count async for m in s] == list(range(50))
        async with client.stream("greeter", "Greeter.Sum", response_type=pb.Total, address=address) as s:
            for i in range(100):
                await s.send(pb.Num(value=i))
            await s.close_send()
            assert [(t.sum, t.count) async for t in s] == [(4950, 100)]
        async with client.stream(
            "greeter", "Greeter.Echo", response_type=pb.EchoMessage, address=address
        ) as s:
            for i in range(20):
                await s.send(pb.EchoMessage(text="hi", seq=i))
                assert (await s.receive()).seq == i
            await s.close_send()
            assert [m async for m in s] == []
        assert transport.open_connections == 1
    assert server.open_streams == 0


async def test_json_content_type_and_metadata() -> None:
    async with serve_grpc() as (address, _server, greeter), grpc_client() as (client, _):
        rsp = await client.call(
            "greeter", "Greeter.Hello", {"name": "j"}, content_type="application/json",
            metadata={"X-User": "zed"}, address=address,
        )  # fmt: skip
        assert rsp == {"greeting": "Hello j"}
        assert greeter.last_metadata["X-User"] == "zed"


async def test_errors_deadline_and_handler_error_ends_stream() -> None:
    async with serve_grpc() as (address, server, greeter), grpc_client() as (client, _):
        with pytest.raises(MicroError) as info:
            await client.call("greeter", "Greeter.Fail", pb.HelloRequest(name="q"), address=address)
        assert (info.value.id, info.value.code, info.value.detail) == ("greeter", 400, "bad name: q")
        with pytest.raises(MicroError) as info:
            await client.call("greeter", "Greeter.Missing", pb.HelloRequest(), address=address)
        assert info.value.code == 501
        with pytest.raises(MicroError) as info:
            await client.call(
                "greeter",
                "Greeter.Slow",
                pb.SlowRequest(sleep_ms=10_000),
                address=address,
                timeout=0.2,
                retries=0,
            )
        assert info.value.code == 408
        with pytest.raises(MicroError) as info:
            async with client.stream(
                "greeter", "Greeter.Echo", response_type=pb.EchoMessage, address=address
            ) as s:
                await s.send(pb.EchoMessage(text="ok", seq=1))
                await s.send(pb.EchoMessage(text="fail", seq=2))
                async for _ in s:
                    pass
        assert (info.value.code, info.value.detail) == (409, "echo refused 2")
        with trio.fail_after(5):
            while server.open_streams:
                await trio.testing.wait_all_tasks_blocked(0.01)
        assert greeter.cancelled >= 1  # the slow handler


async def test_cancelling_client_scope_cancels_handler() -> None:
    async with serve_grpc() as (address, server, greeter), grpc_client() as (client, _):
        with trio.CancelScope() as scope:
            async with client.stream(
                "greeter", "Greeter.Echo", response_type=pb.EchoMessage, address=address
            ) as s:
                await s.send(pb.EchoMessage(text="x", seq=1))
                await s.receive()  # the handler is running
                scope.cancel()
                await trio.sleep_forever()
        with trio.fail_after(5):
            while greeter.cancelled == 0:
                await trio.testing.wait_all_tasks_blocked(0.01)
        assert greeter.cancelled == 1
        # The connection survives for other calls.
        rsp = await client.call(
            "greeter",
            "Greeter.Hello",
            pb.HelloRequest(name="b"),
            response_type=pb.HelloResponse,
            address=address,
        )
        assert rsp.greeting == "Hello b"
        with trio.fail_after(5):
            while server.open_streams:
                await trio.testing.wait_all_tasks_blocked(0.01)


async def test_server_disappears_mid_stream() -> None:
    async with grpc_client() as (client, transport), trio.open_nursery() as nursery:
        ready: list[str] = []

        async def run_server(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            async with serve_grpc() as (address, _, _):
                ready.append(address)
                task_status.started()
                await trio.sleep_forever()

        server_scope = trio.CancelScope()

        async def scoped(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with server_scope:
                await run_server(task_status=task_status)

        await nursery.start(scoped)
        # A cancelled server resets its streams (CANCEL) and closes: either way a clear error.
        with pytest.raises((TransportError, MicroError)) as info:
            async with client.stream(
                "greeter", "Greeter.Stream", request=pb.StreamRequest(count=-1), response_type=pb.StreamResponse,
                address=ready[0],
            ) as s:  # fmt: skip
                assert (await s.receive()).message == "hang"
                server_scope.cancel()
                with trio.fail_after(5):
                    await s.receive()
        if isinstance(info.value, MicroError):
            assert info.value.code == 499 and "reset by server" in info.value.detail
        assert transport.open_connections == 0


async def test_hundred_concurrent_streams_one_connection() -> None:
    async with serve_grpc() as (address, server, _), grpc_client() as (client, transport):
        totals: list[int] = []

        async def one(n: int) -> None:
            async with client.stream(
                "greeter", "Greeter.Stream", request=pb.StreamRequest(count=30), response_type=pb.StreamResponse,
                address=address, timeout=10,
            ) as s:  # fmt: skip
                await s.close_send()
                totals.append(sum([m.count async for m in s]) + n)

        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(one, i)
            with trio.fail_after(10):
                while server.open_streams < 100 and len(totals) < 100:
                    await trio.testing.wait_all_tasks_blocked(0.001)
        assert sorted(totals) == [435 + i for i in range(100)]
        assert transport.open_connections == 0  # streams-only: the last one closed it


async def test_large_messages_both_ways() -> None:
    big = "m" * (1024 * 1024)
    async with serve_grpc() as (address, _, _), grpc_client() as (client, _):
        async with client.stream(
            "greeter", "Greeter.Echo", response_type=pb.EchoMessage, address=address
        ) as s:
            async with trio.open_nursery() as nursery:

                async def send() -> None:
                    for i in range(3):
                        await s.send(pb.EchoMessage(text=big, seq=i))
                    await s.close_send()

                nursery.start_soon(send)
                got = [(m.seq, len(m.text)) async for m in s]
        assert got == [(i, len(big)) for i in range(3)]


def _make_cert(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


async def test_tls_alpn_h2(tmp_path: Path) -> None:
    cert, key = _make_cert(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.set_alpn_protocols(["h2"])
    async with serve_grpc(ssl_context=server_ctx) as (address, server, _):
        async with grpc_client(ssl_context=client_ssl_context(str(cert))) as (client, _):
            rsp = await client.call(
                "greeter",
                "Greeter.Hello",
                pb.HelloRequest(name="tls"),
                response_type=pb.HelloResponse,
                address=address,
            )
            assert rsp.greeting == "Hello tls"
        # A client that does not offer h2 is refused with a clear error.
        plain = ssl.create_default_context(cafile=str(cert))
        plain.set_alpn_protocols(["http/1.1"])
        async with grpc_client(ssl_context=plain) as (client, _):
            with pytest.raises(MicroError) as info:
                await client.call("greeter", "Greeter.Hello", pb.HelloRequest(), address=address, retries=0)
            assert "h2" in info.value.detail
        with trio.fail_after(5):
            await server.wait_idle()


async def test_connection_with_used_up_stream_ids_is_replaced() -> None:
    """Stream ids are 31 bits: a long-lived connection runs out (~30 h at 10k calls/s) and the
    client must move to a fresh one instead of sending an invalid id."""
    from trimicro.transport._http2 import MAX_STREAM_ID

    async def hello() -> str:
        rsp = await client.call(
            "greeter",
            "Greeter.Hello",
            pb.HelloRequest(name="x"),
            response_type=pb.HelloResponse,
            address=address,
        )
        return rsp.greeting

    async with serve_grpc() as (address, _server, _), grpc_client() as (client, transport):
        assert await hello() == "Hello x"
        (first,) = transport._conns.values()
        first.h2._next_local_id = MAX_STREAM_ID  # the last id there is
        assert await hello() == "Hello x"
        assert not first.usable
        assert await hello() == "Hello x"
        (second,) = transport._conns.values()
        assert second is not first and second.usable


async def test_server_answering_before_the_request_ends_keeps_its_status() -> None:
    """A server may answer before reading the whole request, then RST_STREAM(NO_ERROR) the rest
    (grpc-go, grpc-core and trimicro do): the client must report the server's status, not a reset."""
    async with serve_grpc() as (address, _server, _), grpc_client() as (client, _transport):
        with pytest.raises(MicroError) as info:  # 2 MiB: more than the stream window, so a RST comes mid-send
            await client.call(
                "greeter", "Greeter.Nope", pb.HelloRequest(name="x" * (2 << 20)), response_type=pb.HelloResponse,
                address=address,
            )  # fmt: skip
        assert info.value.code == 501
        async with client.stream("greeter", "Greeter.Sum", response_type=pb.Total, address=address) as s:
            await s.send(pb.Num(value=-1))
            for _ in range(3):
                await s.send(pb.Num(value=5))  # after the server's answer: moot, not an error
            with pytest.raises(MicroError) as info:
                await s.receive()
            assert info.value.code == 400 and "negative" in info.value.detail


# -- stock-h2 servers that misbehave on purpose (the peer is the `h2` library, not our code) --


async def h2_handshake(sock: trio.SocketStream, *, wide_window: bool = False) -> h2.connection.H2Connection:
    """A server-side h2 connection after its preface; ``wide_window`` never makes the client wait."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
    if wide_window:
        conn.local_settings = h2.settings.Settings(
            client=False, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1}
        )
    conn.initiate_connection()
    if wide_window:
        conn.increment_flow_control_window(2**31 - 1 - 65535)
    await sock.send_all(conn.data_to_send())
    return conn


def answer_trailers_only(conn: h2.connection.H2Connection, stream_id: int, status: int, message: str) -> None:
    conn.send_headers(
        stream_id,
        [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", str(status)),
         ("grpc-message", message)],
        end_stream=True,
    )  # fmt: skip


async def answers_first_server(sock: trio.SocketStream) -> None:
    """Answers every request trailers-only (INVALID_ARGUMENT "no") at once: no RST_STREAM, and the
    request's DATA is never acknowledged (its window never opens)."""
    conn = await h2_handshake(sock)
    while data := await sock.receive_some(65536):
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                answer_trailers_only(conn, ev.stream_id, 3, "no")
        if out := conn.data_to_send():
            await sock.send_all(out)


@asynccontextmanager
async def raw_h2_server(handler: Callable[[trio.SocketStream], Awaitable[None]]) -> AsyncIterator[str]:
    """``handler`` serving on 127.0.0.1; yields its address."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        yield f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        nursery.cancel_scope.cancel()


async def test_server_that_ends_first_without_reset_frees_the_stream_slot() -> None:
    """A server that answers trailers-only and sends no RST_STREAM (RFC 9113 makes it a MAY; h2-based
    servers skip it) must not leave the client's stream counted against MAX_CONCURRENT_STREAMS."""
    async with raw_h2_server(answers_first_server) as address, grpc_client() as (client, transport):
        hold = await transport.dial(address)  # keeps the connection (and its counters) alive
        for _ in range(3):
            async with client.stream("greeter", "Greeter.Sum", response_type=pb.Total, address=address) as s:
                await s.send(pb.Num(value=1))
                with pytest.raises(MicroError):
                    await s.receive()
        (conn,) = transport._conns.values()
        assert conn.h2.open_outbound_streams == 0 and not conn.h2.streams
        await hold.aclose()


@pytest.mark.parametrize(("n", "size"), [(32, 150_000), (128, 150_000)])
async def test_many_large_calls_on_one_connection_do_not_deadlock(n: int, size: int) -> None:
    """Both sides write big bodies at once: the server's reader must keep reading while its writer
    is blocked on a client that is itself blocked writing (it used to wait for its writer)."""
    async with serve_grpc() as (address, _server, _), grpc_client(max_message_size=64 << 20) as (client, _t):
        greetings: list[int] = []

        async def one() -> None:
            rsp = await client.call(
                "greeter", "Greeter.Hello", pb.HelloRequest(name="x" * size), response_type=pb.HelloResponse,
                address=address, retries=0, timeout=20,
            )  # fmt: skip
            greetings.append(len(rsp.greeting))

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for _ in range(n):
                    nursery.start_soon(one)
        assert greetings == [size + len("Hello ")] * n


async def test_reply_refused_by_the_client_cancels_the_handler_now() -> None:
    """A reply the client refuses (over its message limit) resets the stream: that RST_STREAM must be
    written at once, not left queued until some later call, or the handler runs on."""
    async with (
        serve_grpc() as (address, server, greeter),
        grpc_client(max_message_size=4) as (client, transport),
    ):
        hold = await transport.dial(address)  # keeps the connection open and otherwise idle
        with pytest.raises(MicroError) as info:
            async with client.stream(
                "greeter", "Greeter.Stream", request=pb.StreamRequest(count=-1), response_type=pb.StreamResponse,
                address=address,
            ) as s:  # fmt: skip
                await s.close_send()
                await s.receive()
        assert info.value.code == 429
        with trio.fail_after(5):
            while greeter.cancelled != 1 or server.open_streams:
                await trio.testing.wait_all_tasks_blocked(0.01)
        await hold.aclose()


async def test_server_answering_first_without_reset_or_window() -> None:
    """A server that answers (END_STREAM) before reading a large request, sends no RST_STREAM and
    never opens its window: the client must stop pushing the request and read the answer."""
    async with raw_h2_server(answers_first_server) as address, grpc_client() as (client, _transport):
        with pytest.raises(MicroError) as info:
            await client.call(
                "greeter", "Greeter.Hello", pb.HelloRequest(name="x" * 200_000), response_type=pb.HelloResponse,
                address=address, retries=0, timeout=5,
            )  # fmt: skip
        assert info.value.code == 400 and info.value.detail == "no"  # the trailers, not a 408


async def test_call_cancelled_mid_write_does_not_poison_the_connection() -> None:
    """A call cancelled while its request is half written leaves part of a frame on the wire: that
    connection is dropped, and the next call works on a fresh one instead of hanging on garbage."""
    connections = 0

    async def h2_server(sock: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        first = connections == 1
        conn = await h2_handshake(sock, wide_window=True)
        while data := await sock.receive_some(65536):
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    if first:
                        await trio.sleep_forever()  # stop reading: the client's write blocks half-way
                    answer_trailers_only(conn, ev.stream_id, 5, "answered")
            if out := conn.data_to_send():
                await sock.send_all(out)

    async with raw_h2_server(h2_server) as address, grpc_client() as (client, _transport):
        with trio.move_on_after(0.5) as scope:
            await client.call(
                "greeter", "Greeter.Hello", pb.HelloRequest(name="x" * (40 << 20)), response_type=pb.HelloResponse,
                address=address, retries=0,
            )  # fmt: skip
        assert scope.cancelled_caught
        with trio.fail_after(5), pytest.raises(MicroError) as info:
            await client.call(
                "greeter", "Greeter.Hello", pb.HelloRequest(name="y"), response_type=pb.HelloResponse,
                address=address, retries=0,
            )  # fmt: skip
        assert (info.value.code, info.value.detail) == (404, "answered") and connections == 2


async def test_caller_reading_wakes_when_another_callers_write_is_cut_off() -> None:
    """One caller waits for a stream message (holding the read baton, inside receive_some) while
    another's write is cut off by its deadline: the connection is closed at once, so the waiting
    caller gets a TransportError instead of waiting on a connection that is already lost."""
    from trimicro.codec.grpc import encode_frame
    from trimicro.transport._base import Message

    answered = trio.Event()

    async def h2_server(sock: trio.SocketStream) -> None:
        conn = await h2_handshake(sock, wide_window=True)
        while not answered.is_set():
            for ev in conn.receive_data(await sock.receive_some(65536)):
                if isinstance(ev, h2.events.RequestReceived):
                    conn.send_headers(
                        ev.stream_id, [(":status", "200"), ("content-type", "application/grpc")]
                    )
                    conn.send_data(ev.stream_id, encode_frame(b""))
                    answered.set()  # one message for the waiting caller, then never read again
            await sock.send_all(conn.data_to_send())
        await trio.sleep_forever()

    header = {"Micro-Service": "greeter", "Micro-Stream": "1", "Content-Type": "application/protobuf"}
    async with trio.open_nursery() as nursery, raw_h2_server(h2_server) as address:
        transport = GrpcTransport()
        waiting = await transport.dial(address)
        await waiting.send(Message({**header, "Micro-Endpoint": "Greeter.Stream"}, b""))
        await waiting.receive()
        failed = trio.Event()

        async def wait_for_more() -> None:
            with pytest.raises(TransportError):
                await waiting.receive()  # holds the read baton, blocked in receive_some
            failed.set()

        nursery.start_soon(wait_for_more)
        await trio.testing.wait_all_tasks_blocked()
        writer = await transport.dial(address)
        with trio.move_on_after(0.3) as cut:
            await writer.send(Message({**header, "Micro-Endpoint": "Greeter.Echo"}, b""))
            await writer.send(Message({**header, "Micro-Endpoint": "Greeter.Echo"}, b"x" * (40 << 20)))
        assert cut.cancelled_caught
        with trio.fail_after(3):
            await failed.wait()
        await writer.aclose()
        await waiting.aclose()
        await transport.aclose()
