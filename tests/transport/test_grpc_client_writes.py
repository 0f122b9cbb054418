"""The gRPC client's direct write (``GrpcSocket.try_send`` / ``_ClientConn.write_direct``): a
stream message written from the caller with one non-blocking write, so a ping-pong never wakes the
stream's writer task; what the socket does not take is finished by the next flush, in order; a
connection whose write side broke is lost, and the usual send path reports it.

The peer in the write tests is the ``h2`` library (a test oracle), so the bytes on the wire are
checked by an HTTP/2 implementation that is not ours."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import h2.config
import h2.connection
import h2.events
import pytest
import trio
import trio.testing

from tests.interop import serve_grpc
from tests.protos import greeter_pb2 as pb
from trimicro.client import Client
from trimicro.codec.grpc import frame_message
from trimicro.errors import TransportError
from trimicro.transport import Message
from trimicro.transport._base import NOT_SENT, PARTIAL, SENT
from trimicro.transport.grpc import GrpcSocket, GrpcTransport

pytestmark = pytest.mark.loopback


class StepCounter(trio.abc.Instrument):
    def __init__(self) -> None:
        self.steps: dict[str, int] = {}

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        name = task.name.rpartition(".")[2]
        self.steps[name] = self.steps.get(name, 0) + 1


async def test_a_bidi_ping_pong_over_grpc_never_wakes_the_streams_writer_or_reader() -> None:
    transport = GrpcTransport()
    client = Client(None, transport)
    counter = StepCounter()
    with trio.fail_after(20):
        async with serve_grpc() as (address, _, _):
            async with client.stream("greeter", "Greeter.Echo", response_type=pb.EchoMessage, address=address) as s:
                await s.send(pb.EchoMessage(text="warm", seq=-1))
                assert (await s.receive()).seq == -1
                trio.lowlevel.add_instrument(counter)
                for i in range(50):
                    await s.send(pb.EchoMessage(text="ping", seq=i))
                    assert (await s.receive()).seq == i
                trio.lowlevel.remove_instrument(counter)
                await s.close_send()
                assert [m async for m in s] == []
            await client.aclose()
    assert counter.steps.get("writer", 0) == 0
    # The consumer reads every reply itself (a cancelled GrpcSocket.receive loses nothing, see the
    # tests below): the reader task wakes at most at the start, before it hands reading back.
    assert counter.steps.get("reader", 0) <= 2


async def test_a_grpc_streams_receive_cancelled_again_and_again_loses_nothing() -> None:
    transport = GrpcTransport()
    client = Client(None, transport)
    big = "x" * (2 * 1024 * 1024)
    with trio.fail_after(30):
        async with serve_grpc() as (address, _, _):
            async with client.stream("greeter", "Greeter.Echo", response_type=pb.EchoMessage, address=address) as s:
                assert s._core._self_read  # type: ignore[attr-defined]
                for seq in range(3):
                    await s.send(pb.EchoMessage(text=big, seq=seq))
                    got = None
                    while got is None:
                        with trio.move_on_after(0.001):
                            got = await s.receive()
                    assert (got.seq, got.text == big) == (seq, True)
                await s.close_send()
            await client.aclose()


async def test_a_receive_cancelled_once_its_chunk_was_taken_loses_nothing() -> None:
    """The consumer of a gRPC stream reads the socket itself (``RECEIVE_CANCEL_SAFE``): a receive
    cancelled after it took a DATA chunk off the stream, in the flush of that chunk's
    acknowledgement, leaves the chunk for the next receive, acknowledged once."""
    with trio.fail_after(10):
        async with raw_peer() as (sock, server, peer):
            [sid] = list(peer.streams)
            peer.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
            peer.send_data(sid, frame_message(b"one", None))
            peer.send_data(sid, frame_message(b"two", None))
            await server.send_all(peer.data_to_send())
            assert (await sock.receive()).body == b"one"
            st = sock._st
            assert st is not None
            while not st.chunks:  # the second DATA frame, read by nobody else
                await sock._conn.read_once()
            unacked = st.buffered
            assert unacked > 0
            with trio.CancelScope() as cancelled:
                cancelled.cancel()
                await sock.receive()  # takes the chunk, acknowledges it, is cancelled in the flush
            assert cancelled.cancelled_caught
            assert st.buffered == 0  # acknowledged, and not again by release()
            assert (await sock.receive()).body == b"two"


async def test_a_unary_reply_read_by_a_receive_cancelled_before_the_trailers_is_kept() -> None:
    with trio.fail_after(10):
        async with raw_peer(stream=False) as (sock, server, peer):
            [sid] = list(peer.streams)
            peer.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
            peer.send_data(sid, frame_message(b"reply", None))
            await server.send_all(peer.data_to_send())
            st = sock._st
            assert st is not None
            while not st.chunks:
                await sock._conn.read_once()
            with trio.move_on_after(0.2) as waited:
                await sock.receive()  # takes the reply, then waits for the trailers that do not come
            assert waited.cancelled_caught
            peer.send_headers(sid, [("grpc-status", "0")], end_stream=True)
            await server.send_all(peer.data_to_send())
            assert (await sock.receive()).body == b"reply"


@asynccontextmanager
async def raw_peer(
    buffers: int = 0, stream: bool = True
) -> AsyncIterator[tuple[GrpcSocket, trio.SocketStream, h2.connection.H2Connection]]:
    """A GrpcSocket whose stream is open (its routing frame sent) to an ``h2`` server that reads
    only when the test does; ``buffers``: the client's send and the server's receive buffer sizes;
    ``stream`` False: a unary call's socket."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    if buffers:
        listeners[0].socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffers)
    transport = GrpcTransport()
    async with trio.open_nursery() as nursery:
        accepted: list[trio.SocketStream] = []

        async def accept() -> None:
            accepted.append(await listeners[0].accept())

        nursery.start_soon(accept)
        sock = await transport.dial(f"127.0.0.1:{port}")
    server = accepted[0]
    peer = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    peer.initiate_connection()
    await server.send_all(peer.data_to_send())
    header = {"Micro-Service": "greeter", "Micro-Endpoint": "Greeter.Echo", "Micro-Id": "1"}
    if stream:
        header["Micro-Stream"] = "1"
    await sock.send(Message(header, b""))  # opens the stream (HEADERS)
    await read_peer(server, peer, until=lambda events: any(isinstance(e, h2.events.RequestReceived) for e in events))
    if buffers:
        raw = sock._conn.sock
        assert isinstance(raw, trio.SocketStream)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffers)
    try:
        yield sock, server, peer
    finally:
        await sock.aclose()
        await server.aclose()
        await listeners[0].aclose()
        await transport.aclose()


async def read_peer(server: trio.SocketStream, peer: h2.connection.H2Connection, until: object) -> list[h2.events.Event]:
    """Feed the ``h2`` server until ``until(events so far)``; acknowledges DATA and SETTINGS."""
    events: list[h2.events.Event] = []
    while not until(events):  # type: ignore[operator]
        data = await server.receive_some(65536)
        assert data, "client closed the connection"
        for ev in peer.receive_data(data):
            events.append(ev)
            if isinstance(ev, h2.events.DataReceived):
                peer.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        if out := peer.data_to_send():
            await server.send_all(out)
    return events


def body_of(events: list[h2.events.Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))


async def test_try_send_writes_a_message_now() -> None:
    with trio.fail_after(10):
        async with raw_peer() as (sock, server, peer):
            assert sock.try_send(Message({}, b"hello")) == SENT
            events = await read_peer(server, peer, until=lambda ev: len(body_of(ev)) >= 10)
            assert body_of(events) == frame_message(b"hello", None)


async def test_what_the_socket_does_not_take_is_written_first_by_the_next_flush() -> None:
    big = bytes(range(256)) * 60  # 15,360 bytes: one frame, more than the socket buffers below
    with trio.fail_after(10):
        async with raw_peer(buffers=4096) as (sock, server, peer):
            assert sock.try_send(Message({}, big)) == PARTIAL
            assert sock._conn._unsent  # kept, in order
            assert sock.try_send(Message({}, b"later")) == NOT_SENT  # nothing may overtake it
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sock.send, Message({}, b"later"))  # the usual path: writes the rest first
                events = await read_peer(
                    server, peer, until=lambda ev: len(body_of(ev)) >= len(big) + 5 + len(b"later") + 5
                )
            assert body_of(events) == frame_message(big, None) + frame_message(b"later", None)
            assert not sock._conn._unsent


async def test_a_direct_write_to_a_broken_connection_loses_it_and_the_usual_path_reports_it() -> None:
    with trio.fail_after(10):
        async with raw_peer() as (sock, _server, _peer):
            raw = sock._conn.sock
            assert isinstance(raw, trio.SocketStream)
            raw.socket.shutdown(socket.SHUT_WR)  # the next write fails: EPIPE
            assert sock.try_send(Message({}, b"ping")) == NOT_SENT
            assert sock._conn.closed is not None
            with pytest.raises(TransportError, match="Broken pipe"):
                await sock.send(Message({}, b"ping"))


async def test_try_send_leaves_the_first_frame_eos_and_errors_to_send() -> None:
    transport = GrpcTransport()
    with trio.fail_after(10):
        async with raw_peer() as (sock, _server, _peer):
            assert sock.try_send(Message({"Micro-Error": "EOS"}, b"")) == NOT_SENT
            assert sock.try_send(Message({"Micro-Error": '{"code":500}'}, b"")) == NOT_SENT
        unopened = GrpcSocket(transport, sock._conn)  # no stream yet: its first frame opens one
        assert unopened.try_send(Message({}, b"x")) == NOT_SENT


async def test_a_unary_call_writes_without_yielding_on_either_side() -> None:
    """The client's request and the server's reply each go out with one non-blocking write: per
    call the caller wakes once (its answer came) and the stream's handler task runs once."""
    transport = GrpcTransport()
    client = Client(None, transport)
    counter = StepCounter()
    with trio.fail_after(20):
        async with serve_grpc() as (address, _, _):

            async def call() -> None:
                rsp = await client.call(
                    "greeter", "Greeter.Hello", pb.HelloRequest(name="a"), response_type=pb.HelloResponse,
                    address=address,
                )  # fmt: skip
                assert rsp.greeting == "Hello a"

            await call()  # connected, settings exchanged
            await trio.testing.wait_all_tasks_blocked()
            async with trio.open_nursery() as nursery:  # the caller as a task of its own name

                async def caller() -> None:
                    trio.lowlevel.add_instrument(counter)
                    for _ in range(20):
                        await call()
                    trio.lowlevel.remove_instrument(counter)

                nursery.start_soon(caller, name="caller")
            await client.aclose()
    assert counter.steps.get("caller", 0) <= 20 + 2  # was 2 per call: send_all's yield, then the answer
    assert counter.steps.get("_run_stream", 0) <= 20 + 2  # was 2 per call: started, and the reply's write
