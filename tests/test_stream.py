"""MucpStreamCore over real loopback sockets: who writes each frame.

A sender that answers what it received (ping-pong) writes its frame itself when the writer task is
idle, so no task switch per message; a burst of sends still goes through the writer (coalesced); a
frame the socket takes only in part is finished by the writer, ahead of anything sent after it."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from trimicro.codec import BytesCodec
from trimicro.stream import MucpStreamCore
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
