"""The server's write paths: a handler writes its own reply when the writer task is idle
(``H2ServerConn.write_now``), and hands over to the writer when another write is in progress.

A lockstep stream makes every ``send_all`` wait until the client reads, so a second reply always
finds the first one's write still in progress: the case where a missed wakeup would leave the
second reply queued forever (the writer asleep, its handler gone).
"""

from __future__ import annotations

import socket

import h2.config
import h2.connection
import h2.events
import trio
import trio.testing

from trimicro.errors import TransportError
from trimicro.transport._h2server import H2Server, H2ServerStream


class _App:
    draining = False

    async def serve_stream(self, stream: H2ServerStream) -> None:
        stream.send_headers([(":status", "200"), ("content-type", "application/grpc")])
        await stream.send_data(b"x" * 100, flush=False)
        stream.finished = True
        stream.send_trailers([("grpc-status", "0")])
        await stream.flush(last=True)  # written as the handler leaves


async def _client(sock: trio.abc.Stream, streams: int) -> dict[int, bytes]:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    await sock.send_all(conn.data_to_send())
    # Settle the SETTINGS exchange first, so nothing else (an ACK to write) wakes the writer later.
    while not any(
        isinstance(e, h2.events.SettingsAcknowledged)
        for e in conn.receive_data(await sock.receive_some(65536))
    ):
        pass
    await sock.send_all(conn.data_to_send())  # our ACK of the server's SETTINGS
    await trio.testing.wait_all_tasks_blocked()
    for i in range(streams):
        conn.send_headers(
            1 + 2 * i,
            [(":method", "POST"), (":scheme", "http"), (":path", "/x.Y/Z"), (":authority", "t")],
            end_stream=True,
        )
    await sock.send_all(conn.data_to_send())  # every request in one write: handlers start together
    bodies: dict[int, bytes] = {}
    ended: set[int] = set()
    while len(ended) < streams:
        data = await sock.receive_some(65536)
        assert data, "server closed the connection"
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                bodies[event.stream_id] = bodies.get(event.stream_id, b"") + event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                ended.add(event.stream_id)
        out = conn.data_to_send()
        if out:
            await sock.send_all(out)
    return bodies


async def test_replies_finishing_during_another_write_are_all_written() -> None:
    server = H2Server(app=_App())
    server_sock, client_sock = trio.testing.lockstep_stream_pair()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.handle_connection, server_sock)
            bodies = await _client(client_sock, 8)
            nursery.cancel_scope.cancel()
    assert bodies == {1 + 2 * i: b"x" * 100 for i in range(8)}


# -- a handler answering what it received writes itself (write_direct) --


class _StepCounter(trio.abc.Instrument):
    def __init__(self) -> None:
        self.writer_steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith("run_writer"):
            self.writer_steps += 1


class _Echo:
    """A bidi handler: every message back, then ``tail`` (a burst after a large reply), trailers."""

    draining = False

    def __init__(self, tail: list[bytes] | None = None) -> None:
        self.tail = tail or []

    async def serve_stream(self, stream: H2ServerStream) -> None:
        stream.send_headers([(":status", "200"), ("content-type", "application/grpc")])
        while (data := await stream.receive()) is not None:
            await stream.send_message(data)
            for extra in self.tail:
                await stream.send_message(extra)
        await stream.send_data(b"", flush=False)
        stream.finished = True
        stream.send_trailers([("grpc-status", "0")])
        await stream.flush(last=True)


async def _tcp_pair(buffers: int = 0) -> tuple[trio.SocketStream, trio.SocketStream]:
    """A loopback TCP pair; ``buffers``: the server's send and the client's receive buffer sizes
    (set before connecting, so the receive window starts that small)."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    raw = trio.socket.socket()
    if buffers:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffers)
    await raw.connect(("127.0.0.1", port))
    client = trio.SocketStream(raw)
    server = await listeners[0].accept()
    await listeners[0].aclose()
    if buffers:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffers)
    return server, client


class _H2Client:
    def __init__(self, sock: trio.SocketStream) -> None:
        self.sock = sock
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.body = b""
        self.ended = False

    async def open(self) -> None:
        self.conn.initiate_connection()
        self.conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":path", "/x.Y/Z"), (":authority", "t")])
        await self.sock.send_all(self.conn.data_to_send())

    async def send(self, data: bytes, end: bool = False) -> None:
        self.conn.send_data(1, data, end_stream=end)
        await self.sock.send_all(self.conn.data_to_send())

    async def start(self, warm_reply: int) -> None:
        """Open the stream and exchange a first message, ``warm_reply`` bytes back: then the
        settings are exchanged, the handler is running and the writer is idle."""
        await self.open()
        await self.send(b"warm")
        await self.read_until(warm_reply)
        await trio.testing.wait_all_tasks_blocked()

    async def read_until(self, size: int) -> None:
        """Read until ``size`` bytes of body arrived (or the stream ended)."""
        while len(self.body) < size and not self.ended:
            data = await self.sock.receive_some(65536)
            assert data, "server closed the connection"
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    self.body += event.data
                    self.conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.StreamEnded):
                    self.ended = True
            out = self.conn.data_to_send()
            if out:
                await self.sock.send_all(out)


async def test_ping_pong_replies_are_written_by_the_handler_without_waking_the_writer() -> None:
    server = H2Server(app=_Echo())
    server_sock, client_sock = await _tcp_pair()
    counter = _StepCounter()
    client = _H2Client(client_sock)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.handle_connection, server_sock)
            await client.start(warm_reply=4)
            trio.lowlevel.add_instrument(counter)
            for i in range(40):
                msg = b"ping %02d" % i
                await client.send(msg)
                await client.read_until(4 + 7 * (i + 1))
            trio.lowlevel.remove_instrument(counter)
            await client.send(b"", end=True)
            await client.read_until(1 << 30)
            nursery.cancel_scope.cancel()
    assert client.ended
    assert client.body == b"warm" + b"".join(b"ping %02d" % i for i in range(40))
    # Only a WINDOW_UPDATE or PING ack may wake it; the 40 replies did not.
    assert counter.writer_steps <= 4


async def test_a_direct_write_the_socket_takes_in_part_is_finished_in_order() -> None:
    big = bytes(range(256)) * 60  # 15,360 bytes: under one frame, over the socket buffers below
    tail = [b"t1", b"t2", b"t3"]
    server = H2Server(app=_Echo(tail))
    server_sock, client_sock = await _tcp_pair(buffers=4096)
    client = _H2Client(client_sock)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.handle_connection, server_sock)
            await client.start(warm_reply=4 + len(tail) * 2)
            for _ in range(3):
                await client.send(big)
            await client.send(b"", end=True)
            await trio.testing.wait_all_tasks_blocked()  # the server wrote what the socket took
            await client.read_until(1 << 30)
            nursery.cancel_scope.cancel()
    assert client.ended
    assert client.body == b"warm" + b"".join(tail) + (big + b"".join(tail)) * 3


class _EchoRecording(_Echo):
    """An echo handler that records how its stream ended; a lost connection ends it quietly, as
    ``GrpcServer.serve_stream`` ends it (the stream is gone: nobody to answer)."""

    def __init__(self) -> None:
        super().__init__()
        self.ended: list[BaseException] = []

    async def serve_stream(self, stream: H2ServerStream) -> None:
        try:
            await super().serve_stream(stream)
        except TransportError as exc:
            self.ended.append(exc)
        except BaseException as exc:
            self.ended.append(exc)
            raise


async def test_a_direct_write_to_a_connection_that_broke_loses_it_and_ends_the_handler() -> None:
    """The socket's write side fails (EPIPE) between a message and its echo: the handler's direct
    write loses the connection, so the handler ends with the transport error and the connection
    closes, as when the writer task's ``send_all`` fails; nothing escapes ``handle_connection``."""

    app = _EchoRecording()
    server = H2Server(app=app)
    server_sock, client_sock = await _tcp_pair()
    client = _H2Client(client_sock)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.handle_connection, server_sock)
            await client.start(warm_reply=4)
            server_sock.socket.shutdown(socket.SHUT_WR)  # the server's next write fails: EPIPE
            await client.send(b"ping")
            # The connection ends by itself: the client reads to end of file.
            while await client_sock.receive_some(65536):
                pass
    assert client.body == b"warm"
    assert len(app.ended) == 1
    assert isinstance(app.ended[0], TransportError), repr(app.ended[0])
    assert "Broken pipe" in str(app.ended[0])  # the direct write's own error, not the reader's
    assert server.open_connections == 0
