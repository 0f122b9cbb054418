"""NatsClient against misbehaving servers: a scripted fake on 127.0.0.1, and a real one that goes away."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio

from trimicro._nats.client import NatsClient
from trimicro.broker import BrokerMessage
from trimicro.broker.nats import NatsBroker
from trimicro.errors import BrokerError
from trimicro.testing.nats import NatsServerProcess

pytestmark = pytest.mark.loopback

INFO = b'INFO {"server_id":"fake","max_payload":%d,"headers":true,"proto":1}\r\n'


class Conn:
    """One client connection to the fake server, with a receive buffer to wait on."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""

    async def until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError
            self.buf += data
        head, _, self.buf = self.buf.partition(marker)
        return head + marker

    async def answer_pings(self) -> None:
        """Idle like a healthy server: answer every PING (the client's flush on close needs it)."""
        while True:
            await self.until(b"PING\r\n")
            await self.stream.send_all(b"PONG\r\n")

    async def handshake(self, max_payload: int = 1048576) -> dict[str, object]:
        await self.stream.send_all(INFO % max_payload)
        connect = await self.until(b"\r\n")
        await self.until(b"PING\r\n")
        await self.stream.send_all(b"PONG\r\n")
        assert connect.startswith(b"CONNECT ")
        options: dict[str, object] = json.loads(connect[len(b"CONNECT ") :])
        return options


Script = Callable[[int, Conn], Awaitable[None]]


async def fake_server(nursery: trio.Nursery, script: Script) -> str:
    """Serve ``script(connection_number, conn)`` for each connection; return ``127.0.0.1:PORT``."""
    count = 0

    async def handler(stream: trio.SocketStream) -> None:
        nonlocal count
        count += 1
        try:
            await script(count, Conn(stream))
        except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    return f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"


async def test_connect_options_and_server_ping() -> None:
    got: dict[str, object] = {}
    ponged = trio.Event()

    async def script(n: int, conn: Conn) -> None:
        got.update(await conn.handshake())
        await conn.stream.send_all(b"PING\r\n")
        await conn.until(b"PONG\r\n")
        ponged.set()
        await conn.answer_pings()

    async with trio.open_nursery() as nursery:
        address = await fake_server(nursery, script)
        async with NatsClient([address]):
            with trio.fail_after(5):
                await ponged.wait()
        nursery.cancel_scope.cancel()
    assert {k: got[k] for k in ("verbose", "pedantic", "headers", "no_responders", "protocol")} == {
        "verbose": False,
        "pedantic": False,
        "headers": True,
        "no_responders": True,
        "protocol": 1,
    }


async def test_unanswered_pings_mean_a_stale_connection_and_a_reconnect() -> None:
    second = trio.Event()

    async def script(n: int, conn: Conn) -> None:
        await conn.handshake()
        if n == 2:
            second.set()
        await trio.sleep_forever()  # never answers the keepalive PINGs

    async with trio.open_nursery() as nursery:
        address = await fake_server(nursery, script)
        async with NatsClient(
            [address], ping_interval=0.05, max_outstanding_pings=2, reconnect_wait=0.01
        ) as nc:
            with trio.fail_after(5):
                await second.wait()
            assert nc.reconnects >= 1
        nursery.cancel_scope.cancel()


async def test_garbage_from_the_server_drops_the_connection_not_the_client() -> None:
    delivered = trio.Event()

    async def script(n: int, conn: Conn) -> None:
        await conn.handshake()
        if n == 1:
            await conn.stream.send_all(b"GARBAGE\r\n")
            await trio.sleep_forever()
        await conn.until(b"SUB s 1\r\n")  # resubscribed with the same sid
        await conn.stream.send_all(b"MSG s 1 2\r\nok\r\n")
        await conn.answer_pings()

    async with trio.open_nursery() as nursery:
        address = await fake_server(nursery, script)
        async with NatsClient([address], reconnect_wait=0.01) as nc:
            sub = await nc.subscribe("s")
            with trio.fail_after(5):
                msg = await sub.next()
            assert msg.payload == b"ok" and nc.reconnects == 1
            delivered.set()
        nursery.cancel_scope.cancel()


async def test_err_during_handshake_fails_the_connect() -> None:
    async def script(n: int, conn: Conn) -> None:
        await conn.stream.send_all(INFO % 1024)
        await conn.until(b"PING\r\n")
        await conn.stream.send_all(b"-ERR 'Authorization Violation'\r\n")

    async with trio.open_nursery() as nursery:
        address = await fake_server(nursery, script)
        with pytest.raises(BrokerError, match="Authorization Violation"):
            async with NatsClient([address]):
                pass  # pragma: no cover
        nursery.cancel_scope.cancel()


async def test_max_payload_comes_from_the_server() -> None:
    async def script(n: int, conn: Conn) -> None:
        await conn.handshake(max_payload=16)
        await conn.answer_pings()

    async with trio.open_nursery() as nursery:
        address = await fake_server(nursery, script)
        async with NatsClient([address]) as nc:
            assert nc.max_payload == 16
            await nc.publish("s", b"x" * 16)
            with pytest.raises(BrokerError, match="max_payload"):
                await nc.publish("s", b"x" * 17)
            with pytest.raises(BrokerError, match="max_payload"):
                await nc.publish("s", b"x" * 8, headers={"K": "v"})
        nursery.cancel_scope.cancel()


async def test_giving_up_closes_subscriptions_and_fails_publishes(nats_server: NatsServerProcess) -> None:
    async with NatsClient([nats_server.address], max_reconnect_attempts=1, reconnect_wait=0.01) as nc:
        sub = await nc.subscribe("s")
        await nc.flush()
        await nats_server.stop()
        with trio.fail_after(5):
            async for _ in sub:
                pass  # ends when the client gives up
        with pytest.raises(BrokerError, match="closed"):
            await nc.publish("s", b"")


async def test_body_errors_come_out_unwrapped(nats_server: NatsServerProcess) -> None:
    with pytest.raises(KeyError):
        async with NatsBroker([nats_server.address]) as broker:
            await broker.publish("t", BrokerMessage())
            raise KeyError("x")
