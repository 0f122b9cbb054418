"""The Transport conformance suite: what every :class:`~trimicro.transport.Transport` must do.

Subclass it and provide a ``transport`` fixture (a transport whose ``dial`` reaches its own
``listen``)::

    class TestMyTransport(TransportConformance):
        @pytest.fixture
        def transport(self):
            return MyTransport()

``address`` is what the suite listens on (``127.0.0.1:0``: a free port); ``timeout`` bounds each step.
A transport whose client and server halves speak different protocols (the gRPC client transport
dials HTTP/2 and hands ``listen`` to the HTTP transport) cannot echo to itself and does not fit.

What it checks (trimicro/transport/_base.py): ``listen`` resolves port 0; frames go both ways with
their headers and body (empty, binary, a megabyte), several in turn on one connection and over many
connections at once; a clean close between frames is ``trio.EndOfChannel`` on the other side, on
either side; dialling where nothing listens, or a closed listener, is a ``TransportError``; closing a
listener lets its live connections finish; ``serve`` runs each connection in its own task.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import trio

from ...errors import TransportError
from ...transport import Listener, Message, Socket, Transport

__all__ = ["TransportConformance"]

Handler = Callable[[Socket], Awaitable[None]]


async def _echo(sock: Socket) -> None:
    """Reply to each frame with its X-Conformance header, Micro-Id and body, until the peer closes."""
    while True:
        try:
            msg = await sock.receive()
        except trio.EndOfChannel:
            return
        header = {k: v for k, v in msg.header.items() if k in ("Micro-Id", "X-Conformance", "Content-Type")}
        await sock.send(Message(header, msg.body))


class TransportConformance:
    """Base class of a transport's conformance tests (see the module doc)."""

    address: ClassVar[str] = "127.0.0.1:0"
    timeout: ClassVar[float] = 10.0

    @asynccontextmanager
    async def serving(self, transport: Transport, handler: Handler = _echo) -> AsyncIterator[Listener]:
        listener = await transport.listen(self.address)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(listener.serve, handler)
                yield listener
                nursery.cancel_scope.cancel()
        finally:
            await listener.aclose()

    async def test_listen_resolves_the_port(self, transport: Transport) -> None:
        async with self.serving(transport) as listener:
            host, _, port = listener.address.rpartition(":")
            assert host and port.isdigit() and int(port) > 0

    async def test_frames_round_trip(self, transport: Transport) -> None:
        bodies = [b"", b"hello", bytes(range(256)) * 4, b"\x00" * 1024 * 1024]
        async with self.serving(transport) as listener:
            with trio.fail_after(self.timeout):
                sock = await transport.dial(listener.address, timeout=self.timeout)
                try:
                    for i, body in enumerate(bodies):  # several frames in turn on one connection
                        header = {
                            "Micro-Id": str(i),
                            "X-Conformance": "yes",
                            "Content-Type": "application/x-test",
                        }
                        await sock.send(Message(header, body))
                        reply = await sock.receive()
                        assert reply.body == body
                        assert reply.header.get("Micro-Id") == str(i)
                        assert reply.header.get("X-Conformance") == "yes"
                        assert reply.header.get("Content-Type") == "application/x-test"
                finally:
                    await sock.aclose()

    async def test_many_connections_at_once(self, transport: Transport) -> None:
        async with self.serving(transport) as listener:
            results: dict[int, bytes] = {}

            async def one(i: int) -> None:
                sock = await transport.dial(listener.address, timeout=self.timeout)
                try:
                    await sock.send(Message({"Micro-Id": str(i)}, b"conn %d" % i))
                    results[i] = (await sock.receive()).body
                finally:
                    await sock.aclose()

            with trio.fail_after(self.timeout):
                async with trio.open_nursery() as nursery:
                    for i in range(20):
                        nursery.start_soon(one, i)
            assert results == {i: b"conn %d" % i for i in range(20)}

    async def test_client_close_is_end_of_channel_on_the_server(self, transport: Transport) -> None:
        outcome: list[Any] = []
        done = trio.Event()

        async def handler(sock: Socket) -> None:
            try:
                outcome.append(await sock.receive())
                await sock.send(Message({"Micro-Id": "1"}))
                await sock.receive()
            except BaseException as exc:
                outcome.append(exc)
                raise
            finally:
                done.set()

        async with self.serving(transport, handler) as listener:
            with trio.fail_after(self.timeout):
                sock = await transport.dial(listener.address, timeout=self.timeout)
                await sock.send(Message({"Micro-Id": "1"}, b"x"))
                await sock.receive()
                await sock.aclose()
                await done.wait()
        assert isinstance(outcome[0], Message) and outcome[0].body == b"x"
        assert isinstance(outcome[1], trio.EndOfChannel), outcome[1]

    async def test_server_close_is_end_of_channel_on_the_client(self, transport: Transport) -> None:
        async def handler(sock: Socket) -> None:
            await sock.receive()
            await sock.send(Message({"Micro-Id": "last"}))
            # returning closes the connection, between frames

        async with self.serving(transport, handler) as listener:
            with trio.fail_after(self.timeout):
                sock = await transport.dial(listener.address, timeout=self.timeout)
                try:
                    await sock.send(Message({"Micro-Id": "1"}))
                    assert (await sock.receive()).header.get("Micro-Id") == "last"
                    try:
                        await sock.receive()
                    except trio.EndOfChannel:
                        pass
                    else:
                        raise AssertionError("receive after the server closed returned a frame")
                finally:
                    await sock.aclose()

    async def test_dial_where_nothing_listens(self, transport: Transport) -> None:
        listener = await transport.listen(self.address)
        address = listener.address
        await listener.aclose()
        with trio.fail_after(self.timeout):
            try:
                sock = await transport.dial(address, timeout=self.timeout)
            except TransportError:
                return
            await sock.aclose()
            raise AssertionError(f"dialling the closed listener {address} succeeded")

    async def test_closing_the_listener_lets_live_connections_finish(self, transport: Transport) -> None:
        listener = await transport.listen(self.address)
        with trio.fail_after(self.timeout):
            async with trio.open_nursery() as nursery:
                await nursery.start(listener.serve, _echo)
                sock = await transport.dial(listener.address, timeout=self.timeout)
                await sock.send(Message({"Micro-Id": "1"}))
                await sock.receive()
                await listener.aclose()  # no new connections...
                try:
                    extra = await transport.dial(listener.address, timeout=self.timeout)
                except TransportError:
                    pass
                else:
                    await extra.aclose()
                    raise AssertionError("a closed listener accepted a new connection")
                await sock.send(Message({"Micro-Id": "2"}))  # ...but the live one still works
                assert (await sock.receive()).header.get("Micro-Id") == "2"
                await sock.aclose()
                nursery.cancel_scope.cancel()

    async def test_a_crashing_handler_does_not_stop_serving(self, transport: Transport) -> None:
        calls: list[int] = []

        async def handler(sock: Socket) -> None:
            calls.append(1)
            msg = await sock.receive()
            if msg.body == b"crash":
                raise RuntimeError("conformance: a handler crash")
            await sock.send(Message({}, b"fine"))

        async with self.serving(transport, handler) as listener:
            with trio.fail_after(self.timeout):
                first = await transport.dial(listener.address, timeout=self.timeout)
                await first.send(Message({}, b"crash"))
                try:
                    await first.receive()
                except (trio.EndOfChannel, TransportError):
                    pass
                await first.aclose()
                second = await transport.dial(listener.address, timeout=self.timeout)
                await second.send(Message({}, b"again"))
                assert (await second.receive()).body == b"fine"
                await second.aclose()
        assert len(calls) == 2
