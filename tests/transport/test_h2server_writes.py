"""The server's write paths: a handler writes its own reply when the writer task is idle
(``H2ServerConn.write_now``), and hands over to the writer when another write is in progress.

A lockstep stream makes every ``send_all`` wait until the client reads, so a second reply always
finds the first one's write still in progress: the case where a missed wakeup would leave the
second reply queued forever (the writer asleep, its handler gone).
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import trio
import trio.testing

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
