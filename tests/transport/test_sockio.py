"""``receive_tcp``: trio's ``SocketStream.receive_some`` contract with fewer layers (see the module).

Each contract test runs against ours and against trio's ``receive_some``, the oracle."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio
import trio.testing

from trimicro.transport._sockio import receive_tcp

Pair = tuple[trio.SocketStream, trio.SocketStream]
Reader = Callable[..., Awaitable[bytes | bytearray]]


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    a, b = trio.socket.socketpair()
    left, right = trio.SocketStream(a), trio.SocketStream(b)
    yield left, right
    for s in (left, right):
        s.socket.close()


@pytest.fixture(params=["receive_tcp", "trio"])
def read(request: pytest.FixtureRequest) -> Reader:
    if request.param == "trio":
        return lambda stream, n=65536: stream.receive_some(n)
    return lambda stream, n=65536: receive_tcp(stream, stream.socket.fileno(), n)


async def test_reads_what_is_there_and_waits_for_more(read: Reader, pair: Pair) -> None:
    left, right = pair
    await left.send_all(b"hello")
    assert await read(right) == b"hello"
    got: list[bytes | bytearray] = []

    async def reader() -> None:
        got.append(await read(right))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            assert got == []  # waiting, not spinning
            await left.send_all(b"later")
    assert got == [b"later"]


async def test_max_bytes_and_end_of_stream(read: Reader, pair: Pair) -> None:
    left, right = pair
    await left.send_all(b"abcdef")
    assert await read(right, 4) == b"abcd"
    assert await read(right, 4) == b"ef"
    await left.send_eof()
    assert await read(right) == b""


async def test_a_read_is_a_checkpoint_even_with_data_ready(read: Reader, pair: Pair) -> None:
    """A peer that never stops sending must not starve the other tasks: every read yields."""
    left, right = pair
    await left.send_all(b"x" * 1000)
    with trio.testing.assert_checkpoints():
        assert await read(right, 1) == b"x"


async def test_cancelled_before_reading_consumes_nothing(read: Reader, pair: Pair) -> None:
    left, right = pair
    await left.send_all(b"kept")
    with trio.CancelScope() as scope:
        scope.cancel()
        await read(right)
    assert scope.cancelled_caught
    assert await read(right) == b"kept"


async def test_cancelled_while_waiting(read: Reader, pair: Pair) -> None:
    left, right = pair
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read, right)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    await left.send_all(b"next")
    assert await read(right) == b"next"


async def test_closed_by_another_task_while_waiting(read: Reader, pair: Pair) -> None:
    _, right = pair
    errors: list[BaseException] = []

    async def reader() -> None:
        try:
            await read(right)
        except trio.ClosedResourceError as exc:
            errors.append(exc)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            right.socket.close()
    assert len(errors) == 1


async def test_a_closed_socket_is_read_no_more(read: Reader, pair: Pair) -> None:
    _, right = pair
    right.socket.close()
    with pytest.raises(trio.ClosedResourceError):
        await read(right)


async def test_a_reset_connection_is_broken_resource(read: Reader) -> None:
    """Over loopback TCP: the peer closes with unread input and SO_LINGER 0, the kernel sends a reset."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    server.setblocking(False)
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(server))
    try:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client.close()
        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError, match="socket connection broken"):
            await read(stream)
    finally:
        stream.socket.close()


async def test_a_closed_socket_is_never_read_through_a_reused_descriptor(pair: Pair) -> None:
    """The number of a closed socket's descriptor can come back for a file opened after the close:
    the socket is checked before the read, so nothing is read from that file."""
    _, right = pair
    fd = right.socket.fileno()
    right.socket.close()
    r, w = os.pipe()
    try:
        if r != fd:
            os.dup2(r, fd)  # the old number now names the pipe
        os.write(w, b"someone else's")
        with pytest.raises(trio.ClosedResourceError):
            await receive_tcp(right, fd, 100)
        assert os.read(fd, 100) == b"someone else's"
    finally:
        for d in {r, w, fd}:
            os.close(d)
