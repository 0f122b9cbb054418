"""MucpStreamCore over real loopback sockets: who writes and who reads each frame.

A sender that answers what it received (ping-pong) writes its frame itself when the writer task is
idle, so no task switch per message; a burst of sends still goes through the writer (coalesced); a
frame the socket takes only in part is finished by the writer, ahead of anything sent after it.

A consumer reads the socket itself; the reader task reads only while the consumer stays away
(``READ_GRACE``), so frames and a departed peer are still seen, and hands reading back to a
consumer that returns. A cancelled read loses nothing; EOS and errors end the stream either way."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from trimicro import errors
from trimicro.codec import BytesCodec
from trimicro.errors import MicroError, TransportError
from trimicro.stream import READ_GRACE, MucpStreamCore
from trimicro.transport import Message
from trimicro.transport.http import HttpSocket, HttpTransport

pytestmark = pytest.mark.loopback

HEADER = {"Micro-Stream": "1", "Micro-Id": "1", "Content-Type": "application/octet-stream"}


class StepCounter(trio.abc.Instrument):
    """Counts the steps of tasks by name (exact: every wake-up of a task is one step)."""

    def __init__(self) -> None:
        self.steps: dict[str, int] = {}

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps[task.name] = self.steps.get(task.name, 0) + 1


@asynccontextmanager
async def stream_pair(
    server: Callable[[HttpSocket], Awaitable[None]],
    on_lost: Callable[[], None] | None = None,
) -> AsyncIterator[tuple[MucpStreamCore[bytes, bytes], HttpSocket, StepCounter]]:
    """A client-side stream core on a dialed socket (its reader and writer running, the writer
    named "writer"), with ``server`` handling the other end raw."""
    transport = HttpTransport()
    listener = await transport.listen("127.0.0.1:0")
    counter = StepCounter()
    async with trio.open_nursery() as nursery:
        await nursery.start(listener.serve, server)
        sock = await transport.dial(listener.address)
        core: MucpStreamCore[bytes, bytes] = MucpStreamCore(sock, BytesCodec(), bytes, HEADER, error_id="test")
        core.on_connection_lost = on_lost
        nursery.start_soon(core.reader, name="reader")
        nursery.start_soon(core.writer, name="writer")
        await trio.testing.wait_all_tasks_blocked()
        trio.lowlevel.add_instrument(counter)
        try:
            yield core, sock, counter
        finally:
            trio.lowlevel.remove_instrument(counter)
            core.abort()
            await sock.aclose()
            nursery.cancel_scope.cancel()
    await listener.aclose()


async def echo_frames(sock: HttpSocket) -> None:
    while True:
        try:
            msg = await sock.receive()
        except trio.EndOfChannel:
            return
        await sock.send(Message(dict(msg.header), msg.body))


async def test_ping_pong_sender_writes_itself_and_the_writer_never_wakes() -> None:
    with trio.fail_after(10):
        async with stream_pair(echo_frames) as (core, _, counter):
            for i in range(50):
                await core.send(b"ping %d" % i)
                assert await core.receive() == b"ping %d" % i
            assert counter.steps.get("writer", 0) == 0
            # The receiver read every echo itself: the reader task woke at most twice per grace period.
            assert counter.steps.get("reader", 0) <= 4
            assert core.sent == core.received == 50


async def test_a_burst_of_sends_goes_through_the_writer_in_order() -> None:
    got: list[bytes] = []
    done = trio.Event()

    async def collect(sock: HttpSocket) -> None:
        while len(got) < 200:
            got.append((await sock.receive()).body)
        done.set()

    with trio.fail_after(10):
        async with stream_pair(collect) as (core, _, counter):
            for i in range(200):
                await core.send(b"m%d" % i)
            await done.wait()
            # The first frame went out directly; the other 199 were queued and coalesced: the writer
            # woke a few times (once per full buffer), not once per message.
            assert 1 <= counter.steps.get("writer", 0) <= 10
    assert got == [b"m%d" % i for i in range(200)]


def small_buffer(sock: HttpSocket, option: int) -> None:
    stream = sock.stream
    assert isinstance(stream, trio.SocketStream)
    stream.socket.setsockopt(socket.SOL_SOCKET, option, 32 * 1024)


async def test_a_frame_written_in_part_is_finished_by_the_writer_before_later_frames() -> None:
    big = bytes(range(256)) * (4 * 1024)  # 1 MiB, with both socket buffers set to 32 KiB below
    got: list[bytes] = []
    go = trio.Event()
    done = trio.Event()

    async def slow_reader(sock: HttpSocket) -> None:
        small_buffer(sock, socket.SO_RCVBUF)
        await go.wait()  # nothing read until the client has sent everything
        while len(got) < 4:
            got.append((await sock.receive()).body)
        done.set()

    with trio.fail_after(20):
        async with stream_pair(slow_reader) as (core, sock, counter):
            small_buffer(sock, socket.SO_SNDBUF)
            await core.send(big)  # returns at once: the rest waits for the writer
            assert counter.steps.get("writer", 0) == 0
            assert 0 < len(sock._pending) < len(big)  # written in part, the rest kept in order
            for tail in (b"a", b"b", b"c"):
                await core.send(tail)
            go.set()
            await done.wait()
            assert counter.steps.get("writer", 0) >= 1  # it wrote what the socket did not take
            assert not sock.closed
    assert len(got[0]) == len(big) and got[0] == big
    assert got[1:] == [b"a", b"b", b"c"]


async def test_a_cancelled_sender_writes_nothing() -> None:
    got: list[bytes] = []
    done = trio.Event()

    async def collect(sock: HttpSocket) -> None:
        got.append((await sock.receive()).body)
        done.set()

    with trio.fail_after(10):
        async with stream_pair(collect) as (core, _, _counter):
            with trio.CancelScope() as scope:
                scope.cancel()
                await core.send(b"never")
            assert scope.cancelled_caught
            await core.send(b"after")
            await done.wait()
    assert got == [b"after"]


# -- who reads --


def frame_bytes(sock: HttpSocket, body: bytes, error: str | None = None) -> bytes:
    """The bytes of one response frame as the server end ``sock`` would write them."""
    header = dict(HEADER)
    if error is not None:
        header["Micro-Error"] = error
    return sock._conn.send(Message(header, body))


async def test_while_the_consumer_is_away_the_reader_reads_and_sees_the_peer_leave() -> None:
    async def send_and_leave(sock: HttpSocket) -> None:
        for body in (b"a", b"b", b"c"):
            await sock.send(Message(dict(HEADER), body))
        await sock.aclose()  # no EOS: the connection just ends

    lost: list[bool] = []
    with trio.fail_after(10):
        async with stream_pair(send_and_leave, lambda: lost.append(True)) as (core, _, counter):
            await core.connection_lost.wait()  # nobody receives: the reader task noticed
            assert lost == [True]
            assert counter.steps.get("reader", 0) >= 1
            assert [await core.receive() for _ in range(3)] == [b"a", b"b", b"c"]
            with pytest.raises(TransportError, match="before EOS"):
                await core.receive()
            with pytest.raises(trio.EndOfChannel):
                await core.receive()


async def test_the_reader_hands_reading_back_to_a_consumer_that_returns() -> None:
    with trio.fail_after(10):
        async with stream_pair(echo_frames) as (core, _, counter):
            await core.send(b"a")
            await trio.sleep(3 * READ_GRACE)  # away: the reader task reads the echo
            assert counter.steps.get("reader", 0) >= 1
            assert await core.receive() == b"a"  # queued by the reader
            await core.send(b"b")
            assert await core.receive() == b"b"  # the reader's last: it saw us waiting
            before = counter.steps.get("reader", 0)
            for i in range(50):
                await core.send(b"%d" % i)
                assert await core.receive() == b"%d" % i
            assert counter.steps.get("reader", 0) - before <= 4  # read by the consumer itself
            assert core.received == 52


async def test_a_consumer_cancelled_in_the_middle_of_a_frame_loses_nothing() -> None:
    half = trio.Event()
    rest = trio.Event()

    async def send_in_two_parts(sock: HttpSocket) -> None:
        data = frame_bytes(sock, b"whole frame")
        await sock.stream.send_all(data[:20])
        half.set()
        await rest.wait()
        await sock.stream.send_all(data[20:])
        await sock.receive()  # (keep the connection until the client is done)

    with trio.fail_after(10):
        async with stream_pair(send_in_two_parts) as (core, _, _counter):
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:

                    async def cancel_after_half() -> None:
                        await half.wait()
                        await trio.testing.wait_all_tasks_blocked()  # its first part was read
                        scope.cancel()

                    nursery.start_soon(cancel_after_half)
                    await core.receive()
            assert scope.cancelled_caught
            rest.set()
            assert await core.receive() == b"whole frame"


async def test_eos_read_by_the_consumer_ends_the_stream_and_the_reader_task() -> None:
    async def send_then_eos(sock: HttpSocket) -> None:
        await sock.send(Message(dict(HEADER), b"x"))
        await sock.stream.send_all(frame_bytes(sock, b"", error="EOS"))
        await sock.receive()

    transport = HttpTransport()
    listener = await transport.listen("127.0.0.1:0")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(listener.serve, send_then_eos)
            sock = await transport.dial(listener.address)
            core: MucpStreamCore[bytes, bytes] = MucpStreamCore(sock, BytesCodec(), bytes, HEADER, error_id="test")
            async with trio.open_nursery() as tasks:
                tasks.start_soon(core.reader)
                assert await core.receive() == b"x"
                with pytest.raises(trio.EndOfChannel):
                    await core.receive()
                assert core.peer_done.is_set()
            # (the inner nursery closed: the reader task left by itself)
            assert not core.connection_lost.is_set()
            await sock.aclose()
            nursery.cancel_scope.cancel()
    await listener.aclose()


async def test_an_error_frame_read_by_the_consumer_is_raised_then_the_stream_is_over() -> None:
    failure = errors.internal_server_error("peer", "boom")

    async def send_error(sock: HttpSocket) -> None:
        await sock.stream.send_all(frame_bytes(sock, b"", error=failure.to_json()))
        await sock.receive()

    with trio.fail_after(10):
        async with stream_pair(send_error) as (core, _, _counter):
            with pytest.raises(MicroError) as caught:
                await core.receive()
            assert (caught.value.code, caught.value.detail) == (500, "boom")
            with pytest.raises(trio.EndOfChannel):
                await core.receive()
            assert core.peer_done.is_set() and not core.connection_lost.is_set()


async def test_a_connection_loss_the_cancelled_consumer_read_is_raised_by_its_next_receive() -> None:
    """The server's case: the peer's departure cancels the handler (``on_connection_lost``) while its
    own read found it. The handler sees Cancelled; a receive after that still says the connection
    was lost, not a clean end."""

    async def leave(sock: HttpSocket) -> None:
        await sock.aclose()

    scope = trio.CancelScope()
    with trio.fail_after(10):
        async with stream_pair(leave, scope.cancel) as (core, _, _counter):
            with scope:
                await core.receive()
            assert scope.cancelled_caught and core.connection_lost.is_set()
            with pytest.raises(TransportError, match="before EOS"):
                await core.receive()
            with pytest.raises(trio.EndOfChannel):
                await core.receive()
